//! The mirror's sections: `[[upstreams]]` and `[[sync]]`.

use serde::{Deserialize, Serialize};

use super::platform_text;
use crate::oci::Platform;

/// A registry this one mirrors (`[[upstreams]]`): `<name>/<repo>` here is
/// `<url>/<repo>` there, fetched on a pull that misses and kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The local namespace (a repository name component).
    pub name: String,
    /// Base URL, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// Registry host names whose mirror requests (`?ns=<host>`, as
    /// containerd sends them) map to this upstream.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Login at the upstream (Basic, or for its token server).
    #[serde(default)]
    pub username: String,
    /// File holding the password (first line).
    #[serde(default)]
    pub password_file: String,
    /// PEM CA certificates to trust for the upstream, besides the web roots.
    #[serde(default)]
    pub ca_file: String,
    /// Check the upstream's TLS certificate.
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// A cached tag is served without asking the upstream for this long.
    #[serde(default = "default_ttl")]
    pub ttl_secs: u64,
    /// Cached bytes kept at most (0 = no limit): the least recently pulled
    /// go first; synced content is kept.
    #[serde(default)]
    pub max_bytes: u64,
    /// Pushes into the namespace are refused (405 DENIED) unless this is set.
    #[serde(default)]
    pub allow_push: bool,
}

impl UpstreamConfig {
    /// An upstream at `url` with every default (no login): what the
    /// command-line clients of a registry (`berth export --url`) start from.
    pub fn for_url(url: &str) -> UpstreamConfig {
        UpstreamConfig {
            name: String::new(),
            url: url.to_string(),
            hosts: Vec::new(),
            username: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
            tls_verify: true,
            ttl_secs: default_ttl(),
            max_bytes: 0,
            allow_push: false,
        }
    }
}

/// A scheduled copy from an upstream (`[[sync]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// The upstream's `name`.
    pub upstream: String,
    /// Upstream repository names or globs (globs read the upstream's catalog).
    pub repos: Vec<String>,
    /// Tag globs (default: every tag).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Platforms to copy of multi-arch images (default: every one).
    #[serde(default, with = "platform_text::list")]
    pub platforms: Vec<Platform>,
    /// Run every this many seconds (0 = only on `POST /_berth/sync`).
    #[serde(default)]
    pub interval_secs: u64,
}

fn default_true() -> bool {
    true
}

fn default_ttl() -> u64 {
    300
}
