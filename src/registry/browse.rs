//! What the web pages show, read for one caller: repository summaries (a
//! page of a search), a repository's tags with what each holds, an image
//! with its config, layers, children and referrers. Read-only; the caller
//! decides what is visible (the access rules), this only reads.

use serde::Serialize;
use serde_json::Value;

use super::platforms::offered;
use super::{Registry, Result};
use crate::oci::manifest::Kind;
use crate::oci::{Descriptor, Digest, Reference};

/// Config blobs read for a page at most (larger ones are not shown).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Serialize)]
pub struct RepoRow {
    pub name: String,
    pub tags: usize,
    /// Unix ms of the latest tag move (0: no tags).
    pub last_push: u64,
}

#[derive(Serialize)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Unix ms the tag last moved.
    pub pushed: u64,
    /// `index`, `image` or `artifact`.
    pub kind: &'static str,
    pub artifact_type: Option<String>,
    /// `os/arch[/variant]` of each platform it offers.
    pub platforms: Vec<String>,
}

#[derive(Serialize)]
pub struct Child {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub platform: String,
}

#[derive(Serialize)]
pub struct ImageView {
    pub repo: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub kind: &'static str,
    pub artifact_type: Option<String>,
    pub platform: Option<String>,
    /// The parsed config blob (images), when small enough to show.
    pub config: Option<Value>,
    pub config_digest: Option<String>,
    pub layers: Vec<Descriptor>,
    pub layers_size: u64,
    pub children: Vec<Child>,
    pub referrers: Vec<Descriptor>,
    pub subject: Option<String>,
    pub annotations: Vec<(String, String)>,
    /// Tags of the repository that point at it.
    pub tags: Vec<String>,
}

fn kind_of(k: &Kind, artifact: bool) -> &'static str {
    match (k, artifact) {
        (Kind::Index, _) => "index",
        (_, true) => "artifact",
        _ => "image",
    }
}

impl Registry {
    /// Repositories after `after` whose name contains `q` and that
    /// `visible` admits, at most `n`, each with its tag count and last
    /// push; and whether more follow.
    pub fn browse_repos(
        &self,
        q: &str,
        after: Option<&str>,
        n: usize,
        visible: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<RepoRow>, bool)> {
        let q = q.to_lowercase();
        let matching = |r: &str| (q.is_empty() || r.to_lowercase().contains(&q)) && visible(r);
        let page = self.catalog(after, n, &matching)?;
        let mut rows = Vec::with_capacity(page.entries.len());
        for name in page.entries {
            let tags = self.store.tag_times(&name)?;
            rows.push(RepoRow {
                tags: tags.len(),
                last_push: tags.iter().map(|t| t.2).max().unwrap_or(0),
                name,
            });
        }
        Ok((rows, page.more))
    }

    /// Every tag of `repo` (at most `limit`, after `after`) with what it
    /// holds, newest push first within the page.
    pub fn browse_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TagRow>, bool)> {
        let mut all = self.store.tag_times(repo)?;
        if let Some(a) = after {
            all.retain(|t| t.0.as_str() > a);
        }
        let more = all.len() > limit;
        all.truncate(limit);
        let mut rows = Vec::with_capacity(all.len());
        for (tag, digest, pushed) in all {
            let Ok(d) = digest.parse::<Digest>() else {
                continue;
            };
            let Some(m) = self
                .store
                .manifest(repo, &Reference::Digest(d))
                .ok()
                .flatten()
            else {
                continue;
            };
            let s = &m.summary;
            let platforms = match s.kind {
                Kind::Index => offered(s).into_iter().map(|(p, _)| p.to_string()).collect(),
                _ => s.platform.iter().map(|p| p.to_string()).collect(),
            };
            rows.push(TagRow {
                tag,
                digest,
                media_type: s.media_type.clone(),
                size: m.bytes.len() as u64 + s.layers.iter().map(|l| l.size).sum::<u64>(),
                pushed,
                kind: kind_of(&s.kind, !s.is_image() && s.kind != Kind::Index),
                artifact_type: s.artifact_type.clone(),
                platforms,
            });
        }
        rows.sort_by(|a, b| b.pushed.cmp(&a.pushed).then(a.tag.cmp(&b.tag)));
        Ok((rows, more))
    }

    /// Manifest `digest` of `repo` as a page shows it.
    pub fn browse_image(&self, repo: &str, digest: &Digest) -> Result<ImageView> {
        let m = self.manifest(repo, &Reference::Digest(digest.clone()))?;
        let s = &m.summary;
        let config = s
            .config
            .as_ref()
            .filter(|c| c.size <= MAX_CONFIG_BYTES && s.is_image());
        let config_json = config
            .and_then(|c| self.small_blob(repo, &c.digest))
            .and_then(|b| serde_json::from_slice(&b).ok());
        let children = offered(s)
            .into_iter()
            .map(|(p, d)| Child {
                digest: d.digest.to_string(),
                media_type: d.media_type.clone(),
                size: d.size,
                platform: p.to_string(),
            })
            .collect();
        let tags = self
            .store
            .tag_times(repo)?
            .into_iter()
            .filter(|t| t.1 == digest.to_string())
            .map(|t| t.0)
            .collect();
        Ok(ImageView {
            repo: repo.to_string(),
            digest: m.digest.to_string(),
            media_type: s.media_type.clone(),
            size: m.bytes.len() as u64,
            kind: kind_of(&s.kind, !s.is_image() && s.kind != Kind::Index),
            artifact_type: s.artifact_type.clone(),
            platform: s.platform.as_ref().map(|p| p.to_string()),
            config: config_json,
            config_digest: s.config.as_ref().map(|c| c.digest.to_string()),
            layers_size: s.layers.iter().map(|l| l.size).sum(),
            layers: s.layers.clone(),
            children,
            referrers: self.referrers(repo, digest, None)?,
            subject: s.subject.as_ref().map(|d| d.digest.to_string()),
            annotations: s
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            tags,
        })
    }

    /// A small blob's bytes (a config), checked against its digest.
    fn small_blob(&self, repo: &str, digest: &Digest) -> Option<Vec<u8>> {
        let info = self.store.blob(repo, digest).ok()??;
        if info.size > MAX_CONFIG_BYTES || self.store.is_damaged(digest).ok()? {
            return None;
        }
        let mut bytes = Vec::with_capacity(info.size as usize);
        let mut body = self.store.open_blob(digest, &info).ok()?;
        std::io::Read::read_to_end(&mut body, &mut bytes).ok()?;
        (crate::verify::digest_bytes(digest.algorithm(), &bytes) == *digest).then_some(bytes)
    }
}
