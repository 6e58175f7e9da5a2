//! Referrers: the manifests of a repository whose `subject` is a given
//! manifest (signatures, SBOMs, attestations), recorded at push.

use super::kv::{self, Reader, Table};
use super::manifests::manifest_record;
use super::{Store, StoreError};
use crate::oci::{Descriptor, Digest};

impl Store {
    /// Descriptors of the manifests in `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Descriptor>, StoreError> {
        let tx = self.kv.read()?;
        let p = kv::prefix(&[repo, &subject.to_string()]);
        let mut out = Vec::new();
        for (k, _) in tx.scan(Table::Referrers, &p, None, usize::MAX)? {
            let d = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            let Some(rec) = manifest_record(&tx, &d)? else {
                continue;
            };
            let digest: Digest = d
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("referrer key {d}: {e}")))?;
            out.push(Descriptor {
                media_type: rec.summary.media_type.clone(),
                digest,
                size: rec.size,
                urls: None,
                annotations: rec.summary.annotations.clone(),
                platform: None,
                artifact_type: rec.summary.effective_artifact_type().map(str::to_string),
            });
        }
        Ok(out)
    }
}
