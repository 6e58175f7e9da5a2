//! Server-side multi-arch merge: how a tag moves when an image is pushed to
//! it or a platform manifest is deleted (the table in the README).
//!
//! Pure decisions on the tag's current content, taken inside the store's
//! write transaction, so concurrent pushers of different platforms all end
//! up in the index (compare-and-swap by construction). A Berth-made index
//! lists its entries in canonical platform order, so the same set of
//! platforms always yields the same index digest.

use serde_json::{json, Value};

use crate::oci::{media, Digest, Kind, Platform, Summary};
pub use crate::store::PushedManifest as Pushed;
use crate::store::{NewManifest, TagCurrent, TagTarget};
use crate::verify;

pub use crate::config::MergeMode;

/// Where the tag goes when `pushed` is pushed to it.
///
/// An arm64 image pushed to a tag that holds an amd64 image makes an index
/// of both:
///
/// ```
/// use berth::oci::{manifest, media, Algorithm, Kind, Platform};
/// use berth::registry::merge::{on_push, MergeMode, Pushed};
/// use berth::store::{TagCurrent, TagTarget};
///
/// let image = |arch: &str| {
///     let cfg = format!("sha256:{}", "0".repeat(64));
///     let bytes = format!(r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cfg}","size":1}},"layers":[],"annotations":{{"arch":"{arch}"}}}}"#,
///         media::OCI_MANIFEST, media::OCI_CONFIG).into_bytes();
///     let mut s = manifest::parse(media::OCI_MANIFEST, &bytes).unwrap();
///     s.platform = Platform::parse(&format!("linux/{arch}"));
///     (berth::verify::digest_bytes(Algorithm::Sha256, &bytes), bytes, s)
/// };
/// let (amd64, arm64) = (image("amd64"), image("arm64"));
/// let current = TagCurrent { digest: amd64.0, summary: amd64.2, bytes: amd64.1, made_by_berth: false };
/// let pushed = Pushed { digest: &arm64.0, size: arm64.1.len() as u64, summary: &arm64.2 };
/// let TagTarget::Index(index) = on_push(MergeMode::Platform, &pushed, Some(&current)) else {
///     panic!("not merged");
/// };
/// assert_eq!(index.summary.kind, Kind::Index);
/// let platforms: Vec<String> = index.summary.children.iter()
///     .map(|c| c.platform.as_ref().unwrap().to_string()).collect();
/// assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
/// ```
pub fn on_push(mode: MergeMode, pushed: &Pushed<'_>, current: Option<&TagCurrent>) -> TagTarget {
    let point = TagTarget::Point(pushed.digest.clone());
    let (Some(p), Some(current)) = (image_platform(pushed.summary), current) else {
        return point;
    };
    if mode == MergeMode::Overwrite || &current.digest == pushed.digest {
        return point;
    }
    let entry = descriptor(pushed.summary, pushed.digest, pushed.size, p);
    if let Some(q) = image_platform(&current.summary) {
        if q.same_as(p) {
            return point;
        }
        let other = descriptor(
            &current.summary,
            &current.digest,
            current.bytes.len() as u64,
            q,
        );
        return TagTarget::Index(Box::new(build(json!({}), vec![other, entry], true)));
    }
    if current.summary.kind != Kind::Index {
        return point;
    }
    let Ok(Value::Object(mut base)) = serde_json::from_slice::<Value>(&current.bytes) else {
        return point;
    };
    let mut entries = match base.remove("manifests") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    match entries
        .iter()
        .position(|e| entry_platform(e).is_some_and(|q| q.same_as(p)))
    {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    TagTarget::Index(Box::new(build(
        Value::Object(base),
        entries,
        current.made_by_berth,
    )))
}

/// Where a tag pointing to `current` (an index) goes when `removed` is deleted.
pub fn on_delete(current: &TagCurrent, removed: &Digest) -> TagTarget {
    let Ok(Value::Object(mut base)) = serde_json::from_slice::<Value>(&current.bytes) else {
        return TagTarget::Keep;
    };
    let Some(Value::Array(entries)) = base.remove("manifests") else {
        return TagTarget::Keep;
    };
    let left: Vec<Value> = entries
        .into_iter()
        .filter(|e| e["digest"].as_str() != Some(removed.to_string().as_str()))
        .collect();
    match left.len() {
        0 => TagTarget::Remove,
        1 => match left[0]["digest"].as_str().and_then(|d| d.parse().ok()) {
            Some(d) => TagTarget::Point(d),
            None => TagTarget::Keep,
        },
        _ => TagTarget::Index(Box::new(build(
            Value::Object(base),
            left,
            current.made_by_berth,
        ))),
    }
}

/// The platform of a runnable image, if it has one.
fn image_platform(s: &Summary) -> Option<&Platform> {
    s.is_image().then_some(s.platform.as_ref()).flatten()
}

fn entry_platform(entry: &Value) -> Option<Platform> {
    serde_json::from_value(entry.get("platform")?.clone()).ok()
}

/// An index entry: the platform exactly as the image's config states it.
fn descriptor(s: &Summary, digest: &Digest, size: u64, p: &Platform) -> Value {
    json!({"mediaType": s.media_type, "digest": digest.to_string(), "size": size, "platform": p})
}

/// A new index from `base` (the fields of the index it replaces, if any) and
/// `entries`. Canonical: entries sorted by platform, nothing but the entries.
fn build(base: Value, mut entries: Vec<Value>, canonical: bool) -> NewManifest {
    if canonical {
        entries.sort_by_cached_key(|e| {
            (
                entry_platform(e).map(|p| p.sort_key()).unwrap_or_default(),
                e["digest"].as_str().unwrap_or("").to_string(),
            )
        });
    }
    let all_docker = entries
        .iter()
        .all(|e| e["mediaType"].as_str() == Some(media::DOCKER_MANIFEST));
    let media_type = if all_docker {
        media::DOCKER_LIST
    } else {
        media::OCI_INDEX
    };
    let mut index = serde_json::Map::new();
    index.insert("schemaVersion".into(), json!(2));
    index.insert("mediaType".into(), json!(media_type));
    index.insert("manifests".into(), Value::Array(entries));
    if let Value::Object(base) = base {
        for (k, v) in base {
            if !matches!(k.as_str(), "schemaVersion" | "mediaType" | "manifests") {
                index.insert(k, v);
            }
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(index)).expect("index serialises");
    let summary = crate::oci::manifest::parse(media_type, &bytes).expect("a built index parses");
    NewManifest {
        digest: verify::digest_bytes(crate::oci::Algorithm::Sha256, &bytes),
        bytes,
        summary,
        made_by_berth: canonical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest;

    fn image(arch: &str, variant: Option<&str>, docker: bool) -> (Digest, Vec<u8>, Summary) {
        let (mt, cmt) = if docker {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        } else {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        };
        let cfg = format!("sha256:{}", verify::hex(&[arch.len() as u8; 32]));
        let bytes = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": mt,
            "config": {"mediaType": cmt, "digest": cfg, "size": 1}, "layers": [], "annotations": {"a": arch}}))
        .unwrap();
        let mut s = manifest::parse(mt, &bytes).unwrap();
        s.platform = Some(Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        });
        (
            verify::digest_bytes(crate::oci::Algorithm::Sha256, &bytes),
            bytes,
            s,
        )
    }

    fn current(m: &(Digest, Vec<u8>, Summary), berth: bool) -> TagCurrent {
        TagCurrent {
            digest: m.0.clone(),
            summary: m.2.clone(),
            bytes: m.1.clone(),
            made_by_berth: berth,
        }
    }

    fn push(m: &(Digest, Vec<u8>, Summary), cur: Option<&TagCurrent>) -> TagTarget {
        on_push(
            MergeMode::Platform,
            &Pushed {
                digest: &m.0,
                size: m.1.len() as u64,
                summary: &m.2,
            },
            cur,
        )
    }

    fn index_of(t: TagTarget) -> NewManifest {
        match t {
            TagTarget::Index(m) => *m,
            other => panic!("expected an index, got {other:?}"),
        }
    }

    #[test]
    fn merge_table() {
        let amd = image("amd64", None, false);
        let arm = image("arm64", Some("v8"), false);
        let arm_again = image("arm64", None, true);
        assert!(matches!(push(&amd, None), TagTarget::Point(d) if d == amd.0));
        // same platform (arm64 == arm64/v8): replace
        assert!(
            matches!(push(&arm_again, Some(&current(&arm, false))), TagTarget::Point(d) if d == arm_again.0)
        );
        // another platform: an index of both, in canonical order whatever the order of pushes
        let ab = index_of(push(&arm, Some(&current(&amd, false))));
        let ba = index_of(push(&amd, Some(&current(&arm, false))));
        assert_eq!(ab.digest, ba.digest);
        assert_eq!(ab.summary.media_type, media::OCI_INDEX);
        assert_eq!(ab.summary.children.len(), 2);
        assert_eq!(
            ab.summary.children[0]
                .platform
                .as_ref()
                .unwrap()
                .architecture,
            "amd64"
        );
        // replace in place inside an index
        let cur = TagCurrent {
            digest: ab.digest.clone(),
            summary: ab.summary.clone(),
            bytes: ab.bytes.clone(),
            made_by_berth: true,
        };
        let replaced = index_of(push(&arm_again, Some(&cur)));
        assert_eq!(replaced.summary.children.len(), 2);
        assert_eq!(replaced.summary.children[1].digest, arm_again.0);
        // deleting: one left -> straight to it; none -> tag goes
        assert!(matches!(on_delete(&cur, &arm.0), TagTarget::Point(d) if d == amd.0));
    }

    #[test]
    fn docker_only_sets_make_a_manifest_list() {
        let a = image("amd64", None, true);
        let b = image("ppc64le", None, true);
        let l = index_of(push(&b, Some(&current(&a, false))));
        assert_eq!(l.summary.media_type, media::DOCKER_LIST);
        let c = image("s390x", None, false);
        let cur = TagCurrent {
            digest: l.digest.clone(),
            summary: l.summary.clone(),
            bytes: l.bytes.clone(),
            made_by_berth: true,
        };
        assert_eq!(
            index_of(push(&c, Some(&cur))).summary.media_type,
            media::OCI_INDEX
        );
    }

    #[test]
    fn overwrite_mode_and_artifacts_replace() {
        let a = image("amd64", None, false);
        let b = image("arm64", None, false);
        let t = on_push(
            MergeMode::Overwrite,
            &Pushed {
                digest: &b.0,
                size: 1,
                summary: &b.2,
            },
            Some(&current(&a, false)),
        );
        assert!(matches!(t, TagTarget::Point(d) if d == b.0));
        let mut art = b.clone();
        art.2.config.as_mut().unwrap().media_type = "application/vnd.example".into();
        assert!(matches!(
            push(&art, Some(&current(&a, false))),
            TagTarget::Point(_)
        ));
    }
}
