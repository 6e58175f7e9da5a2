//! Listings: a repository's tags, the catalog, a subject's referrers. Pages
//! are `n` entries after `last`, and say whether more follow.

use super::{Error, Registry, Result};
use crate::oci::{Descriptor, Digest};

/// One page of a listing.
pub struct Page {
    pub entries: Vec<String>,
    /// More entries follow the last one.
    pub more: bool,
}

/// Repositories read from the store at a time while the catalog filters.
const CATALOG_BATCH: usize = 1000;

impl Registry {
    /// Tags of `repo` in lexical order after `last`, at most `n`.
    /// In a mirrored namespace the upstream's list is the answer while it
    /// answers (blocking, network), the cached tags otherwise.
    pub fn tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Page> {
        if let Some(mut all) = self.mirror_tags(repo) {
            if let Some(l) = last {
                all.retain(|t| t.as_str() > l);
            }
            all.truncate(n.saturating_add(1));
            return Ok(page(all, n));
        }
        if !self.store.repo_exists(repo)? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        // one more than asked tells whether a next page exists
        let entries = self.store.tags(repo, last, n.saturating_add(1))?;
        Ok(page(entries, n))
    }

    /// Repositories in lexical order after `last` that `visible` admits
    /// (what the caller may pull), at most `n`.
    pub fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<Page> {
        let mut repos = Vec::new();
        let mut last = last.map(str::to_string);
        while repos.len() <= n {
            let batch = self.store.repositories(last.as_deref(), CATALOG_BATCH)?;
            let Some(end) = batch.last().cloned() else {
                break;
            };
            repos.extend(batch.into_iter().filter(|r| visible(r)));
            last = Some(end);
        }
        Ok(page(repos, n))
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`,
    /// only those of `artifact_type` when given.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut list = self.store.referrers(repo, subject)?;
        if let Some(t) = artifact_type {
            list.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(list)
    }
}

fn page(mut entries: Vec<String>, n: usize) -> Page {
    let more = entries.len() > n;
    entries.truncate(n);
    Page { entries, more }
}
