//! Berth as a mirror: `<name>/<repo>` is `<url>/<repo>` of an upstream
//! (`[[upstreams]]`). A pull that misses is fetched from the upstream,
//! verified, kept and served; a cached tag is checked upstream again after
//! `ttl_secs` (a HEAD: no body unless the digest moved); when the upstream
//! is down, what is cached is served as it is.
//!
//! Manifests are fetched on the caller's (blocking) thread; blobs by
//! `fetch`, which streams them to every client asking while they are
//! written and hashed. Both are stored `cached`: their blobs and children
//! arrive when pulled. The namespace is read-only to pushes unless
//! `allow_push`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::fetch::{Arriving, Fetches};
use super::{Error, Registry, Result};
use crate::config::UpstreamConfig;
use crate::metrics::Mirror;
use crate::oci::{manifest, Digest, Reference};
use crate::store::{ManifestPush, PutError, TagTarget};
use crate::upstream::{Client, UpstreamError};
use crate::verify;

/// An upstream as the registry keeps it.
pub struct Upstream {
    pub config: UpstreamConfig,
    /// None when it could not be set up (the reason is in `broken`).
    client: Option<Client>,
    broken: Option<String>,
    /// Tags the upstream confirmed, and when.
    checked: Mutex<HashMap<(String, String), Instant>>,
    /// When each blob was last pulled through this upstream (eviction).
    pub(super) pulled: Mutex<HashMap<Digest, Instant>>,
    /// Held while evicting (one eviction at a time).
    pub(super) evicting: Mutex<()>,
    /// Blobs the running sync job brought in whose manifests it has not
    /// stored yet: not evictable meanwhile.
    pub(super) syncing: Mutex<HashSet<Digest>>,
}

/// Tags remembered as checked at most (a bound; a miss costs one HEAD).
const MAX_CHECKED: usize = 65536;

impl Upstream {
    fn new(config: &UpstreamConfig) -> Upstream {
        let (client, broken) = match Client::new(config) {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(e)),
        };
        Upstream {
            config: config.clone(),
            client,
            broken,
            checked: Mutex::default(),
            pulled: Mutex::default(),
            evicting: Mutex::default(),
            syncing: Mutex::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub(super) fn client(&self) -> std::result::Result<&Client, UpstreamError> {
        self.client
            .as_ref()
            .ok_or_else(|| UpstreamError::Unreachable(self.broken.clone().unwrap_or_default()))
    }

    fn fresh(&self, repo: &str, tag: &str) -> bool {
        let ttl = Duration::from_secs(self.config.ttl_secs);
        let m = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(repo.to_string(), tag.to_string()))
            .is_some_and(|at| at.elapsed() < ttl)
    }

    fn confirm(&self, repo: &str, tag: &str) {
        let mut m = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_CHECKED {
            m.clear();
        }
        m.insert((repo.to_string(), tag.to_string()), Instant::now());
    }

    /// An error naming this upstream and what went wrong with it.
    pub(super) fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Upstream {
            upstream: self.name().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Keep blob `d` from eviction until the running sync job ends.
    pub(super) fn hold_for_sync(&self, d: &Digest) {
        let mut held = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(d.clone());
    }

    /// Note a pull of blob `d` (for least-recently-pulled eviction).
    pub(super) fn touch(&self, d: &Digest) {
        // kept only where it is used: an unbounded cache keeps no recency
        if self.config.max_bytes == 0 {
            return;
        }
        let mut m = self.pulled.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(d.clone(), Instant::now());
    }
}

/// The upstreams, and the blob fetches under way.
#[derive(Default)]
pub struct Mirrors {
    upstreams: Vec<Arc<Upstream>>,
    pub(super) fetches: Arc<Fetches>,
}

impl Mirrors {
    pub fn new(configs: &[UpstreamConfig]) -> Mirrors {
        Mirrors {
            upstreams: configs.iter().map(|c| Arc::new(Upstream::new(c))).collect(),
            fetches: Arc::default(),
        }
    }

    /// The upstream whose namespace `repo` is in, and the repository's
    /// name there.
    pub fn route<'r>(&self, repo: &'r str) -> Option<(&Arc<Upstream>, &'r str)> {
        let (ns, rest) = repo.split_once('/')?;
        let up = self.upstreams.iter().find(|u| u.config.name == ns)?;
        Some((up, rest))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.config.name == name)
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }
}

impl Registry {
    /// Is `repo` in an upstream's namespace (pulls may reach the network)?
    pub fn is_mirrored(&self, repo: &str) -> bool {
        self.mirrors.route(repo).is_some()
    }

    /// Upstreams that could not be set up, with why (a CA or password file
    /// unreadable): `berth serve` refuses to start with any.
    pub fn mirror_problems(&self) -> Vec<String> {
        self.mirrors
            .all()
            .iter()
            .filter_map(|u| {
                u.broken
                    .as_ref()
                    .map(|b| format!("upstream {}: {b}", u.name()))
            })
            .collect()
    }

