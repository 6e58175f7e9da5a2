//! `berth import`, second half: once every blob is staged and verified,
//! check each tag's graph is complete, then push manifests (children
//! first) and move tags through a destination's normal push path, so the
//! multi-arch merge applies exactly as for a client push.

use std::collections::HashSet;
use std::io::Read;

use serde::Serialize;

use super::docker;
use super::import::Contents;
use super::layout;
use super::{BundleError, Result};
use crate::oci::{manifest, Digest, Kind, Reference};
use crate::registry::Registry;
use crate::store::Store;

/// Where imported manifests and tags go.
pub trait Destination {
    /// Whether `repo` can have blob `d` without it being in the bundle.
    fn has_blob(&self, repo: &str, d: &Digest) -> Result<bool>;
    /// Give `repo` the blob `d`, staged (verified) in `staging`.
    fn put_blob(&self, repo: &str, d: &Digest, staging: &Store) -> Result<()>;
    /// Push a manifest by digest, tagged `tags`; returns the digest the
    /// first tag points to afterwards (an index when platforms merged).
    fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
        tags: Vec<String>,
    ) -> Result<Option<Digest>>;
}

/// The data directory the bundle was staged into.
pub struct Local<'a>(pub &'a Registry);

impl Destination for Local<'_> {
    fn has_blob(&self, _repo: &str, d: &Digest) -> Result<bool> {
        self.0
            .has_blob(d)
            .map_err(|e| BundleError::Registry(e.to_string()))
    }

    fn put_blob(&self, repo: &str, d: &Digest, _staging: &Store) -> Result<()> {
        self.0
            .link_blob(repo, d)
            .map_err(|e| BundleError::Registry(e.to_string()))?;
        Ok(())
    }

    fn put_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
        tags: Vec<String>,
    ) -> Result<Option<Digest>> {
        let done = self
            .0
            .put_manifest(
                repo,
                &Reference::Digest(digest.clone()),
                media_type,
                bytes.to_vec(),
                tags,
            )
            .map_err(|e| BundleError::Registry(format!("{repo}@{digest}: {e}")))?;
        Ok(done.tag_digests.into_iter().next().map(|(_, d)| d))
    }
}

/// A tag (or untagged manifest) to apply.
struct Target {
    repo: String,
    tag: Option<String>,
    media_type: String,
    digest: Digest,
    /// Made here (docker archives) rather than read from a staged blob.
    bytes: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Applied {
    /// `REPO:TAG` -> the digest the tag points to afterwards.
    pub tags: Vec<(String, String)>,
    pub untagged: u64,
    pub manifests: u64,
}

/// Apply what `contents` holds (staged in `staging`) to `dest`; `repo`
/// overrides (or supplies) the repository of every entry.
pub fn apply(
    staging: &Store,
    dest: &dyn Destination,
    contents: &Contents,
    repo: Option<&str>,
    max_manifest: u64,
) -> Result<Applied> {
    let ctx = Ctx {
        staging,
        dest,
        max_manifest,
    };
    let targets = targets(staging, contents, repo)?;
    // everything needed, before anything moves
    let mut missing = Vec::new();
    let mut seen = HashSet::new();
    for t in &targets {
        let bytes = match &t.bytes {
            Some(b) => Some(b.clone()),
            None => ctx.load(&t.digest, &mut missing)?,
        };
        if let Some(b) = bytes {
            ctx.check(&t.repo, &t.media_type, &b, &mut seen, &mut missing)?;
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(BundleError::Missing(missing));
    }
    let mut applied = Applied::default();
    let mut pushed = HashSet::new();
    for t in &targets {
        let bytes = match &t.bytes {
            Some(b) => b.clone(),
            None => ctx
                .load(&t.digest, &mut Vec::new())?
                .expect("checked above"),
        };
        let tags: Vec<String> = t.tag.iter().cloned().collect();
        let after = ctx.push(
            &t.repo,
            &t.media_type,
            &t.digest,
            &bytes,
            tags,
            &mut pushed,
            &mut applied,
        )?;
        match &t.tag {
            Some(tag) => {
                let d = after.unwrap_or_else(|| t.digest.clone());
                applied
                    .tags
                    .push((format!("{}:{tag}", t.repo), d.to_string()));
            }
            None => applied.untagged += 1,
        }
    }
    Ok(applied)
}

/// The entries of `index.json` (or a docker archive's images), tagged first.
fn targets(staging: &Store, contents: &Contents, repo: Option<&str>) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    if let Some(index) = &contents.index {
        for e in &index.manifests {
            let Some((r, tag)) = layout::entry_target(e.annotations.as_ref(), repo) else {
                return Err(BundleError::Usage(format!(
                    "index.json entry {} names no repository; give one with --repo",
                    e.digest
                )));
            };
            check_name(&r, tag.as_deref())?;
            out.push(Target {
                repo: r,
                tag,
                media_type: e.media_type.clone(),
                digest: e.digest.clone(),
                bytes: None,
            });
        }
    } else if let Some(json) = &contents.docker {
        for image in docker::images(json, &contents.files, staging)? {
            let digest =
                crate::verify::digest_bytes(crate::oci::Algorithm::Sha256, &image.manifest);
            let mut names: Vec<(String, Option<String>)> = image
                .repo_tags
                .iter()
                .filter_map(|n| layout::split_name(n))
                .map(|(r, t)| (repo.map_or(r, String::from), Some(t)))
                .collect();
            if names.is_empty() {
                let r = repo.ok_or_else(|| {
                    BundleError::Usage("a docker archive image has no RepoTags; give --repo".into())
                })?;
                names.push((r.to_string(), None));
            }
            for (r, tag) in names {
                check_name(&r, tag.as_deref())?;
                out.push(Target {
                    repo: r,
                    tag,
                    media_type: crate::oci::media::OCI_MANIFEST.to_string(),
                    digest: digest.clone(),
                    bytes: Some(image.manifest.clone()),
                });
            }
        }
    } else {
        return Err(BundleError::Bad(
            "no index.json or manifest.json: not an OCI layout or docker archive (truncated?)"
                .into(),
        ));
    }
    out.sort_by_key(|t| t.tag.is_none());
    Ok(out)
}

fn check_name(repo: &str, tag: Option<&str>) -> Result<()> {
    if !crate::oci::name::is_valid_name(repo) {
        return Err(BundleError::Usage(format!(
            "{repo:?} is not a valid repository name"
        )));
    }
    if let Some(t) = tag.filter(|t| !crate::oci::name::is_valid_tag(t)) {
        return Err(BundleError::Usage(format!("{t:?} is not a valid tag")));
    }
    Ok(())
}

struct Ctx<'a> {
    staging: &'a Store,
    dest: &'a dyn Destination,
    max_manifest: u64,
}

