//! Manifests, their repository links, tags and referrers.

use super::kv::{self, Reader, Table, WriteTx};
use super::records::{self, ManifestRecord};
use super::{prune_repo, touch_repo, Store, StoreError};
use crate::oci::{Descriptor, Digest, Kind, Reference, Summary};

/// Manifests up to this size live inside the database; larger ones in files.
pub const INLINE_MAX: usize = 64 * 1024;

/// A manifest as served.
#[derive(Clone, Debug)]
pub struct ManifestData {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub summary: Summary,
}

/// Why a manifest could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("blob {0} is not in the repository")]
    BlobUnknown(Digest),
    #[error("manifest {0} is not in the repository")]
    ManifestUnknown(Digest),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Store a parsed, digest-checked manifest in `repo` and point `tags` at it,
    /// in one transaction. Every blob and child it names must already be in
    /// the repository.
    pub fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        bytes: &[u8],
        summary: &Summary,
        tags: &[String],
    ) -> Result<(), PutError> {
        let d = digest.to_string();
        let in_file = bytes.len() > INLINE_MAX;
        let _gate = self.gate();
        if in_file && !self.files.manifest_path(digest).exists() {
            self.files
                .write_durable(&self.files.manifest_path(digest), bytes)
                .map_err(StoreError::from)?;
        }
        let mut tx = self.kv.write()?;
        for b in summary.required_blobs() {
            if !tx.contains(Table::RepoBlobs, &kv::key(&[repo, &b.digest.to_string()]))? {
                return Err(PutError::BlobUnknown(b.digest.clone()));
            }
        }
        for c in &summary.children {
            if !tx.contains(
                Table::RepoManifests,
                &kv::key(&[repo, &c.digest.to_string()]),
            )? {
                return Err(PutError::ManifestUnknown(c.digest.clone()));
            }
        }
        if !tx.contains(Table::Manifests, d.as_bytes())? {
            let rec = ManifestRecord {
                size: bytes.len() as u64,
                in_file,
                summary: summary.clone(),
            };
            tx.insert(Table::Manifests, d.as_bytes(), &records::encode(&rec))?;
            if !in_file {
                tx.insert(Table::ManifestBytes, d.as_bytes(), bytes)?;
            }
        }
        let link = kv::key(&[repo, &d]);
        if !tx.contains(Table::RepoManifests, &link)? {
            tx.insert(
                Table::RepoManifests,
                &link,
                records::now().to_string().as_bytes(),
            )?;
        }
        for t in tags {
            tx.insert(Table::Tags, &kv::key(&[repo, t]), d.as_bytes())?;
        }
        if let Some(s) = &summary.subject {
            tx.insert(
                Table::Referrers,
                &kv::key(&[repo, &s.digest.to_string(), &d]),
                b"",
            )?;
        }
        touch_repo(&mut tx, repo)?;
        tx.commit()?;
        Ok(())
    }

    /// The digest a reference names in `repo`, if the repository holds it.
    pub fn resolve(&self, repo: &str, reference: &Reference) -> Result<Option<Digest>, StoreError> {
        resolve_in(&self.kv.read()?, repo, reference)
    }

    /// A manifest of `repo` with its bytes.
    pub fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestData>, StoreError> {
        let tx = self.kv.read()?;
        let Some(digest) = resolve_in(&tx, repo, reference)? else {
            return Ok(None);
        };
        let d = digest.to_string();
        let Some(rec) = manifest_record(&tx, &d)? else {
            return Err(StoreError::Corrupt(format!(
                "manifest {d} is linked but has no record"
            )));
        };
        let bytes = if rec.in_file {
            std::fs::read(self.files.manifest_path(&digest))
                .map_err(|e| StoreError::Corrupt(format!("manifest {d}: file unreadable: {e}")))?
        } else {
            tx.get(Table::ManifestBytes, d.as_bytes())?
                .ok_or_else(|| StoreError::Corrupt(format!("manifest {d}: bytes missing")))?
        };
        if bytes.len() as u64 != rec.size {
            return Err(StoreError::Corrupt(format!(
                "manifest {d}: {} bytes stored, record says {}",
                bytes.len(),
                rec.size
            )));
        }
        Ok(Some(ManifestData {
            digest,
            bytes,
            summary: rec.summary,
        }))
    }

    /// Remove a manifest from `repo`, with the tags that point to it.
    /// Returns whether the repository held it.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StoreError> {
        let d = digest.to_string();
        let mut tx = self.kv.write()?;
        if !tx.remove(Table::RepoManifests, &kv::key(&[repo, &d]))? {
            return Ok(false);
        }
        for (k, v) in tx.scan(Table::Tags, &kv::prefix(&[repo]), None, usize::MAX)? {
            if v == d.as_bytes() {
                tx.remove(Table::Tags, &k)?;
            }
        }
        if let Some(rec) = manifest_record(&tx, &d)? {
            if let Some(s) = rec.summary.subject {
                tx.remove(
                    Table::Referrers,
                    &kv::key(&[repo, &s.digest.to_string(), &d]),
                )?;
            }
        }
        prune_repo(&mut tx, repo)?;
        tx.commit()?;
        Ok(true)
    }

    /// Remove a tag only. Returns whether it existed.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, StoreError> {
        let mut tx = self.kv.write()?;
        if !tx.remove(Table::Tags, &kv::key(&[repo, tag]))? {
            return Ok(false);
        }
        prune_repo(&mut tx, repo)?;
        tx.commit()?;
        Ok(true)
    }

    /// Point `tag` at `new` (or remove it) only if it now points at `expected`.
    /// `new` must be a manifest of the repository. Returns whether it swapped.
    pub fn compare_and_swap_tag(
        &self,
        repo: &str,
        tag: &str,
        expected: Option<&Digest>,
        new: Option<&Digest>,
    ) -> Result<bool, PutError> {
        let mut tx = self.kv.write()?;
        if !swap_tag_in(&mut tx, repo, tag, expected, new)? {
            return Ok(false);
        }
        tx.commit()?;
        Ok(true)
    }

    /// Tags of `repo` in lexical order after `last`, at most `n`.
    pub fn tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, StoreError> {
        let p = kv::prefix(&[repo]);
        let after = last.map(|l| kv::key(&[repo, l]));
        let rows = self.kv.read()?.scan(Table::Tags, &p, after.as_deref(), n)?;
        Ok(rows
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[p.len()..]).into_owned())
            .collect())
    }

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

    /// The parsed summary of a manifest, wherever it is.
    pub fn manifest_summary(&self, digest: &Digest) -> Result<Option<ManifestRecord>, StoreError> {
        manifest_record(&self.kv.read()?, &digest.to_string())
    }
}

