//! Manifests, their repository links, tags and referrers.

use super::commit::Pending;
use super::files::Files;
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

/// A tag's current target, as a tag policy sees it.
#[derive(Clone, Debug)]
pub struct TagCurrent {
    pub digest: Digest,
    pub summary: Summary,
    pub bytes: Vec<u8>,
    pub made_by_berth: bool,
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

/// Where a tag points after a change.
#[derive(Clone, Debug)]
pub enum TagTarget {
    Point(Digest),
    Keep,
    Remove,
    Index(Box<NewManifest>),
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
        let files = self.files.clone();
        self.committer.submit(move |tx| put_in(tx, &files, push))
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
        load_in(tx, &self.files, digest)
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
            let Some(current) = tag_current_in(&tx, &self.files, repo, &tag)? else {
                continue;
            };
            if is_index(&current.summary)
                && current.summary.children.iter().any(|c| &c.digest == digest)
            {
                let target = prune(&current, digest);
                apply_in(&mut tx, &self.files, repo, &tag, target)?;
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
        if !remove_tag(&mut tx, &kv::key(&[repo, tag]))? {
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

/// Refuse, or store the manifest and move the tags (see [`ManifestPush`]).
fn put_in(
    tx: &mut WriteTx,
    files: &Files,
    push: ManifestPush,
) -> Result<Result<TagDigests, PutError>, StoreError> {
    let ManifestPush {
        repo,
        digest,
        bytes,
        summary,
        tags,
        policy,
    } = push;
    // Refuse before writing: the batch commits the others' changes.
    let mismatch = |d: &Descriptor, stored: u64| PutError::SizeMismatch {
        digest: d.digest.clone(),
        declared: d.size,
        stored,
    };
    for b in summary.required_blobs() {
        let d = b.digest.to_string();
        if !tx.contains(Table::RepoBlobs, &kv::key(&[&repo, &d]))? {
            return Ok(Err(PutError::BlobUnknown(b.digest.clone())));
        }
        match super::blobs::blob_record(tx, &d)? {
            Some(r) if r.size != b.size => return Ok(Err(mismatch(b, r.size))),
            _ => {}
        }
    }
    for c in &summary.children {
        let d = c.digest.to_string();
        if !tx.contains(Table::RepoManifests, &kv::key(&[&repo, &d]))? {
            return Ok(Err(PutError::ManifestUnknown(c.digest.clone())));
        }
        if let Some(v) = tx.get(Table::Manifests, d.as_bytes())? {
            match records::manifest_size_in_file(&d, &v)? {
                (size, _) if size != c.size => return Ok(Err(mismatch(c, size))),
                _ => {}
            }
        }
    }
    store_in(tx, files, &repo, &digest, &bytes, &summary, false)?;
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

/// Record a manifest (if new) and link it into `repo`.
fn store_in(
    tx: &mut WriteTx,
    files: &Files,
    repo: &str,
    digest: &Digest,
    bytes: &[u8],
    summary: &Summary,
    made_by_berth: bool,
) -> Result<(), StoreError> {
    let d = digest.to_string();
    let in_file = bytes.len() > INLINE_MAX;
    if !tx.contains(Table::Manifests, d.as_bytes())? {
        if in_file && read_manifest_file(files, digest, bytes.len() as u64).is_err() {
            files.write_durable(&files.manifest_path(digest), bytes)?;
        }
        let inline = (!in_file).then_some(bytes);
        let value = records::encode_manifest(summary, bytes.len() as u64, made_by_berth, inline);
        tx.insert(Table::Manifests, d.as_bytes(), &value)?;
    } else if in_file {
        // The same bytes again repair a file that rotted (verify on read
        // refuses to serve it meanwhile).
        if let Err(why) = read_manifest_file(files, digest, bytes.len() as u64) {
            files.write_durable(&files.manifest_path(digest), bytes)?;
            tracing::info!(digest = %d, was = %why, "damaged manifest repaired by a push");
        }
        tx.remove(Table::DamagedManifests, d.as_bytes())?;
    }
    let link = kv::key(&[repo, &d]);
    if !tx.contains(Table::RepoManifests, &link)? {
        tx.insert(
            Table::RepoManifests,
            &link,
            records::now().to_string().as_bytes(),
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

fn tag_current_in(
    tx: &WriteTx,
    files: &Files,
    repo: &str,
    tag: &str,
) -> Result<Option<TagCurrent>, StoreError> {
    let Some(digest) = resolve_in(tx, repo, &Reference::Tag(tag.to_string()))? else {
        return Ok(None);
    };
    let (rec, bytes) = load_in(tx, files, &digest)?;
    Ok(Some(TagCurrent {
        digest,
        summary: rec.summary,
        bytes,
        made_by_berth: rec.made_by_berth,
    }))
}

/// Move a tag; returns its new digest (None when removed or kept).
fn apply_in(
    tx: &mut WriteTx,
    files: &Files,
    repo: &str,
    tag: &str,
    target: TagTarget,
) -> Result<Option<Digest>, StoreError> {
    let k = kv::key(&[repo, tag]);
    match target {
        TagTarget::Keep => Ok(None),
        TagTarget::Remove => {
            remove_tag(tx, &k)?;
            Ok(None)
        }
        TagTarget::Point(d) => {
            set_tag(tx, &k, &d.to_string())?;
            Ok(Some(d))
        }
        TagTarget::Index(m) => {
            store_in(
                tx,
                files,
                repo,
                &m.digest,
                &m.bytes,
                &m.summary,
                m.made_by_berth,
            )?;
            set_tag(tx, &k, &m.digest.to_string())?;
            Ok(Some(m.digest))
        }
    }
}

/// A manifest's record and bytes.
fn load_in(
    tx: &impl Reader,
    files: &Files,
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
fn read_manifest_file(files: &Files, digest: &Digest, size: u64) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(files.manifest_path(digest)).map_err(|e| format!("file unreadable: {e}"))?;
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

/// Point a tag (its full key) at a digest, recording when it moved.
fn set_tag(tx: &mut WriteTx, key: &[u8], digest: &str) -> Result<(), StoreError> {
    let value = records::tag_value(digest, records::now_millis());
    tx.insert(Table::Tags, key, &value)
}

/// Remove a tag (its full key); true if it existed.
fn remove_tag(tx: &mut WriteTx, key: &[u8]) -> Result<bool, StoreError> {
    tx.remove(Table::Tags, key)
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
    if current.as_deref().map(records::tag_digest)
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
            set_tag(tx, &k, &d)?;
        }
        None => {
            remove_tag(tx, &k)?;
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
    s.kind == Kind::Index
}
