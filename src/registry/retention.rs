//! Retention policies: keep the last N tags by push time, keep tags matching
//! a pattern, delete untagged manifests after a while. Run before garbage
//! collection, which then frees the space.

use std::collections::HashSet;

use serde::Serialize;

use super::{Error, Registry, Result};
use crate::clock::unix_now as now;
use crate::oci::glob::glob_match;
use crate::oci::{Digest, Reference};

#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    /// `repo:tag`
    pub tags_deleted: Vec<String>,
    /// `repo@digest`
    pub manifests_deleted: Vec<String>,
}

impl Registry {
    pub fn apply_retention(&self, dry_run: bool) -> Result<RetentionReport> {
        let mut report = RetentionReport {
            dry_run,
            ..RetentionReport::default()
        };
        if self.config.retention.is_empty() {
            return Ok(report);
        }
        for repo in self.store.repositories(None, usize::MAX)? {
            let Some(policy) = self
                .config
                .retention
                .iter()
                .find(|p| glob_match(&p.pattern, &repo))
            else {
                continue;
            };
            let mut tags = self.store.tag_times(&repo)?;
            // newest first; ties by name for a stable choice
            tags.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            let mut doomed = HashSet::new();
            if policy.keep_last > 0 {
                for (i, (tag, _, _)) in tags.iter().enumerate() {
                    let pinned = policy.keep_tags.iter().any(|g| glob_match(g, tag));
                    if i >= policy.keep_last && !pinned {
                        doomed.insert(tag.clone());
                    }
                }
            }
            let mut sorted: Vec<_> = doomed.iter().cloned().collect();
            sorted.sort();
            for tag in sorted {
                if !dry_run {
                    self.store.delete_tag(&repo, &tag)?;
                }
                report.tags_deleted.push(format!("{repo}:{tag}"));
            }
            if policy.untagged_after_secs > 0 {
                let cutoff = now().saturating_sub(policy.untagged_after_secs);
                for (d, at) in self.store.untagged(&repo, &doomed)? {
                    if at > cutoff {
                        continue;
                    }
                    if !dry_run {
                        if let Ok(digest) = d.parse::<Digest>() {
                            match self.delete_manifest(&repo, &Reference::Digest(digest)) {
                                Ok(()) | Err(Error::ManifestUnknown { .. }) => {}
                                Err(e) => return Err(e),
                            }
                        }
                    }
                    report.manifests_deleted.push(format!("{repo}@{d}"));
                }
            }
        }
        Ok(report)
    }
}
