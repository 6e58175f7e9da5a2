//! What an export carries: repository/tag patterns, and the platform filter
//! that rewrites a multi-arch index to list only the platforms carried.

use crate::oci::glob::glob_match;
use crate::oci::Platform;

pub use crate::oci::filter::{filter_index, wanted, Filtered};

use super::{BundleError, Result};

/// One `REPO[:TAG]` or `REPO@DIGEST` argument; `*` globs in either part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub repo: String,
    pub which: Which,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    /// Every tag (the pattern named no tag).
    AllTags,
    /// Tags matching this glob.
    Tags(String),
    /// One manifest by digest, carried untagged.
    Digest(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern> {
        let bad = || BundleError::Usage(format!("{s:?} is not REPO, REPO:TAG or REPO@DIGEST"));
        if let Some((repo, d)) = s.split_once('@') {
            d.parse::<crate::oci::Digest>().map_err(|_| bad())?;
            return Ok(Pattern {
                repo: repo.to_string(),
                which: Which::Digest(d.to_string()),
            });
        }
        let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, which) = match s[slash..].find(':') {
            Some(c) => (&s[..slash + c], Which::Tags(s[slash + c + 1..].to_string())),
            None => (s, Which::AllTags),
        };
        if repo.is_empty() || matches!(&which, Which::Tags(t) if t.is_empty()) {
            return Err(bad());
        }
        Ok(Pattern {
            repo: repo.to_string(),
            which,
        })
    }

    /// The tag glob or digest the pattern names (empty for all tags).
    pub fn which_str(&self) -> String {
        match &self.which {
            Which::AllTags => String::new(),
            Which::Tags(t) | Which::Digest(t) => t.clone(),
        }
    }

    pub fn matches_repo(&self, repo: &str) -> bool {
        glob_match(&self.repo, repo)
    }

    pub fn matches_tag(&self, tag: &str) -> bool {
        match &self.which {
            Which::AllTags => true,
            Which::Tags(g) => glob_match(g, tag),
            Which::Digest(_) => false,
        }
    }
}

/// `linux/arm64,linux/arm/v7` to platforms.
pub fn parse_platforms(list: &str) -> Result<Vec<Platform>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Platform::parse(s).ok_or_else(|| {
                BundleError::Usage(format!("{s:?} is not a platform (os/arch[/variant])"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::layout::ANN_PLATFORMS;
    use super::*;
    use crate::oci::Descriptor;
    use serde_json::Value;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn patterns_parse() {
        let t = Pattern::parse("team/app:v1.*").unwrap();
        assert_eq!(t.repo, "team/app");
        assert!(t.matches_tag("v1.2") && !t.matches_tag("v2"));
        assert_eq!(Pattern::parse("team/*").unwrap().which, Which::AllTags);
        assert!(Pattern::parse("localhost/app")
            .unwrap()
            .matches_repo("localhost/app"));
        assert!(matches!(
            Pattern::parse(&format!("a@sha256:{}", "0".repeat(64)))
                .unwrap()
                .which,
            Which::Digest(_)
        ));
        assert!(Pattern::parse("a@sha256:zz").is_err());
        assert!(Pattern::parse("a:").is_err());
        assert!(Pattern::parse(":x").is_err());
    }

    #[test]
    fn platform_filter() {
        let f = parse_platforms("linux/arm64, linux/arm/v7").unwrap();
        assert!(wanted(&f, &p("linux/arm64")));
        assert!(wanted(&f, &p("linux/arm64/v8")));
        assert!(wanted(&f, &p("linux/arm/v7")));
        assert!(wanted(&f, &p("linux/arm")));
        assert!(!wanted(&f, &p("linux/arm/v6")));
        assert!(!wanted(&f, &p("linux/amd64")));
        assert!(wanted(
            &parse_platforms("linux/arm").unwrap(),
            &p("linux/arm/v6")
        ));
        assert!(parse_platforms("linux").is_err());
    }

    #[test]
    fn index_rewrite_keeps_only_wanted_children() {
        let child = |arch: &str, n: char| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{}", n.to_string().repeat(64)),
                "size": 10,
                "platform": {"os": "linux", "architecture": arch}
            })
        };
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [child("amd64", 'a'), child("arm64", 'b')]
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let children: Vec<Descriptor> = serde_json::from_value(doc["manifests"].clone()).unwrap();
        let Filtered::Rewritten(out, kept) = filter_index(&bytes, &children, &[p("linux/arm64")])
        else {
            panic!("not rewritten")
        };
        assert_eq!(kept.len(), 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["platform"]["architecture"], "arm64");
        assert_eq!(v["annotations"][ANN_PLATFORMS], "linux/arm64");
        assert!(matches!(
            filter_index(&bytes, &children, &[p("linux/amd64"), p("linux/arm64")]),
            Filtered::Unchanged
        ));
        assert!(matches!(
            filter_index(&bytes, &children, &[p("linux/s390x")]),
            Filtered::Empty
        ));
    }
}
