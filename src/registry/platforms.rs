//! Platform-aware serving: which child of an index a client that cannot read
//! indexes gets, and what a reference offers.

use serde_json::{json, Value};

use super::{Registry, Result};
use crate::oci::{Descriptor, Kind, Platform, Reference, Summary};

/// The `os/… arch/…` tokens Docker engines put in their User-Agent.
pub fn platform_from_user_agent(ua: &str) -> Option<Platform> {
    let mut os = None;
    let mut arch = None;
    for token in ua.split_whitespace() {
        if let Some(v) = token.strip_prefix("os/") {
            os = Some(v);
        } else if let Some(v) = token.strip_prefix("arch/") {
            arch = Some(v);
        }
    }
    Platform::parse(&format!("{}/{}", os?, arch?))
}

/// The platforms an index's entries state.
pub fn offered(index: &Summary) -> Vec<(Platform, &Descriptor)> {
    index
        .children
        .iter()
        .filter_map(|c| c.platform.clone().map(|p| (p, c)))
        .collect()
}

impl Registry {
    /// What `repo:reference` offers: each platform with digest, media type
    /// and size (the body of `GET /v2/<name>/_berth/platforms/<reference>`
    /// and of `berth platforms`).
    pub fn platforms(&self, repo: &str, reference: &Reference) -> Result<Value> {
        let m = self.manifest(repo, reference)?;
        let row = |p: &Platform, digest: &crate::oci::Digest, media_type: &str, size: u64| json!({"platform": p.to_string(), "detail": p, "digest": digest, "mediaType": media_type, "size": size});
        let platforms: Vec<Value> = if m.summary.kind == Kind::Index {
            offered(&m.summary)
                .into_iter()
                .map(|(p, d)| row(&p, &d.digest, &d.media_type, d.size))
                .collect()
        } else {
            m.summary
                .platform
                .iter()
                .map(|p| row(p, &m.digest, &m.summary.media_type, m.bytes.len() as u64))
                .collect()
        };
        Ok(json!({
            "name": repo,
            "reference": reference.to_string(),
            "digest": m.digest,
            "mediaType": m.summary.media_type,
            "platforms": platforms,
        }))
    }

    /// Choose the child of `index` for a client: `asked` (`?platform=`) if
    /// given, else the User-Agent's platform, else the repository's
    /// preference list, then its default platform. Err lists what is offered.
    pub fn choose_child<'a>(
        &self,
        repo: &str,
        index: &'a Summary,
        asked: Option<Platform>,
        user_agent: Option<&str>,
    ) -> Result<&'a Descriptor, Vec<String>> {
        let policy = self.policy(repo);
        let candidates: Vec<Platform> = match (asked, user_agent.and_then(platform_from_user_agent))
        {
            (Some(p), _) | (None, Some(p)) => vec![p],
            (None, None) => policy
                .prefer
                .into_iter()
                .chain([policy.default_platform])
                .collect(),
        };
        let offered = offered(index);
        candidates
            .iter()
            .find_map(|want| {
                offered
                    .iter()
                    .find(|(p, _)| p.same_as(want))
                    .map(|(_, d)| *d)
            })
            .ok_or_else(|| offered.iter().map(|(p, _)| p.to_string()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_tokens() {
        let ua = "docker/20.10.7 go/go1.13.15 git-commit/b0f5bc3 kernel/5.10 os/linux arch/arm64 UpstreamClient(Docker-Client/20.10.7 \\(linux\\))";
        assert_eq!(
            platform_from_user_agent(ua).unwrap().to_string(),
            "linux/arm64"
        );
        assert!(platform_from_user_agent("skopeo/1.9").is_none());
    }
}