/// Swap a tag inside `tx`; see [`Store::compare_and_swap_tag`].
pub(crate) fn swap_tag_in(
    tx: &mut WriteTx,
    repo: &str,
    tag: &str,
    expected: Option<&Digest>,
    new: Option<&Digest>,
) -> Result<bool, PutError> {
    let k = kv::key(&[repo, tag]);
    let current = tx.get(Table::Tags, &k)?;
    if current.as_deref()
        != expected
            .map(|e| e.to_string())
            .as_deref()
            .map(str::as_bytes)
    {
        return Ok(false);
    }
    match new {
        Some(n) => {
            let d = n.to_string();
            if !tx.contains(Table::RepoManifests, &kv::key(&[repo, &d]))? {
                return Err(PutError::ManifestUnknown(n.clone()));
            }
            tx.insert(Table::Tags, &k, d.as_bytes())?;
        }
        None => {
            tx.remove(Table::Tags, &k)?;
            prune_repo(tx, repo)?;
        }
    }
    Ok(true)
}

fn resolve_in(
    tx: &impl Reader,
    repo: &str,
    reference: &Reference,
) -> Result<Option<Digest>, StoreError> {
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match tx.get(Table::Tags, &kv::key(&[repo, t]))? {
            None => return Ok(None),
            Some(v) => String::from_utf8_lossy(&v)
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("tag {repo}:{t}: {e}")))?,
        },
    };
    if !tx.contains(Table::RepoManifests, &kv::key(&[repo, &digest.to_string()]))? {
        return Ok(None);
    }
    Ok(Some(digest))
}

pub(crate) fn manifest_record(
    tx: &impl Reader,
    digest: &str,
) -> Result<Option<ManifestRecord>, StoreError> {
    tx.get(Table::Manifests, digest.as_bytes())?
        .map(|v| records::decode(&format!("manifest record {digest}"), &v))
        .transpose()
}

/// Is this summary an index (for GC's walk over children)?
pub(crate) fn is_index(s: &Summary) -> bool {
    s.kind == Kind::Index
}
