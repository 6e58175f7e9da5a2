//! The OCI image layout vocabulary of a bundle: file names, `index.json`
//! entries, and the Berth metadata file beside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::{Descriptor, Digest};

pub const OCI_LAYOUT: &str = "oci-layout";
pub const OCI_LAYOUT_BODY: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub const INDEX: &str = "index.json";
pub const META: &str = "berth-bundle.json";
/// `docker save` archives name their images here.
pub const DOCKER_MANIFEST: &str = "manifest.json";
/// The tag an `index.json` entry stands for.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The image name containerd and `docker save` (v25+) put on entries.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The repository an entry belongs to (entries without a tag, e.g. referrers).
pub const ANN_REPOSITORY: &str = "io.berth.repository";
/// Set on an index rewritten to carry only some platforms.
pub use crate::oci::filter::ANN_PLATFORMS;

/// `berth-bundle.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Meta {
    pub berth_bundle: u32,
    /// Unix seconds.
    pub created: u64,
    /// Only these platforms of multi-arch images were carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Blobs left out because the destination's inventory has them.
    #[serde(default)]
    pub omitted: Vec<BlobRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
}

/// `index.json` of an image layout.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The tar path of a blob.
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// The digest a tar path names, if it is `blobs/<alg>/<hex>`.
pub fn blob_digest(path: &str) -> Option<Digest> {
    let rest = normal_path(path).strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// A tar path without a leading `./` or `/`.
pub fn normal_path(path: &str) -> &str {
    let p = path.trim_start_matches("./");
    p.trim_start_matches('/')
}

/// Where an `index.json` entry goes: repository and tag, read from
/// `REPO:TAG` in its ref name (or containerd's full image name), falling back
/// to `default_repo` for a bare tag.
pub fn entry_target(
    annotations: Option<&BTreeMap<String, String>>,
    default_repo: Option<&str>,
) -> Option<(String, Option<String>)> {
    let a = annotations;
    let get = |k: &str| a.and_then(|m| m.get(k)).map(String::as_str);
    if let Some(name) = get(CONTAINERD_NAME).or(get(REF_NAME)) {
        if let Some((repo, tag)) = split_name(name) {
            return Some((default_repo.unwrap_or(&repo).to_string(), Some(tag)));
        }
        // a bare tag, as `skopeo copy ... oci-archive:FILE:TAG` writes
        if crate::oci::name::is_valid_tag(name) {
            if let Some(r) = get(ANN_REPOSITORY).or(default_repo) {
                return Some((r.to_string(), Some(name.to_string())));
            }
            return None;
        }
    }
    let repo = get(ANN_REPOSITORY).or(default_repo)?;
    Some((repo.to_string(), None))
}

/// `[registry/]repo:tag` to (repo, tag); a registry host part is dropped.
pub fn split_name(name: &str) -> Option<(String, String)> {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let colon = slash + name[slash..].find(':')?;
    let (mut repo, tag) = (&name[..colon], &name[colon + 1..]);
    if let Some((first, rest)) = repo.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            repo = rest;
        }
    }
    (crate::oci::name::is_valid_name(repo) && crate::oci::name::is_valid_tag(tag))
        .then(|| (repo.to_string(), tag.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_repository_and_tag() {
        assert_eq!(
            split_name("team/app:v1"),
            Some(("team/app".into(), "v1".into()))
        );
        assert_eq!(
            split_name("docker.io/library/alpine:3.20"),
            Some(("library/alpine".into(), "3.20".into()))
        );
        assert_eq!(
            split_name("localhost:5000/app:latest"),
            Some(("app".into(), "latest".into()))
        );
        assert_eq!(split_name("latest"), None);
        assert_eq!(split_name("Bad:x"), None);
    }

    #[test]
    fn blob_paths_round_trip() {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(blob_digest(&blob_path(&d)), Some(d.clone()));
        assert_eq!(blob_digest(&format!("./{}", blob_path(&d))), Some(d));
        assert_eq!(blob_digest("blobs/sha256/zz"), None);
        assert_eq!(blob_digest("manifest.json"), None);
    }

    #[test]
    fn entries_map_to_targets() {
        let mut a = BTreeMap::new();
        a.insert(REF_NAME.to_string(), "app:v2".to_string());
        assert_eq!(
            entry_target(Some(&a), None),
            Some(("app".into(), Some("v2".into())))
        );
        a.insert(REF_NAME.to_string(), "v2".to_string());
        assert_eq!(entry_target(Some(&a), None), None);
        assert_eq!(
            entry_target(Some(&a), Some("x/y")),
            Some(("x/y".into(), Some("v2".into())))
        );
        assert_eq!(entry_target(None, Some("x")), Some(("x".into(), None)));
    }
}
