//! Scheduled copies from an upstream (`[[sync]]`): the matching tags of the
//! matching repositories, with only the chosen platforms of multi-arch
//! images (an index is rewritten to list only them, annotated as bundle
//! export does), every manifest checked against its digest and every blob
//! hashed as it arrives; blobs the store already holds, in any repository,
//! are linked instead of fetched. Synced content is complete (unlike what
//! a pull caches) and is never evicted.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::mirror::{Fetched, Upstream, Verified};
use super::{Error, Registry, Result};
use crate::config::SyncConfig;
use crate::metrics::Mirror;
use crate::oci::filter::{filter_index, wanted, Filtered};
use crate::oci::glob::glob_match;
use crate::oci::{manifest, Descriptor, Digest, Kind, Platform, Reference};
use crate::store::{ManifestPush, TagTarget};
use crate::verify;

/// What one job did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct JobReport {
    pub upstream: String,
    /// `repo:tag -> digest` (the index as rewritten, when filtered).
    pub tags: Vec<String>,
    /// Tags left out: none of their platforms was chosen.
    pub skipped: Vec<String>,
    pub manifests: u64,
    /// Index children held complete already (not fetched again).
    pub manifests_present: u64,
    pub blobs_fetched: u64,
    /// Blobs the store held already (linked, not fetched).
    pub blobs_present: u64,
    pub bytes_fetched: u64,
    pub errors: Vec<String>,
    pub seconds: f64,
}

/// What a sync run did, job by job.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncReport {
    pub jobs: Vec<JobReport>,
}

/// One run at a time, and the last report of each job.
#[derive(Default)]
pub struct Syncing {
    running: Mutex<()>,
    last: Mutex<Vec<Option<JobReport>>>,
}

/// The last run of every job (`GET /_berth/sync`), `null` for a job that
/// has not run since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LastSync {
    pub jobs: Vec<Option<JobReport>>,
}

impl Registry {
    /// Run every sync job now (`POST /_berth/sync`). Blocking (network).
    pub fn sync_all(&self) -> Result<SyncReport> {
        let Ok(_one) = self.syncing.running.try_lock() else {
            return Err(Error::TooManyRequests("a sync is already running".into()));
        };
        let jobs: Vec<JobReport> = (0..self.config.sync.len())
            .filter_map(|i| self.run_job(i))
            .collect();
        Ok(SyncReport { jobs })
    }

    /// Run job `i` of `[[sync]]` (the scheduler's). Blocking (network).
    pub fn sync_one(&self, i: usize) -> Option<JobReport> {
        let _one = self
            .syncing
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.run_job(i)
    }

    /// The last report of each job.
    pub fn last_sync(&self) -> LastSync {
        let mut jobs = self
            .syncing
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        jobs.resize(self.config.sync.len(), None);
        LastSync { jobs }
    }

    fn run_job(&self, i: usize) -> Option<JobReport> {
        let report = self.sync_job(self.config.sync.get(i)?);
        let mut last = self.syncing.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() <= i {
            last.resize(i + 1, None);
        }
        last[i] = Some(report.clone());
        Some(report)
    }

    /// Does a sync job copy `remote:tag` of upstream `name`?
    pub(super) fn is_synced(&self, name: &str, remote: &str, tag: &str) -> bool {
        self.config
            .sync
            .iter()
            .any(|j| j.upstream == name && takes(j, remote, tag))
    }

    fn sync_job(&self, job: &SyncConfig) -> JobReport {
        let start = Instant::now();
        let mut r = JobReport {
            upstream: job.upstream.clone(),
            ..JobReport::default()
        };
        let Some(up) = self.mirrors.by_name(&job.upstream) else {
            r.errors.push(format!("no upstream named {}", job.upstream));
            return r;
        };
        match self.sync_repos(up, job) {
            Ok(repos) => {
                for repo in repos {
                    if let Err(e) = self.sync_repo(up, job, &repo, &mut r) {
                        r.errors.push(format!("{repo}: {e}"));
                    }
                }
            }
            Err(e) => r.errors.push(e.to_string()),
        }
        // stored manifests pin what they need now; the rest may go
        up.syncing.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if !r.errors.is_empty() {
            self.metrics
                .mirror
                .count(Mirror::Error, up.name(), "", r.errors.len() as u64);
        }
        r.seconds = start.elapsed().as_secs_f64();
        tracing::info!(
            upstream = up.name(),
            tags = r.tags.len(),
            manifests = r.manifests,
            blobs = r.blobs_fetched,
            present = r.blobs_present,
            bytes = r.bytes_fetched,
            errors = r.errors.len(),
            "sync"
        );
        r
    }

