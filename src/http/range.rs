//! `Range` (blob GET) and `Content-Range` (chunked upload) headers.

/// A byte range `start..=end` resolved against a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RangeError {
    /// Syntactically wrong: the header is ignored (RFC 9110) or rejected.
    Malformed,
    /// Well-formed but outside the content: 416.
    Unsatisfiable,
}

/// Parse `Range: bytes=a-b | a- | -n` for content of `len` bytes. Only a
/// single range is served; several ranges are answered with the first.
pub fn parse_range(value: &str, len: u64) -> Result<ByteRange, RangeError> {
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?;
    let first = spec.split(',').next().unwrap_or("").trim();
    let (a, b) = first.split_once('-').ok_or(RangeError::Malformed)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        s.parse().map_err(|_| RangeError::Unsatisfiable)
    };
    match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n = num(suffix)?;
            if n == 0 || len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok(ByteRange {
                start: len.saturating_sub(n),
                end: len - 1,
            })
        }
        (start, end) => {
            let start = num(start)?;
            let end = if end.is_empty() { u64::MAX } else { num(end)? };
            // last < first is invalid; answered 416 like an unsatisfiable range
            if end < start || start >= len {
                return Err(RangeError::Unsatisfiable);
            }
            Ok(ByteRange {
                start,
                end: end.min(len - 1),
            })
        }
    }
}

/// Parse an upload chunk's `Content-Range: <start>-<end>` (also accepting a
/// `bytes ` prefix and a `/total` suffix, as some clients send).
pub fn parse_content_range(value: &str) -> Option<ByteRange> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes ")
        .or_else(|| v.strip_prefix("bytes="))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (start, end) = (a.parse().ok()?, b.parse().ok()?);
    (end >= start).then_some(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Ok(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Ok(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=90-1000", 100),
            Ok(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Ok(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=5-1", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("items=0-1", 100), Err(RangeError::Malformed));
        assert_eq!(parse_range("bytes=-", 100), Err(RangeError::Malformed));
        assert_eq!(parse_range("bytes=a-1", 100), Err(RangeError::Malformed));
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            Err(RangeError::Unsatisfiable)
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("0-9"),
            Some(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            parse_content_range("bytes 10-19/*"),
            Some(ByteRange { start: 10, end: 19 })
        );
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(parse_content_range("-1-5"), None);
        assert_eq!(parse_content_range("99999999999999999999-1"), None);
    }
}
