//! `docker save` archives: `manifest.json` names each image's config and
//! layer files; they become OCI image manifests over the staged files.

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;
use serde_json::json;

use super::layout;
use super::{BundleError, Result};
use crate::oci::{media, Digest};
use crate::store::Store;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// One image of the archive.
pub struct Image {
    pub repo_tags: Vec<String>,
    /// An OCI image manifest over the archive's config and layers.
    pub manifest: Vec<u8>,
}

pub fn images(
    manifest_json: &[u8],
    files: &HashMap<String, (Digest, u64)>,
    store: &Store,
) -> Result<Vec<Image>> {
    let entries: Vec<Entry> = serde_json::from_slice(manifest_json)
        .map_err(|e| BundleError::Bad(format!("{}: {e}", layout::DOCKER_MANIFEST)))?;
    let find = |path: &str| -> Result<(Digest, u64)> {
        let p = layout::normal_path(path);
        if let Some(f) = files.get(p) {
            return Ok(f.clone());
        }
        if let Some(d) = layout::blob_digest(p) {
            if let Some(r) = store.blob_anywhere(&d)? {
                return Ok((d, r.size));
            }
        }
        Err(BundleError::Bad(format!(
            "{}: names {path}, which the archive does not hold",
            layout::DOCKER_MANIFEST
        )))
    };
    let mut out = Vec::new();
    for e in entries {
        let (cd, cs) = find(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (d, s) = find(l)?;
            layers.push(
                json!({"mediaType": layer_type(store, &d), "digest": d.to_string(), "size": s}),
            );
        }
        let m = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": layers,
        });
        out.push(Image {
            repo_tags: e.repo_tags.unwrap_or_default(),
            manifest: serde_json::to_vec(&m).expect("manifest serialises"),
        });
    }
    Ok(out)
}

/// Docker saves layers uncompressed, but some tools write them compressed:
/// the media type follows the bytes.
fn layer_type(store: &Store, d: &Digest) -> &'static str {
    let mut head = [0u8; 4];
    let read = store
        .open_stored_blob(d)
        .map(|mut f| f.read_exact(&mut head).is_ok());
    match (read, head) {
        (Ok(true), [0x1f, 0x8b, ..]) => "application/vnd.oci.image.layer.v1.tar+gzip",
        (Ok(true), [0x28, 0xb5, 0x2f, 0xfd]) => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}
