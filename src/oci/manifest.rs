//! Parsing and validating manifests and indexes into the summary the store keeps,
//! so nothing downstream (GC, referrers, merge) has to parse them again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media;
use super::platform::Platform;

/// A content descriptor (image-spec descriptor.md): what a manifest
/// references, by media type, digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The referenced content's media type.
    pub media_type: String,
    /// The referenced content's digest.
    pub digest: Digest,
    /// Its size in bytes (checked against what the registry holds).
    pub size: u64,
    /// Where else it may be fetched from (non-distributable layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of a referrer (in the referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

/// Which of the two shapes a manifest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// OCI image manifest or Docker schema2 manifest (config + layers).
    Image,
    /// OCI image index or Docker manifest list.
    Index,
}

/// What the store remembers of a manifest besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Image manifest or index.
    pub kind: Kind,
    /// The media type it is stored and served with.
    pub media_type: String,
    /// An image manifest's config.
    pub config: Option<Descriptor>,
    /// An image manifest's layers.
    pub layers: Vec<Descriptor>,
    /// An index's entries.
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs).
    pub subject: Option<Descriptor>,
    /// The artifact type it declares.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// An image's platform, read from its config blob when it was pushed.
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Summary {
    /// A runnable image: an image manifest whose config is an image config.
    pub fn is_image(&self) -> bool {
        self.kind == Kind::Image
            && self
                .config
                .as_ref()
                .is_some_and(|c| media::is_image_config(&c.media_type))
    }

    /// Blobs the manifest references that the registry must hold.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| !media::is_non_distributable(&d.media_type))
    }

    /// The artifact type as the referrers API reports it.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// Why a body is not a manifest Berth stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Docker schema 1.
    #[error("Docker schema1 manifests are not supported (deprecated, unsigned content); push a Docker schema2 or OCI manifest")]
    Schema1,
    /// Not JSON (or nested too deep).
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    /// JSON, but not a valid manifest or index.
    #[error("manifest is invalid: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
    // Docker schema1 carries these instead of config/layers.
    fs_layers: Option<serde_json::Value>,
}

/// Parse `body` pushed with `content_type` (may be empty). Returns the summary
/// with the media type to store and serve.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Summary, ManifestError> {
    let ct = media::essence(content_type);
    if media::is_schema1(ct) {
        return Err(ManifestError::Schema1);
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    if raw.fs_layers.is_some() || raw.schema_version.as_ref().and_then(|v| v.as_u64()) == Some(1) {
        return Err(ManifestError::Schema1);
    }
    match raw.schema_version.as_ref().and_then(|v| v.as_u64()) {
        Some(2) => {}
        _ => return Err(ManifestError::Invalid("schemaVersion must be 2".into())),
    }
    if let Some(mt) = raw.media_type.as_deref() {
        if media::is_schema1(mt) {
            return Err(ManifestError::Schema1);
        }
        if !ct.is_empty() && mt != ct {
            return Err(ManifestError::Invalid(format!(
                "mediaType '{mt}' in the body differs from Content-Type '{ct}'"
            )));
        }
    }
    let media_type = match (ct, raw.media_type.as_deref()) {
        ("", Some(mt)) => mt.to_string(),
        ("", None) => {
            if raw.manifests.is_some() {
                media::OCI_INDEX.to_string()
            } else {
                media::OCI_MANIFEST.to_string()
            }
        }
        (ct, _) => ct.to_string(),
    };
    let kind = if media::is_index(&media_type) || (raw.manifests.is_some() && raw.config.is_none())
    {
        Kind::Index
    } else {
        Kind::Image
    };
    let summary = match kind {
        Kind::Image => {
            let config = raw.config.ok_or_else(|| {
                ManifestError::Invalid("an image manifest needs a config descriptor".into())
            })?;
            let layers = raw.layers.ok_or_else(|| {
                ManifestError::Invalid("an image manifest needs a layers array".into())
            })?;
            Summary {
                kind,
                media_type,
                config: Some(config),
                layers,
                children: Vec::new(),
                subject: raw.subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
                platform: None,
            }
        }
        Kind::Index => Summary {
            kind,
            media_type,
            config: None,
            layers: Vec::new(),
            children: raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("an index needs a manifests array".into()))?,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
            platform: None,
        },
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"x","digest":"{}","size":3}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            d('a'),
            d('b')
        );
        let s = parse(media::OCI_MANIFEST, body.as_bytes()).unwrap();
        assert_eq!(s.kind, Kind::Image);
        assert_eq!(s.required_blobs().count(), 2);
        assert_eq!(s.effective_artifact_type(), Some(media::OCI_CONFIG));
        // the body's mediaType decides when no Content-Type was sent
        assert_eq!(
            parse("", body.as_bytes()).unwrap().media_type,
            media::OCI_MANIFEST
        );
        assert!(matches!(
            parse(media::OCI_INDEX, body.as_bytes()),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            parse(media::DOCKER_SCHEMA1_SIGNED, b"{}"),
            Err(ManifestError::Schema1)
        );
        assert_eq!(
            parse("", br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Err(ManifestError::Schema1)
        );
        assert!(matches!(parse("", b"{"), Err(ManifestError::Json(_))));
        assert!(matches!(
            parse("", br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:x","size":1},"layers":[]}"#),
            Err(ManifestError::Json(_))
        ));
        assert!(matches!(
            parse(media::OCI_INDEX, br#"{"schemaVersion":2}"#),
            Err(ManifestError::Invalid(_))
        ));
    }
}
