//! Pushing manifests: parse, check the digest, check references, store.

use super::{Error, Registry, Result};
use crate::oci::manifest::{self, ManifestError};
use crate::oci::{Algorithm, Digest, Reference};
use crate::store::PutError;
use crate::verify;

/// What a manifest push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<String>,
}

impl Registry {
    /// Store `bytes` as a manifest of `repo` under `reference`, also tagging
    /// it with `extra_tags` (`?tag=` on a push by digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: &str,
        bytes: &[u8],
        extra_tags: Vec<String>,
    ) -> Result<Pushed> {
        let summary = manifest::parse(content_type, bytes).map_err(|e| match e {
            ManifestError::Schema1 | ManifestError::Json(_) | ManifestError::Invalid(_) => {
                Error::ManifestInvalid(e.to_string())
            }
        })?;
        let (digest, mut tags) = match reference {
            Reference::Digest(want) => {
                let got = verify::digest_bytes(want.algorithm(), bytes);
                if &got != want {
                    return Err(Error::DigestInvalid(format!(
                        "manifest body has digest {got}, the reference says {want}"
                    )));
                }
                (got, Vec::new())
            }
            Reference::Tag(t) => (
                verify::digest_bytes(Algorithm::Sha256, bytes),
                vec![t.clone()],
            ),
        };
        for t in extra_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        self.store
            .put_manifest(repo, &digest, bytes, &summary, &tags)
            .map_err(|e| match e {
                PutError::BlobUnknown(d) => Error::ManifestBlobUnknown(d.to_string()),
                PutError::ManifestUnknown(d) => {
                    Error::ManifestUnknown(format!("child {d} of the index"))
                }
                PutError::Store(s) => Error::Store(s),
            })?;
        Ok(Pushed {
            digest,
            subject: summary.subject.map(|s| s.digest),
            tags,
        })
    }
}
