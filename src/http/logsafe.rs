//! Client-controlled text on its way into a log line: control characters
//! (newlines, escape sequences) are written escaped, so a request cannot
//! forge a log line or send raw terminal codes to whoever reads the log.

use std::borrow::Cow;

/// `s` with every control character escaped (`\n`, `\u{1b}`), and
/// backslashes doubled so that an escape cannot be faked either.
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A header's value as text for a log line (bytes that are not UTF-8
/// replaced, control characters escaped).
pub fn header(v: &actix_web::http::header::HeaderValue) -> String {
    escaped(&String::from_utf8_lossy(v.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escaped("alice"), "alice");
        assert_eq!(escaped("a\nb"), "a\\nb");
        assert_eq!(escaped("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escaped("a\\nb"), "a\\\\nb");
        assert!(!escaped("x\r\n\t\u{7f}\u{9b}y")
            .chars()
            .any(char::is_control));
    }
}
