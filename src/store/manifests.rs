//! Manifests and their repository links: push (checks, storage, the tag
//! moves of `tags`), pull, delete. Small manifests live in the database,
//! larger ones in files, verified whenever they are read.

use super::bodies::{Bodies, Kind};
use super::commit::Pending;
use super::kv::{self, Reader, Table, WriteTx};
use super::records::{self, ManifestRecord};
use super::tags::{apply_in, remove_tag, tag_current_in, TagCurrent, TagTarget};
use super::{prune_repo, touch_repo, Store, StoreError};
use std::io::Read;

use crate::oci::{Descriptor, Digest, Reference, Summary};

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
    /// A descriptor's size disagrees with what the store holds under its
    /// digest (a client bug, or an attempt to mislead pullers).
    #[error("descriptor of {digest} says {declared} bytes, the registry holds {stored}")]
    SizeMismatch {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A manifest Berth made (a merged index), to be stored with the tag move.
#[derive(Clone, Debug)]
pub struct NewManifest {
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub summary: Summary,
    /// Keep its entries in canonical order on later merges.
    pub made_by_berth: bool,
}

/// The manifest being pushed, as a tag policy sees it.
pub struct PushedManifest<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub summary: &'a Summary,
}

/// Decides a tag's new target from the pushed manifest and the tag's
/// current one, inside the write transaction (so the decision is a
/// compare-and-swap).
pub type TagPolicy =
    Box<dyn Fn(&PushedManifest<'_>, &str, Option<&TagCurrent>) -> TagTarget + Send>;

/// A parsed, digest-checked manifest to store in `repo`, moving `tags` as
/// `policy` decides (plain pushes: `TagTarget::Point(digest)`).
pub struct ManifestPush {
    pub repo: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub summary: Summary,
    pub tags: Vec<String>,
    pub policy: TagPolicy,
    /// Cached from an upstream: stored before the blobs and children it
    /// names, which arrive when pulled (no content checks).
    pub cached: bool,
}

impl ManifestPush {
    /// A plain push: each tag points at the manifest.
    pub fn point(
        repo: &str,
        digest: &Digest,
        bytes: &[u8],
        summary: Summary,
        tags: &[&str],
    ) -> ManifestPush {
        ManifestPush {
            repo: repo.to_string(),
            digest: digest.clone(),
            bytes: bytes.to_vec(),
            summary,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            policy: Box::new(|pushed, _, _| TagTarget::Point(pushed.digest.clone())),
            cached: false,
        }
    }
}

/// Each tag's digest after a push.
pub type TagDigests = Vec<(String, Digest)>;

impl Store {
    /// Store a manifest and move its tags in one transaction, shared with
    /// the pushes arriving at the same time (see `commit`). Every blob and
    /// child it names must already be in the repository.
    pub fn submit_manifest(&self, push: ManifestPush) -> Pending<TagDigests, PutError> {
        let files = self.bodies.clone();
        self.committer.submit(move |tx| put_in(tx, &*files, push))
    }

    /// [`Store::submit_manifest`], waiting for the outcome.
    pub fn put_manifest(&self, push: ManifestPush) -> Result<TagDigests, PutError> {
        self.submit_manifest(push).wait()
    }

    /// A manifest's record and bytes.
    pub(crate) fn load_in(
        &self,
        tx: &impl Reader,
        digest: &Digest,
    ) -> Result<(ManifestRecord, Vec<u8>), StoreError> {
        load_in(tx, &*self.bodies, digest)
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
        let (rec, bytes) = self.load_in(&tx, &digest)?;
        Ok(Some(ManifestData {
            digest,
            bytes,
            summary: rec.summary,
        }))
    }

    /// Remove a manifest from `repo`, with the tags that point to it. Tags
    /// pointing to an index that lists it are moved as `prune` decides (given
    /// the index and the digest removed). Returns whether the repository held it.
    pub fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        prune: &dyn Fn(&TagCurrent, &Digest) -> TagTarget,
    ) -> Result<bool, StoreError> {
        let d = digest.to_string();
        let _gate = self.gate();
        let mut tx = self.kv.write()?;
        if !tx.remove(Table::RepoManifests, &kv::key(&[repo, &d]))? {
            return Ok(false);
        }
        let p = kv::prefix(&[repo]);
        for (k, v) in tx.scan(Table::Tags, &p, None, usize::MAX)? {
            let tag = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            if records::tag_digest(&v) == d.as_bytes() {
                remove_tag(&mut tx, &k)?;
                continue;
            }
            let Some(current) = tag_current_in(&tx, &*self.bodies, repo, &tag)? else {
                continue;
            };
            if is_index(&current.summary)
                && current.summary.children.iter().any(|c| &c.digest == digest)
            {
                let target = prune(&current, digest);
                apply_in(&mut tx, &*self.bodies, repo, &tag, target)?;
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
}

/// Refuse, or store the manifest and move the tags (see [`ManifestPush`]).
fn put_in(
    tx: &mut WriteTx,
    files: &dyn Bodies,
    push: ManifestPush,
) -> Result<Result<TagDigests, PutError>, StoreError> {
    let ManifestPush {
        repo,
        digest,
        bytes,
        summary,
        tags,
        policy,
        cached,
    } = push;
    if !cached {
        if let Err(refused) = check_content(tx, &repo, &summary)? {
            return Ok(Err(refused));
        }
    }
    let origin = records::Origin {
        made_by_berth: false,
        cached,
    };
    store_in(tx, files, &repo, &digest, &bytes, &summary, origin)?;
    let pushed = PushedManifest {
        digest: &digest,
        size: bytes.len() as u64,
        summary: &summary,
    };
    let mut moved = Vec::new();
    for t in &tags {
        let current = tag_current_in(tx, files, &repo, t)?;
        let target = policy(&pushed, t, current.as_ref());
        if let Some(d) = apply_in(tx, files, &repo, t, target)? {
            moved.push((t.clone(), d));
        } else if let Some(c) = current {
            moved.push((t.clone(), c.digest));
        }
    }
    touch_repo(tx, &repo)?;
    Ok(Ok(moved))
}

/// Every blob and child a manifest names must be in the repository, with
/// the size its descriptor states. Refuses before anything is written: the
/// batch commits the others' changes.
fn check_content(
    tx: &WriteTx,
    repo: &str,
    summary: &Summary,
) -> Result<Result<(), PutError>, StoreError> {
    let mismatch = |d: &Descriptor, stored: u64| PutError::SizeMismatch {
        digest: d.digest.clone(),
        declared: d.size,
        stored,
    };
    for b in summary.required_blobs() {
        let d = b.digest.to_string();
        if !tx.contains(Table::RepoBlobs, &kv::key(&[repo, &d]))? {
            return Ok(Err(PutError::BlobUnknown(b.digest.clone())));
        }
        match super::blobs::blob_record(tx, &d)? {
            Some(r) if r.size != b.size => return Ok(Err(mismatch(b, r.size))),
            _ => {}
        }
    }
    for c in &summary.children {
        let d = c.digest.to_string();
        if !tx.contains(Table::RepoManifests, &kv::key(&[repo, &d]))? {
            return Ok(Err(PutError::ManifestUnknown(c.digest.clone())));
        }
        if let Some(v) = tx.get(Table::Manifests, d.as_bytes())? {
            match records::manifest_size_in_file(&d, &v)? {
                (size, _) if size != c.size => return Ok(Err(mismatch(c, size))),
                _ => {}
            }
        }
    }
    Ok(Ok(()))
}

/// Record a manifest (if new) and link it into `repo`.
pub(super) fn store_in(
    tx: &mut WriteTx,
    files: &dyn Bodies,
    repo: &str,
    digest: &Digest,
    bytes: &[u8],
    summary: &Summary,
    origin: records::Origin,
) -> Result<(), StoreError> {
    let d = digest.to_string();
    let in_file = bytes.len() > INLINE_MAX;
    let existed = tx.contains(Table::Manifests, d.as_bytes())?;
    if !existed {
        if in_file && read_manifest_file(files, digest, bytes.len() as u64).is_err() {
            files.put(Kind::Manifest, digest, bytes)?;
        }
        let inline = (!in_file).then_some(bytes);
        let value = records::encode_manifest(summary, bytes.len() as u64, origin, inline);
        tx.insert(Table::Manifests, d.as_bytes(), &value)?;
    } else if !origin.cached && manifest_record(tx, &d)?.is_some_and(|r| r.cached) {
        // what was cached is now held complete (synced or pushed): its
        // content is checked, and no longer evictable
        let inline = (!in_file).then_some(bytes);
        let value = records::encode_manifest(summary, bytes.len() as u64, origin, inline);
        tx.insert(Table::Manifests, d.as_bytes(), &value)?;
    }
    if existed && in_file {
        // The same bytes again repair a file that rotted (verify on read
        // refuses to serve it meanwhile).
        if let Err(why) = read_manifest_file(files, digest, bytes.len() as u64) {
            files.put(Kind::Manifest, digest, bytes)?;
            tracing::info!(digest = %d, was = %why, "damaged manifest repaired by a push");
        }
        tx.remove(Table::DamagedManifests, d.as_bytes())?;
    }
    let link = kv::key(&[repo, &d]);
    if !tx.contains(Table::RepoManifests, &link)? {
        tx.insert(
            Table::RepoManifests,
            &link,
            crate::clock::unix_now().to_string().as_bytes(),
        )?;
    }
    if let Some(s) = &summary.subject {
        tx.insert(
            Table::Referrers,
            &kv::key(&[repo, &s.digest.to_string(), &d]),
            b"",
        )?;
    }
    Ok(())
}

/// A manifest's record and bytes.
pub(super) fn load_in(
    tx: &impl Reader,
    files: &dyn Bodies,
    digest: &Digest,
) -> Result<(ManifestRecord, Vec<u8>), StoreError> {
    let d = digest.to_string();
    let Some(value) = tx.get(Table::Manifests, d.as_bytes())? else {
        return Err(StoreError::Corrupt(format!(
            "manifest {d} is linked but has no record"
        )));
    };
    let (rec, inline) = records::decode_manifest(&d, &value)?;
    if !rec.in_file {
        // redb checksums its pages: inline bytes are as they were written
        if inline.len() as u64 != rec.size {
            return Err(StoreError::Corrupt(format!(
                "manifest {d}: {} bytes stored, record says {}",
                inline.len(),
                rec.size
            )));
        }
        return Ok((rec, inline.to_vec()));
    }
    let bytes = read_manifest_file(files, digest, rec.size)
        .map_err(|why| StoreError::ManifestDamaged(digest.clone(), why))?;
    Ok((rec, bytes))
}

/// The bytes of a manifest kept in a file, checked against its digest
/// (a file on disk can rot; what a client gets must hash to the digest).
/// Err says what is wrong.
fn read_manifest_file(files: &dyn Bodies, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(size as usize);
    files
        .open(Kind::Manifest, digest)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("file unreadable: {e}"))?;
    if bytes.len() as u64 != size {
        return Err(format!(
            "file has {} bytes, record says {size}",
            bytes.len()
        ));
    }
    let got = crate::verify::digest_bytes(digest.algorithm(), &bytes);
    if &got != digest {
        return Err(format!("content hashes to {got}"));
    }
    Ok(bytes)
}

pub(super) fn resolve_in(
    tx: &impl Reader,
    repo: &str,
    reference: &Reference,
) -> Result<Option<Digest>, StoreError> {
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match tx.get(Table::Tags, &kv::key(&[repo, t]))? {
            None => return Ok(None),
            Some(v) => String::from_utf8_lossy(records::tag_digest(&v))
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
        .map(|v| records::decode_manifest(digest, &v).map(|(rec, _)| rec))
        .transpose()
}

/// Is this summary an index (for GC's walk over children)?
pub(crate) fn is_index(s: &Summary) -> bool {
    s.kind == crate::oci::Kind::Index
}