    /// Count a pull of mirrored `repo` served from the cache.
    pub(super) fn count_hit(&self, repo: &str, kind: &str) {
        if let Some((up, _)) = self.mirrors.route(repo) {
            self.metrics.mirror.count(Mirror::Hit, up.name(), kind, 1);
        }
    }

    /// Refuse a write into a mirrored namespace (unless `allow_push`).
    pub fn check_push(&self, repo: &str) -> Result<()> {
        match self.mirrors.route(repo) {
            Some((up, _)) if !up.config.allow_push => Err(Error::ReadOnly {
                repo: repo.to_string(),
                upstream: up.config.url.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Bring the local copy of `repo:reference` up to date with the
    /// upstream, if `repo` is mirrored: fetch what is missing, re-check a
    /// tag past its ttl, and when the upstream fails keep what is cached.
    /// Blocking (network).
    pub(super) fn refresh_manifest(&self, repo: &str, reference: &Reference) -> Result<()> {
        let Some((up, remote)) = self.mirrors.route(repo) else {
            return Ok(());
        };
        let name = up.name();
        let local = self.store.resolve(repo, reference)?;
        let count = |e: Mirror| self.metrics.mirror.count(e, name, "manifest", 1);
        let tag = match reference {
            Reference::Digest(_) if local.is_some() => {
                count(Mirror::Hit);
                return Ok(());
            }
            Reference::Digest(_) => None,
            Reference::Tag(t) if local.is_some() && up.fresh(repo, t) => {
                count(Mirror::Hit);
                return Ok(());
            }
            // a synced tag is the sync job's to move: pulls
            // serve it as synced, platform filter and all
            Reference::Tag(t) if local.is_some() && self.is_synced(up.name(), remote, t) => {
                count(Mirror::Hit);
                return Ok(());
            }
            Reference::Tag(t) => Some(t.as_str()),
        };
        let outcome = (|| {
            let client = up.client()?;
            if let (Some(t), Some(have)) = (tag, &local) {
                // unchanged upstream: no body crosses the wire
                if let Some(h) = client.head_manifest(remote, t)? {
                    if h.digest.as_ref() == Some(have) {
                        return Ok(false);
                    }
                } else {
                    return Ok(true); // gone upstream: the fetch below says so
                }
            }
            Ok(true)
        })();
        let fetch = match outcome {
            Ok(f) => f,
            Err(e) => return self.upstream_failed(up, repo, reference, local.is_some(), e),
        };
        if !fetch {
            up.confirm(repo, tag.unwrap_or_default());
            count(Mirror::Hit);
            return Ok(());
        }
        match self.fetch_manifest(up, remote, repo, reference) {
            Ok(()) => {
                count(Mirror::Miss);
                if let Some(t) = tag {
                    up.confirm(repo, t);
                }
                Ok(())
            }
            Err(Fetched::Upstream(e)) => {
                self.upstream_failed(up, repo, reference, local.is_some(), e)
            }
            Err(Fetched::Refused(e)) => Err(e),
        }
    }

    /// The upstream failed: serve what is cached, or say why nothing is.
    fn upstream_failed(
        &self,
        up: &Upstream,
        repo: &str,
        reference: &Reference,
        cached: bool,
        e: UpstreamError,
    ) -> Result<()> {
        self.metrics.mirror.count(Mirror::Error, up.name(), "", 1);
        if cached {
            self.metrics
                .mirror
                .count(Mirror::Stale, up.name(), "manifest", 1);
            tracing::warn!(upstream = up.name(), %repo, %reference, error = %e, "upstream failing: serving the cached copy");
            return Ok(());
        }
        Err(up.error(e))
    }

    /// Fetch `remote:reference` and store it as `repo:reference`, checked
    /// against its digest.
    fn fetch_manifest(
        &self,
        up: &Upstream,
        remote: &str,
        repo: &str,
        reference: &Reference,
    ) -> std::result::Result<(), Fetched> {
        let m = self
            .fetch_verified(up, remote, reference)
            .map_err(|e| match e {
                Fetched::Refused(Error::ManifestUnknown { .. }) => {
                    Fetched::Refused(Error::ManifestUnknown {
                        repo: repo.to_string(),
                        reference: reference.clone(),
                    })
                }
                e => e,
            })?;
        let tags = match reference {
            Reference::Tag(t) => vec![t.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        let push = ManifestPush {
            repo: repo.to_string(),
            digest: m.digest,
            bytes: m.bytes,
            summary: m.summary,
            tags,
            // the upstream's content exactly: no merge
            policy: Box::new(|pushed, _, _| TagTarget::Point(pushed.digest.clone())),
            cached: true,
        };
        match self.store.put_manifest(push) {
            Ok(_) => Ok(()),
            Err(PutError::Store(e)) => Err(Fetched::Refused(Error::Store(e))),
            // a cached push checks no content
            Err(e) => Err(Fetched::Refused(up.error(e))),
        }
    }

    /// Manifest `remote:reference` of the upstream, refused unless its
    /// bytes hash to the digest it was asked by and the one the upstream
    /// says it has, and parse. Blocking (network).
    pub(super) fn fetch_verified(
        &self,
        up: &Upstream,
        remote: &str,
        reference: &Reference,
    ) -> std::result::Result<Verified, Fetched> {
        let max = self.config.limits.max_manifest_bytes as u64;
        let got = up
            .client()
            .and_then(|c| c.get_manifest(remote, &reference.to_string(), max))
            .map_err(Fetched::Upstream)?;
        let Some(m) = got else {
            return Err(Fetched::Refused(Error::ManifestUnknown {
                repo: remote.to_string(),
                reference: reference.clone(),
            }));
        };
        let alg = match (reference, &m.digest) {
            (Reference::Digest(d), _) | (_, Some(d)) => d.algorithm(),
            _ => crate::oci::Algorithm::Sha256,
        };
        let digest = verify::digest_bytes(alg, &m.bytes);
        for claimed in [reference_digest(reference), m.digest.clone()]
            .into_iter()
            .flatten()
        {
            if claimed != digest {
                return Err(Fetched::Refused(up.error(format!(
                    "sent a manifest that hashes to {digest} for {claimed}; not kept"
                ))));
            }
        }
        let summary = manifest::parse(&m.media_type, &m.bytes).map_err(|e| {
            Fetched::Refused(up.error(format!("sent a manifest Berth cannot store: {e}")))
        })?;
        Ok(Verified {
            digest,
            media_type: m.media_type,
            bytes: m.bytes,
            summary,
        })
    }

    /// Blob `digest` of mirrored `repo` when the store lacks it (or holds
    /// it damaged): linked if the store holds it elsewhere, else fetched
    /// (or joined, if a fetch is under way). None when `repo` is not
    /// mirrored or holds the blob.
    pub(super) fn mirror_blob(&self, repo: &str, digest: &Digest) -> Result<Option<Arriving>> {
        let Some((up, remote)) = self.mirrors.route(repo) else {
            return Ok(None);
        };
        up.touch(digest);
        if self.link_if_held(repo, digest)? {
            self.metrics.mirror.count(Mirror::Hit, up.name(), "blob", 1);
            return Ok(None);
        }
        self.metrics
            .mirror
            .count(Mirror::Miss, up.name(), "blob", 1);
        Ok(Some(self.mirrors.fetches.join_or_start(
            self.store.clone(),
            up.clone(),
            remote.to_string(),
            repo.to_string(),
            digest.clone(),
            self.metrics.clone(),
        )))
    }

    /// Does `repo` hold blob `digest` intact, linked now from another
    /// repository if need be (no download)? False when the store lacks it
    /// or holds it damaged (a fetch repairs it).
    pub(super) fn link_if_held(&self, repo: &str, digest: &Digest) -> Result<bool> {
        if self.store.is_damaged(digest)? {
            return Ok(false);
        }
        if self.store.blob(repo, digest)?.is_some() {
            return Ok(true);
        }
        // a read first: a miss takes no write transaction
        if !self.store.has_blob(digest)? {
            return Ok(false);
        }
        Ok(self.store.mount_blob(repo, digest, None)?)
    }

    /// The size of blob `digest` of mirrored `repo` from the upstream, for
    /// a HEAD of a blob not cached yet. Blocking (network).
    pub(super) fn mirror_blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        let Some((up, remote)) = self.mirrors.route(repo) else {
            return Err(Error::BlobUnknown(digest.clone()));
        };
        match up.client().and_then(|c| c.head_blob(remote, digest)) {
            Ok(Some(size)) => Ok(size),
            Ok(None) => Err(Error::BlobUnknown(digest.clone())),
            Err(e) => {
                self.metrics.mirror.count(Mirror::Error, up.name(), "", 1);
                Err(up.error(e))
            }
        }
    }

    /// The tags of mirrored `repo` as the upstream lists them, or None when
    /// it cannot (the local list is then the answer). Blocking (network).
    pub(super) fn mirror_tags(&self, repo: &str) -> Option<Vec<String>> {
        let (up, remote) = self.mirrors.route(repo)?;
        match up.client().and_then(|c| c.tags(remote)) {
            Ok(mut tags) => {
                tags.sort();
                tags.dedup();
                Some(tags)
            }
            Err(e) => {
                self.metrics.mirror.count(Mirror::Error, up.name(), "", 1);
                tracing::warn!(upstream = up.name(), %repo, error = %e, "upstream tags unavailable: listing the cached ones");
                None
            }
        }
    }
}

/// A manifest from an upstream that hashes to its digest.
pub(super) struct Verified {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub summary: manifest::Summary,
}

/// Why a manifest fetch did not store anything.
pub(super) enum Fetched {
    /// The upstream did not answer usefully (an outage: cached copies serve).
    Upstream(UpstreamError),
    /// An answer, but one to refuse (missing, or not matching its digest).
    Refused(Error),
}

fn reference_digest(r: &Reference) -> Option<Digest> {
    match r {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(_) => None,
    }
}
