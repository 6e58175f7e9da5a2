//! Platforms (os/architecture/variant) as found in image configs and index entries.

use serde::{Deserialize, Serialize};

/// A platform as image-spec states it (config and index entries), written
/// back exactly as found; compared after normalisation ([`Platform::same_as`]).
///
/// ```
/// use berth::oci::Platform;
/// let p = Platform::parse("linux/arm64").unwrap();
/// assert!(p.same_as(&Platform::parse("linux/arm64/v8").unwrap()));
/// assert!(!p.same_as(&Platform::parse("linux/arm/v7").unwrap()));
/// assert_eq!(Platform::parse("linux/arm/v7").unwrap().to_string(), "linux/arm/v7");
/// assert!(Platform::parse("linux").is_none());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system (`linux`, `windows`, ...).
    pub os: String,
    /// OS version (Windows builds).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|p| is_word(p))?;
        let arch = it.next().filter(|p| is_word(p))?;
        let variant = match it.next() {
            Some(v) if is_word(v) => Some(v.to_string()),
            Some(_) => return None,
            None => None,
        };
        if it.next().is_some() {
            return None;
        }
        Some(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant,
            ..Platform::default()
        })
    }

    /// The platform an image config states (its top-level `os`,
    /// `architecture`, `variant`, `os.version`, `os.features`), exactly.
    pub fn from_config(config: &[u8]) -> Option<Platform> {
        let p: Platform = serde_json::from_slice(config).ok()?;
        (!p.os.is_empty() && !p.architecture.is_empty()).then_some(p)
    }

    /// A key that orders platforms canonically (os, architecture, variant,
    /// os.version), normalised so equal platforms sort together.
    pub fn sort_key(&self) -> (String, String, String, String) {
        (
            self.os.clone(),
            self.architecture.clone(),
            self.normal_variant().unwrap_or("").to_string(),
            self.os_version.clone().unwrap_or_default(),
        )
    }

    /// The variant compared after normalisation: arm64 without variant is v8,
    /// arm without variant is v7.
    pub fn normal_variant(&self) -> Option<&str> {
        match (self.architecture.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, v) => v,
        }
    }

    /// Same platform after normalisation (os, architecture, variant, os.version).
    pub fn same_as(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.normal_variant() == other.normal_variant()
            && self.os_version == other.os_version
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.same_as(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(!p.same_as(&Platform::parse("linux/arm/v8").unwrap()));
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/amd64/v2/x").is_none());
        assert!(Platform::parse("linux//x").is_none());
    }

    #[test]
    fn from_config_keeps_fields_exactly() {
        let p = Platform::from_config(
            br#"{"architecture":"arm","os":"linux","variant":"v6","os.features":["a"],"rootfs":{}}"#,
        )
        .unwrap();
        assert_eq!(p.variant.as_deref(), Some("v6"));
        assert_eq!(p.os_features, Some(vec!["a".to_string()]));
        assert!(Platform::from_config(br#"{"architecture":"","os":"linux"}"#).is_none());
        assert!(Platform::from_config(b"[]").is_none());
    }
}
