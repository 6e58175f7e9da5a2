//! What the web pages show, read for one caller: repository summaries (a
//! page of a search), a repository's tags with what each holds, an image
//! with its config, layers, children and referrers. Read-only; the caller
//! decides what is visible (the access rules), this only reads.

use serde::Serialize;
use serde_json::Value;

use super::blobs::MAX_CONFIG_BYTES;
use super::platforms::offered;
use super::{Registry, Result};
use crate::oci::manifest::Kind;
use crate::oci::{Descriptor, Digest, Reference};

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

    /// Tags of `repo` with what each holds, newest push first (ties by
    /// name), at most `limit` after the cursor `after`; and the cursor of
    /// the next page, if more follow (`<pushed>~<tag>`: `~` is in no tag).
    pub fn browse_tags(
        &self,
        repo: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<TagRow>, Option<String>)> {
        let mut all = self.store.tag_times(repo)?;
        let order = |t: &(String, String, u64)| (std::cmp::Reverse(t.2), t.0.clone());
        if let Some((pushed, tag)) = after.and_then(|a| a.split_once('~')) {
            let from = (
                std::cmp::Reverse(pushed.parse().unwrap_or(u64::MAX)),
                tag.to_string(),
            );
            all.retain(|t| order(t) > from);
        }
        all.sort_by_cached_key(order);
        let next = (all.len() > limit).then(|| {
            let (tag, _, pushed) = &all[limit - 1];
            format!("{pushed}~{tag}")
        });
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
        Ok((rows, next))
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
}
