//! Manifests: push (parse, check the digest, read the image's platform,
//! store, move tags by the repository's merge policy), pull (verified,
//! with the platform choice for clients that cannot read an index), and
//! delete.

use super::merge::{self, MergeMode};
use super::{Error, Registry, Result};
use crate::oci::manifest::{self, ManifestError};
use crate::oci::Kind;
use crate::oci::{Algorithm, Digest, Platform, Reference, Summary};
use crate::store::{
    ManifestData, ManifestPush, Pending, PushedManifest, PutError, StoreError, TagCurrent,
    TagDigests, TagTarget,
};
use crate::verify;

use super::blobs::MAX_CONFIG_BYTES;

/// What a manifest push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    pub subject: Option<Digest>,
    pub tags: Vec<String>,
    /// Each tag's digest after the push (an index when platforms merged).
    pub tag_digests: Vec<(String, Digest)>,
}

/// A checked manifest push, waiting for the store's answer.
#[derive(Clone, Debug)]
pub struct Prepared {
    digest: Digest,
    subject: Option<Digest>,
    tags: Vec<String>,
}

impl Prepared {
    /// The outcome to report for `push`, made elsewhere than by
    /// [`Registry::prepare_manifest`] (sync).
    pub(super) fn for_push(push: &ManifestPush) -> Prepared {
        Prepared {
            digest: push.digest.clone(),
            subject: push.summary.subject.as_ref().map(|s| s.digest.clone()),
            tags: push.tags.clone(),
        }
    }

    /// The push's outcome from the store's answer.
    pub fn stored(self, r: std::result::Result<TagDigests, PutError>) -> Result<Pushed> {
        let tag_digests = r.map_err(|e| match e {
            PutError::BlobUnknown(d) => Error::ManifestBlobUnknown(d),
            // Distribution's answer too: a missing child is an unknown
            // reference of the pushed manifest, a 400
            PutError::ManifestUnknown(d) => Error::ManifestChildUnknown(d),
            PutError::SizeMismatch {
                digest,
                declared,
                stored,
            } => Error::DescriptorSize {
                digest,
                declared,
                stored,
            },
            PutError::Store(s) => Error::Store(s),
        })?;
        Ok(Pushed {
            digest: self.digest,
            subject: self.subject,
            tags: self.tags,
            tag_digests,
        })
    }
}

/// The policy that applies to a repository.
#[derive(Clone, Debug)]
pub struct Policy {
    pub merge: MergeMode,
    pub prefer: Vec<Platform>,
    pub default_platform: Platform,
}

impl Registry {
    pub fn policy(&self, repo: &str) -> Policy {
        let cfg = &self.config;
        let global = cfg.default_platform.clone();
        match cfg
            .repositories
            .iter()
            .find(|r| crate::oci::glob::glob_match(&r.pattern, repo))
        {
            None => Policy {
                merge: MergeMode::Platform,
                prefer: Vec::new(),
                default_platform: global,
            },
            Some(r) => Policy {
                merge: r.merge,
                prefer: r.prefer.clone(),
                default_platform: r.default_platform.clone().unwrap_or(global),
            },
        }
    }