impl Ctx<'_> {
    /// A manifest's bytes from its staged blob; None (noted missing) if absent.
    fn load(&self, d: &Digest, missing: &mut Vec<String>) -> Result<Option<Vec<u8>>> {
        if !self.staging.has_blob(d)? {
            missing.push(d.to_string());
            return Ok(None);
        }
        let limit = self.max_manifest;
        let mut bytes = Vec::new();
        self.staging
            .open_stored_blob(d)?
            .take(limit + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(BundleError::Bad(format!(
                "manifest {d} is larger than {limit} bytes"
            )));
        }
        Ok(Some(bytes))
    }

    fn has(&self, repo: &str, d: &Digest) -> Result<bool> {
        Ok(self.staging.has_blob(d)? || self.dest.has_blob(repo, d)?)
    }

    /// Note every manifest and blob the graph of `bytes` needs and lacks.
    fn check(
        &self,
        repo: &str,
        media_type: &str,
        bytes: &[u8],
        seen: &mut HashSet<(String, Digest)>,
        missing: &mut Vec<String>,
    ) -> Result<()> {
        let s = manifest::parse(media_type, bytes)
            .map_err(|e| BundleError::Bad(format!("a manifest: {e}")))?;
        for b in s.required_blobs() {
            if seen.insert((repo.to_string(), b.digest.clone())) && !self.has(repo, &b.digest)? {
                missing.push(b.digest.to_string());
            }
        }
        for c in &s.children {
            if seen.insert((repo.to_string(), c.digest.clone())) {
                if let Some(cb) = self.load(&c.digest, missing)? {
                    self.check(repo, &c.media_type, &cb, seen, missing)?;
                }
            }
        }
        Ok(())
    }

    /// Push a manifest (its children and blobs first) into `repo`; returns
    /// the digest its first tag points to afterwards.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        repo: &str,
        media_type: &str,
        digest: &Digest,
        bytes: &[u8],
        tags: Vec<String>,
        pushed: &mut HashSet<(String, Digest)>,
        applied: &mut Applied,
    ) -> Result<Option<Digest>> {
        let s = manifest::parse(media_type, bytes)
            .map_err(|e| BundleError::Bad(format!("{digest}: {e}")))?;
        if tags.is_empty() && !pushed.insert((repo.to_string(), digest.clone())) {
            return Ok(None);
        }
        if s.kind == Kind::Index {
            for c in &s.children {
                let cb = self
                    .load(&c.digest, &mut Vec::new())?
                    .ok_or_else(|| BundleError::Missing(vec![c.digest.to_string()]))?;
                self.push(
                    repo,
                    &c.media_type,
                    &c.digest,
                    &cb,
                    Vec::new(),
                    pushed,
                    applied,
                )?;
            }
        }
        for b in s.required_blobs() {
            if pushed.insert((repo.to_string(), b.digest.clone())) {
                self.dest.put_blob(repo, &b.digest, self.staging)?;
            }
        }
        let after = self
            .dest
            .put_manifest(repo, digest, media_type, bytes, tags)?;
        applied.manifests += 1;
        Ok(after)
    }
}
