//! Values kept in the metadata tables, serialised as JSON so a data directory
//! can be inspected and a corrupt value is reported, never a panic.

use std::borrow::Cow;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::StoreError;
use crate::oci::{manifest, Platform, Summary};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    /// Unix seconds when the blob became visible.
    pub created: u64,
}

/// A manifest as the store knows it. Schema 1 kept this as JSON beside a
/// separate table of bytes; schema 2 keeps it as [`encode_manifest`] says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub size: u64,
    /// True when the bytes live in a file instead of the database.
    pub in_file: bool,
    pub summary: Summary,
    /// An index Berth made by merging platforms (kept in canonical order).
    #[serde(default)]
    pub made_by_berth: bool,
    /// Cached from an upstream: the blobs and children it names arrive
    /// when first pulled, so their absence is not damage.
    #[serde(default)]
    pub cached: bool,
}

/// How a manifest came to be stored, besides a client's push.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// An index Berth made by merging platforms.
    pub made_by_berth: bool,
    /// Cached from an upstream (see [`ManifestRecord::cached`]).
    pub cached: bool,
}

/// What a stored manifest's bytes do not say (schema 2). Borrowed when
/// written, so a push copies nothing to encode it.
#[derive(Serialize, Deserialize)]
struct ManifestHeader<'a> {
    size: u64,
    #[serde(default, skip_serializing_if = "is_false")]
    in_file: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    made_by_berth: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    cached: bool,
    /// The media type it was pushed as (a body may omit it).
    media_type: Cow<'a, str>,
    /// From the image's config blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Cow<'a, Platform>>,
    /// Only for manifests kept in files, so walking the graph reads no file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<Cow<'a, Summary>>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A manifest's value in the `manifests` table: a 4-byte little-endian
/// header length, the header (JSON), then the manifest bytes when they are
/// kept inline (`inline`; None: the manifest lives in a file). The summary
/// is not stored for inline manifests: it is a function of the bytes and
/// the media type, parsed again on read, so a push writes one small value
/// instead of a record, a summary and the bytes.
pub fn encode_manifest(
    summary: &Summary,
    size: u64,
    origin: Origin,
    inline: Option<&[u8]>,
) -> Vec<u8> {
    let in_file = inline.is_none();
    let header = ManifestHeader {
        size,
        in_file,
        made_by_berth: origin.made_by_berth,
        cached: origin.cached,
        media_type: Cow::Borrowed(&summary.media_type),
        platform: summary.platform.as_ref().map(Cow::Borrowed),
        summary: in_file.then_some(Cow::Borrowed(summary)),
    };
    let h = encode(&header);
    let body = inline.unwrap_or_default();
    let mut v = Vec::with_capacity(4 + h.len() + body.len());
    v.extend_from_slice(&(h.len() as u32).to_le_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(body);
    v
}

/// Read a value made by [`encode_manifest`]: the record and the inline
/// bytes (empty for a manifest kept in a file).
pub fn decode_manifest<'v>(
    digest: &str,
    v: &'v [u8],
) -> Result<(ManifestRecord, &'v [u8]), StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("manifest record {digest}: {why}"));
    let (h, inline) = split_manifest(digest, v)?;
    let h: ManifestHeader = decode(&format!("manifest record {digest}"), h)?;
    let summary = match h.summary {
        Some(s) => s.into_owned(),
        None if h.in_file => return Err(corrupt("no summary for a manifest in a file".into())),
        None => {
            let mut s = manifest::parse(&h.media_type, inline)
                .map_err(|e| corrupt(format!("stored bytes do not parse: {e}")))?;
            s.platform = h.platform.map(Cow::into_owned);
            s
        }
    };
    let rec = ManifestRecord {
        size: h.size,
        in_file: h.in_file,
        summary,
        made_by_berth: h.made_by_berth,
        cached: h.cached,
    };
    Ok((rec, inline))
}

/// A value made by [`encode_manifest`] split into its header and the
/// inline bytes.
fn split_manifest<'v>(digest: &str, v: &'v [u8]) -> Result<(&'v [u8], &'v [u8]), StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("manifest record {digest}: {why}"));
    let (len, rest) = v
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("too short"))?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt("header runs past the value"));
    }
    Ok(rest.split_at(len))
}

