//! Entry points for the fuzz targets in `fuzz/` (and the corpus replay in
//! `tests/fuzz_corpus.rs`): every parser that sees outside input, fed
//! arbitrary bytes, with the invariants each must keep. None may panic.

use crate::http::range::{parse_content_range, parse_range};
use crate::oci::{manifest, name, Digest, Platform, Reference};

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// Digests: a parsed digest prints back to the same string.
pub fn digest(data: &[u8]) {
    let s = text(data);
    if let Ok(d) = s.parse::<Digest>() {
        assert_eq!(d.to_string(), s);
    }
}

/// Names, tags and references.
pub fn reference(data: &[u8]) {
    let s = text(data);
    if name::is_valid_name(s) {
        assert!(!s.contains("..") && !s.starts_with('/') && s.len() <= name::MAX_NAME_LEN);
    }
    if name::is_valid_tag(s) {
        assert!(s.len() <= name::MAX_TAG_LEN);
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
    }
}

/// Manifest, index and config JSON with any Content-Type.
pub fn manifest_json(data: &[u8]) {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (text(&data[..i]), &data[i + 1..]),
        None => ("", data),
    };
    if let Ok(s) = manifest::parse(ct, body) {
        assert!(!s.media_type.is_empty());
    }
    let _ = Platform::from_config(body);
}

/// Platform strings (`?platform=`, config values).
pub fn platform(data: &[u8]) {
    if let Some(p) = Platform::parse(text(data)) {
        assert!(p.same_as(&Platform::parse(&p.to_string()).expect("a platform prints parseably")));
    }
}

/// `Range` and `Content-Range` headers.
pub fn range(data: &[u8]) {
    let s = text(data);
    let len = data.len() as u64 * 1000;
    if let Ok(r) = parse_range(s, len) {
        assert!(r.start <= r.end && r.end < len);
    }
    if let Some(r) = parse_content_range(s) {
        assert!(r.start <= r.end);
    }
}

/// htpasswd files.
pub fn htpasswd(data: &[u8]) {
    let (users, _) = crate::auth::htpasswd::parse(text(data));
    for (u, h) in users {
        assert!(!u.is_empty() && h.starts_with("$2"));
    }
}

/// Bundle reading (tar, tar.zst, tar.gz; layouts and docker archives) and
/// applying what it holds, against one scratch store per process.
pub fn bundle(data: &[u8]) {
    use std::sync::OnceLock;
    type Scratch = (
        std::sync::Arc<crate::store::Store>,
        crate::registry::Registry,
    );
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    let (store, registry) = SCRATCH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("berth-fuzz-bundle-{}", std::process::id()));
        let store = crate::store::Store::open(&dir, &crate::store::StoreOptions::default())
            .expect("a scratch store opens");
        let store = std::sync::Arc::new(store);
        let registry =
            crate::registry::Registry::new(store.clone(), crate::config::Config::default());
        (store, registry)
    });
    if let Ok(contents) = crate::bundle::import::read_stream(
        store,
        data,
        crate::bundle::import::ReadOptions {
            threads: 1,
            progress: None,
            local: true,
        },
    ) {
        let dest = crate::bundle::apply::Local(registry);
        let _ = crate::bundle::apply::apply(store, &dest, &contents, Some("fuzz"), 1 << 22);
    }
}

/// A fuzz entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 7] = [
    ("digest", digest),
    ("reference", reference),
    ("manifest_json", manifest_json),
    ("platform", platform),
    ("range", range),
    ("htpasswd", htpasswd),
    ("bundle", bundle),
];