    /// The upstream repositories `job` names (globs through the catalog).
    fn sync_repos(&self, up: &Upstream, job: &SyncConfig) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut catalog: Option<Vec<String>> = None;
        for pattern in &job.repos {
            if !pattern.contains(['*', '?']) {
                out.push(pattern.clone());
                continue;
            }
            if catalog.is_none() {
                let all = up
                    .client()
                    .and_then(|c| c.catalog())
                    .map_err(|e| up.error(e))?;
                catalog = Some(all);
            }
            let all = catalog.as_deref().unwrap_or_default();
            out.extend(all.iter().filter(|r| glob_match(pattern, r)).cloned());
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn sync_repo(
        &self,
        up: &Upstream,
        job: &SyncConfig,
        remote: &str,
        r: &mut JobReport,
    ) -> Result<()> {
        let local = format!("{}/{remote}", up.name());
        let tags = up
            .client()
            .and_then(|c| c.tags(remote))
            .map_err(|e| up.error(e))?;
        for tag in tags.iter().filter(|t| takes(job, remote, t)) {
            match self.sync_tag(up, &job.platforms, remote, &local, tag, r) {
                Ok(Some(d)) => r.tags.push(format!("{local}:{tag} -> {d}")),
                Ok(None) => r.skipped.push(format!("{local}:{tag}")),
                Err(e) => r.errors.push(format!("{local}:{tag}: {e}")),
            }
        }
        Ok(())
    }

    /// Copy one tag; the digest it points to here, or None when none of
    /// its platforms is wanted.
    fn sync_tag(
        &self,
        up: &Upstream,
        platforms: &[Platform],
        remote: &str,
        local: &str,
        tag: &str,
        r: &mut JobReport,
    ) -> Result<Option<Digest>> {
        let mut m = self.fetch_checked(up, remote, &Reference::Tag(tag.to_string()))?;
        match m.summary.kind {
            Kind::Index if !platforms.is_empty() => {
                match filter_index(&m.bytes, &m.summary.children, platforms) {
                    Filtered::Unchanged => {}
                    Filtered::Empty => return Ok(None),
                    // a rewritten index has a digest of its own
                    Filtered::Rewritten(bytes, _) => {
                        m.summary = manifest::parse(&m.media_type, &bytes)
                            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
                        m.digest = verify::digest_bytes(m.digest.algorithm(), &bytes);
                        m.bytes = bytes;
                    }
                }
            }
            Kind::Index => {}
            Kind::Image => {
                let mut done = None;
                if !platforms.is_empty() {
                    done = m.summary.config.as_ref();
                    self.copy_blob(up, remote, local, done, r)?;
                    match self.config_platform(local, &m.summary) {
                        Some(p) if wanted(platforms, &p) => {}
                        _ => return Ok(None),
                    }
                }
                self.copy_image(up, remote, local, &m.summary, done, r)?;
            }
        }
        for child in &m.summary.children {
            self.sync_child(up, remote, local, child, r)?;
        }
        let digest = m.digest.clone();
        self.store_synced(local, m, Some(tag))?;
        r.manifests += 1;
        Ok(Some(digest))
    }

    /// An index entry: its manifest and (for an image) its blobs.
    fn sync_child(
        &self,
        up: &Upstream,
        remote: &str,
        local: &str,
        child: &Descriptor,
        r: &mut JobReport,
    ) -> Result<()> {
        // synced before (or pushed): all its content is here
        if self.store.has_complete_manifest(local, &child.digest)? {
            r.manifests_present += 1;
            return Ok(());
        }
        let m = self.fetch_checked(up, remote, &Reference::Digest(child.digest.clone()))?;
        if m.summary.kind == Kind::Index {
            return Err(up.error(format!(
                "{}: an index inside an index is not synced",
                m.digest
            )));
        }
        self.copy_image(up, remote, local, &m.summary, None, r)?;
        self.store_synced(local, m, None)?;
        r.manifests += 1;
        Ok(())
    }

    /// An image's blobs, but `done` (copied already).
    fn copy_image(
        &self,
        up: &Upstream,
        remote: &str,
        local: &str,
        summary: &manifest::Summary,
        done: Option<&Descriptor>,
        r: &mut JobReport,
    ) -> Result<()> {
        summary
            .required_blobs()
            .filter(|b| Some(*b) != done)
            .try_for_each(|b| self.copy_blob(up, remote, local, Some(b), r))
    }

    /// One blob into `local`: linked when the store holds it, else
    /// fetched, verified.
    fn copy_blob(
        &self,
        up: &Upstream,
        remote: &str,
        local: &str,
        blob: Option<&Descriptor>,
        r: &mut JobReport,
    ) -> Result<()> {
        let Some(d) = blob.map(|b| &b.digest) else {
            return Ok(());
        };
        up.hold_for_sync(d);
        if self.link_if_held(local, d)? {
            r.blobs_present += 1;
            return Ok(());
        }
        let n = super::fetch::fetch_into(&self.store, up, remote, local, d, &self.metrics, &())
            .map_err(|f| f.into_error(up.name(), d))?;
        r.bytes_fetched += n;
        r.blobs_fetched += 1;
        self.metrics
            .mirror
            .count(Mirror::Synced, up.name(), "blob", 1);
        Ok(())
    }

    /// A manifest of the upstream, checked against its digest.
    fn fetch_checked(
        &self,
        up: &Upstream,
        remote: &str,
        reference: &Reference,
    ) -> Result<Verified> {
        self.fetch_verified(up, remote, reference)
            .map_err(|e| match e {
                Fetched::Upstream(e) => up.error(e),
                Fetched::Refused(e) => e,
            })
    }

    /// Store a complete manifest (its content is all here) under `tag`,
    /// with the platform its config states, as a push would.
    fn store_synced(&self, repo: &str, m: Verified, tag: Option<&str>) -> Result<()> {
        let mut summary = m.summary;
        if summary.platform.is_none() {
            summary.platform = self.config_platform(repo, &summary);
        }
        let push = ManifestPush {
            repo: repo.to_string(),
            digest: m.digest,
            bytes: m.bytes,
            summary,
            tags: tag.into_iter().map(str::to_string).collect(),
            policy: Box::new(|pushed, _, _| TagTarget::Point(pushed.digest.clone())),
            cached: false,
        };
        let prepared = super::manifests::Prepared::for_push(&push);
        prepared.stored(self.store.put_manifest(push))?;
        Ok(())
    }
}

/// Does `job` copy `remote:tag`?
fn takes(job: &SyncConfig, remote: &str, tag: &str) -> bool {
    job.repos.iter().any(|g| glob_match(g, remote))
        && (job.tags.is_empty() || job.tags.iter().any(|g| glob_match(g, tag)))
}