    /// Store `bytes` as a manifest of `repo` under `reference`, also tagging
    /// it with `extra_tags` (`?tag=` on a push by digest).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: &str,
        bytes: Vec<u8>,
        extra_tags: Vec<String>,
    ) -> Result<Pushed> {
        let (push, prepared) =
            self.prepare_manifest(repo, reference, content_type, bytes, extra_tags)?;
        prepared.stored(self.store.put_manifest(push))
    }

    /// Hand a prepared push to the store's committer; the future resolves
    /// once it is durable (or refused). Shares a transaction with the
    /// pushes arriving at the same time.
    pub fn commit_manifest(
        &self,
        push: ManifestPush,
        prepared: Prepared,
    ) -> impl std::future::Future<Output = Result<Pushed>> + 'static {
        let pending: Pending<TagDigests, PutError> = self.store.submit_manifest(push);
        async move { prepared.stored(pending.outcome().await) }
    }

    /// Check a manifest push (parse, digest, platform) and make the change
    /// for the store; [`Prepared::stored`] turns the store's answer into
    /// the push's outcome.
    pub fn prepare_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: &str,
        bytes: Vec<u8>,
        extra_tags: Vec<String>,
    ) -> Result<(ManifestPush, Prepared)> {
        let mut summary = manifest::parse(content_type, &bytes).map_err(|e| match e {
            ManifestError::Schema1 | ManifestError::Json(_) | ManifestError::Invalid(_) => {
                Error::ManifestInvalid(e.to_string())
            }
        })?;
        let (digest, mut tags) = match reference {
            Reference::Digest(want) => {
                let got = verify::digest_bytes(want.algorithm(), &bytes);
                if &got != want {
                    return Err(Error::DigestMismatch {
                        expected: want.clone(),
                        got,
                    });
                }
                (got, Vec::new())
            }
            Reference::Tag(t) => (
                verify::digest_bytes(Algorithm::Sha256, &bytes),
                vec![t.clone()],
            ),
        };
        for t in extra_tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        summary.platform = self.config_platform(repo, &summary);
        let mode = self.policy(repo).merge;
        let merges = self.metrics.merges.clone();
        let policy = move |pushed: &PushedManifest<'_>, _: &str, current: Option<&TagCurrent>| {
            let target = merge::on_push(mode, pushed, current);
            if matches!(target, TagTarget::Index(_)) {
                merges.inc();
            }
            target
        };
        let prepared = Prepared {
            digest: digest.clone(),
            subject: summary.subject.as_ref().map(|s| s.digest.clone()),
            tags: tags.clone(),
        };
        let push = ManifestPush {
            repo: repo.to_string(),
            digest,
            bytes,
            summary,
            tags,
            policy: Box::new(policy),
            cached: false,
        };
        Ok((push, prepared))
    }

    /// The platform an image states in its config blob (read once, at push).
    pub(super) fn config_platform(&self, repo: &str, s: &Summary) -> Option<Platform> {
        if !s.is_image() {
            return None;
        }
        let c = s.config.as_ref()?;
        self.config_platforms.get(&c.digest, || {
            if c.size > MAX_CONFIG_BYTES {
                return Some(None);
            }
            // not there (yet) or unreadable: asked again next time
            let bytes = self.small_blob(repo, &c.digest)?;
            Some(Platform::from_config(&bytes))
        })
    }

    /// A manifest of `repo` with its bytes. One kept in a file whose bytes
    /// no longer hash to its digest is never served: it is marked damaged
    /// and reported unknown, so that a client pushes it again (which
    /// repairs it).
    pub fn manifest(&self, repo: &str, reference: &Reference) -> Result<ManifestData> {
        // in an upstream's namespace: up to date first (blocking, network)
        self.refresh_manifest(repo, reference)?;
        match self.store.manifest(repo, reference) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(Error::ManifestUnknown {
                repo: repo.to_string(),
                reference: reference.clone(),
            }),
            Err(StoreError::ManifestDamaged(digest, why)) => {
                self.metrics.manifest_corrupt_reads.inc();
                tracing::error!(%digest, reason = %why, "corrupt manifest caught on read; not served, marked damaged");
                let store = self.store.clone();
                let d = digest.clone();
                // a write transaction: off the caller's (async) thread
                std::thread::spawn(move || {
                    if let Err(e) = store.mark_manifest_damaged(&d, &format!("on read: {why}")) {
                        tracing::error!(error = %e, "could not mark manifest damaged");
                    }
                });
                Err(Error::ManifestDamaged(digest))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest to answer a pull of `repo:reference` with. A client
    /// that cannot read an index it asks for by tag (`accepts` says no to
    /// its media type), or that names a platform, gets the index's child
    /// for its platform (see [`Registry::choose_child`]).
    pub fn pull_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        want: &Want,
    ) -> Result<ManifestData> {
        let m = self.manifest(repo, reference)?;
        let by_tag = matches!(reference, Reference::Tag(_));
        // by digest, a client gets what it named, unless it names a platform
        let cannot_read = by_tag && !want.accepts(&m.summary.media_type);
        if m.summary.kind != Kind::Index || (want.platform.is_none() && !cannot_read) {
            return Ok(m);
        }
        let child = self
            .choose_child(
                repo,
                &m.summary,
                want.platform.clone(),
                want.user_agent.as_deref(),
            )
            .map_err(|offered| Error::NoPlatform {
                repo: repo.to_string(),
                reference: reference.clone(),
                offered,
            })?
            .digest
            .clone();
        self.manifest(repo, &Reference::Digest(child))
    }

    /// Delete a manifest from `repo` by digest (indexes that tags point to
    /// lose its entry, in merge mode `platform`), or a tag alone.
    pub fn delete_manifest(&self, repo: &str, reference: &Reference) -> Result<()> {
        let found = match reference {
            Reference::Digest(d) => {
                let mode = self.policy(repo).merge;
                let prune = |current: &TagCurrent, removed: &Digest| match mode {
                    MergeMode::Platform => merge::on_delete(current, removed),
                    MergeMode::Overwrite => TagTarget::Keep,
                };
                self.store.delete_manifest(repo, d, &prune)?
            }
            Reference::Tag(t) => self.store.delete_tag(repo, t)?,
        };
        match found {
            true => Ok(()),
            false => Err(Error::ManifestUnknown {
                repo: repo.to_string(),
                reference: reference.clone(),
            }),
        }
    }
}

/// What a client pulling a manifest can take.
#[derive(Clone, Debug, Default)]
pub struct Want {
    /// `?platform=`: the child for this platform, whatever `Accept` says.
    pub platform: Option<Platform>,
    pub user_agent: Option<String>,
    /// The media types `Accept` names (without parameters); none admits
    /// anything.
    pub accept: Vec<String>,
}

impl Want {
    /// Does the client's `Accept` admit `media_type`?
    pub fn accepts(&self, media_type: &str) -> bool {
        self.accept.is_empty()
            || self
                .accept
                .iter()
                .any(|t| t == media_type || t == "*/*" || t == "application/*")
    }
}
