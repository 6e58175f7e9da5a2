//! Tags: what a tag points to and when it moved (`records::tag_value`),
//! listing, deletion, compare-and-swap, and the moves a push makes as its
//! tag policy decides (inside the push's transaction).

use super::bodies::Bodies;
use super::kv::{self, Reader, Table, WriteTx};
use super::manifests::{load_in, resolve_in, store_in, NewManifest, PutError};
use super::records;
use super::{prune_repo, Store, StoreError};
use crate::oci::{Digest, Reference, Summary};

/// A tag's current target, as a tag policy sees it.
#[derive(Clone, Debug)]
pub struct TagCurrent {
    pub digest: Digest,
    pub summary: Summary,
    pub bytes: Vec<u8>,
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

impl Store {
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
}

pub(super) fn tag_current_in(
    tx: &WriteTx,
    files: &dyn Bodies,
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
pub(super) fn apply_in(
    tx: &mut WriteTx,
    files: &dyn Bodies,
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
                records::Origin {
                    made_by_berth: m.made_by_berth,
                    cached: false,
                },
            )?;
            set_tag(tx, &k, &m.digest.to_string())?;
            Ok(Some(m.digest))
        }
    }
}

/// Point a tag (its full key) at a digest, recording when it moved.
fn set_tag(tx: &mut WriteTx, key: &[u8], digest: &str) -> Result<(), StoreError> {
    let value = records::tag_value(digest, crate::clock::unix_millis());
    tx.insert(Table::Tags, key, &value)
}

/// Remove a tag (its full key); true if it existed.
pub(super) fn remove_tag(tx: &mut WriteTx, key: &[u8]) -> Result<bool, StoreError> {
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