/// A stored manifest's size and whether it lives in a file, from the
/// header alone: what GC needs of a manifest it removes, without parsing
/// the manifest (which a damaged one would fail).
pub fn manifest_size_in_file(digest: &str, v: &[u8]) -> Result<(u64, bool), StoreError> {
    #[derive(Deserialize)]
    struct Place {
        size: u64,
        #[serde(default)]
        in_file: bool,
    }
    let (h, _) = split_manifest(digest, v)?;
    let p: Place = decode(&format!("manifest record {digest}"), h)?;
    Ok((p.size, p.in_file))
}

/// A tag's value in the `tags` table: the digest it points at and when it
/// last moved (unix milliseconds, so pushes within a second still order),
/// separated by a space.
pub fn tag_value(digest: &str, moved_ms: u64) -> Vec<u8> {
    format!("{digest} {moved_ms}").into_bytes()
}

/// The digest part of a tag value.
pub fn tag_digest(v: &[u8]) -> &[u8] {
    v.split(|&b| b == b' ').next().unwrap_or_default()
}

/// When a tag last moved (0 when unknown).
pub fn tag_moved(v: &[u8]) -> u64 {
    v.iter()
        .position(|&b| b == b' ')
        .and_then(|i| std::str::from_utf8(&v[i + 1..]).ok()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    /// Unix seconds when the session was opened.
    pub created: u64,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: &[u8], in_file: bool) -> ManifestRecord {
        let mut summary = manifest::parse("", bytes).unwrap();
        summary.platform = Platform::parse("linux/arm64/v8");
        ManifestRecord {
            size: bytes.len() as u64,
            in_file,
            summary,
            made_by_berth: true,
            cached: false,
        }
    }

    fn origin() -> Origin {
        Origin {
            made_by_berth: true,
            cached: false,
        }
    }

    const M: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

    #[test]
    fn manifest_values_round_trip() {
        for in_file in [false, true] {
            let rec = record(M, in_file);
            let v = encode_manifest(&rec.summary, rec.size, origin(), (!in_file).then_some(M));
            let (back, inline) = decode_manifest("d", &v).unwrap();
            assert_eq!(back, rec);
            assert_eq!(inline, if in_file { &[][..] } else { M });
        }
    }

    /// GC's header-only read agrees with the full one, and also answers
    /// for a manifest whose stored bytes no longer parse.
    #[test]
    fn size_and_place_come_from_the_header() {
        for in_file in [false, true] {
            let rec = record(M, in_file);
            let v = encode_manifest(
                &rec.summary,
                rec.size,
                Origin::default(),
                (!in_file).then_some(M),
            );
            assert_eq!(
                manifest_size_in_file("d", &v).unwrap(),
                (M.len() as u64, in_file)
            );
        }
        let rec = record(M, false);
        let v = encode_manifest(
            &rec.summary,
            rec.size,
            Origin::default(),
            Some(b"{not json"),
        );
        assert!(decode_manifest("d", &v).is_err());
        assert_eq!(
            manifest_size_in_file("d", &v).unwrap(),
            (M.len() as u64, false)
        );
        assert!(manifest_size_in_file("d", &v[..3]).is_err());
    }

    #[test]
    fn damaged_manifest_values_are_corrupt_not_panics() {
        let rec = record(M, false);
        let v = encode_manifest(&rec.summary, rec.size, origin(), Some(M));
        for cut in 0..v.len() {
            assert!(matches!(
                decode_manifest("d", &v[..cut]),
                Err(StoreError::Corrupt(_))
            ));
        }
        let mut long = v.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_manifest("d", &long),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn tag_values_hold_digest_and_time() {
        let v = tag_value("sha256:ab", 1_700_000_000_123);
        assert_eq!(tag_digest(&v), b"sha256:ab");
        assert_eq!(tag_moved(&v), 1_700_000_000_123);
        // a schema 1 value: digest only
        assert_eq!(tag_digest(b"sha256:ab"), b"sha256:ab");
        assert_eq!(tag_moved(b"sha256:ab"), 0);
    }
}
