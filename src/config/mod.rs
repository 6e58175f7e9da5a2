//! Configuration: defaults, then the TOML file (`--config`), then `BERTH_*`
//! environment variables, then command-line flags. Unknown keys are errors.
//!
//! Every key `a.b` of the file can be set from the environment as `BERTH_A_B`
//! (the value is read as TOML, falling back to a plain string), e.g.
//! `BERTH_LIMITS_MAX_MANIFEST_BYTES=1048576`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::oci::Platform;

mod mirror;
mod platform_text;
mod storage;

pub use mirror::{SyncConfig, UpstreamConfig};
pub use storage::{BlobsBackend, Metadata, MetadataEngine, S3Config, Storage};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port to listen on.
    pub listen: String,
    /// Where everything is kept (metadata database and blob files).
    pub data_dir: PathBuf,
    /// Page cache of the metadata database, MiB.
    pub cache_mb: usize,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// Platform served to clients that cannot read an index, when nothing
    /// else chooses (`os/arch[/variant]`).
    #[serde(with = "platform_text")]
    pub default_platform: Platform,
    pub limits: Limits,
    pub uploads: Uploads,
    pub verify: Verify,
    pub gc: Gc,
    pub auth: crate::auth::AuthConfig,
    pub tls: Tls,
    pub log: Log,
    pub metrics: MetricsConfig,
    /// Per-repository policies; the first whose pattern matches applies.
    pub repositories: Vec<RepoPolicy>,
    /// Retention policies, applied before each garbage collection; the
    /// first whose pattern matches a repository applies.
    pub retention: Vec<Retention>,
    /// Registries this one mirrors (pull-through cache).
    pub upstreams: Vec<UpstreamConfig>,
    /// Scheduled copies from upstreams.
    pub sync: Vec<SyncConfig>,
    /// Where blob bodies live (files in the data directory unless set).
    pub storage: Storage,
    /// Where the metadata lives (embedded redb unless set).
    pub metadata: Metadata,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Glob on the repository name.
    pub pattern: String,
    /// Keep the N most recently pushed tags (0 = keep every tag).
    #[serde(default)]
    pub keep_last: usize,
    /// Tags matching any of these globs are always kept.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Delete manifests no tag reaches once they are this old, seconds
    /// (0 = keep them).
    #[serde(default)]
    pub untagged_after_secs: u64,
}

/// How pushes to a tag are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Images of different platforms pushed to one tag merge into an index.
    Platform,
    /// Plain OCI behaviour: the last push wins.
    Overwrite,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoPolicy {
    /// Glob on the repository name: `*` matches any run of characters
    /// (slashes included), `?` one character.
    pub pattern: String,
    #[serde(default = "default_merge")]
    pub merge: MergeMode,
    /// Platforms preferred, in order, for clients that cannot read an index.
    #[serde(default, with = "platform_text::list")]
    pub prefer: Vec<Platform>,
    /// Overrides the global `default_platform` for these repositories.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "platform_text::optional"
    )]
    pub default_platform: Option<Platform>,
}

fn default_merge() -> MergeMode {
    MergeMode::Platform
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest manifest accepted (413 above).
    pub max_manifest_bytes: usize,
    /// Largest blob accepted, bytes (0 = no limit).
    pub max_blob_bytes: u64,
    /// Largest JSON page a list request returns (tags, catalog).
    pub max_page: usize,
    /// Upload sessions one user (or anonymous client address) may hold
    /// open at once (0 = no limit); beyond: 429 TOOMANYREQUESTS.
    pub max_sessions_per_user: usize,
    /// Upload sessions open in the whole registry; beyond: 429
    /// TOOMANYREQUESTS. 0 = derived from the open-file limit at start
    /// (half of it, at most 16384): an idle session holds no descriptor,
    /// one in use holds its file and its connection.
    pub max_sessions: usize,
    /// A request body that brings less than 1 KiB in this many seconds has
    /// stalled (0 = no limit): 408, and an upload keeps what arrived before.
    pub body_idle_timeout_secs: u64,
    /// Time a client has to send a request's line and headers, seconds
    /// (slow-loris); beyond: 408 and the connection closes.
    pub request_head_timeout_secs: u64,
    /// Idle keep-alive connections close after this many seconds.
    pub keep_alive_secs: u64,
    /// Open connections per HTTP worker; beyond, new ones wait in the backlog.
    pub max_connections: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uploads {
    /// `POST ?mount=<digest>` without `from` mounts any blob the store holds.
    pub automatic_mount: bool,
    /// Value of `OCI-Chunk-Min-Length` advertised on POST (0 = not sent).
    pub chunk_min_length: u64,
    /// Sessions idle this long are removed, seconds.
    pub idle_timeout_secs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verify {
    /// Check each 1 MiB block of a blob against its blake3 hash as it is
    /// served; a corrupt block ends the transfer and marks the blob damaged.
    pub on_read: bool,
    /// Re-verify the whole store every this many seconds (0 = never).
    pub scrub_interval_secs: u64,
    /// Read rate limit of a scrub while serving, MB/s (0 = unlimited).
    pub scrub_rate_mb: u64,
    /// The scheduled and the requested scrub check each blob by its 1 MiB
    /// block hashes (blake3, recorded from the bytes whose digest was
    /// verified at upload); false: by its full digest. `POST
    /// /_berth/scrub?full=true` checks full digests either way.
    pub scrub_fast: bool,
    /// Hashing threads of a scrub (0 = all cores).
    pub threads: usize,
    /// For this many seconds after a read hashed every block of a blob and
    /// found them right, reads of that file, unchanged, send the bytes
    /// still in the page cache unhashed; bytes that come from the disk are
    /// hashed again (0 = hash every block of every read).
    pub trust_cached_secs: u64,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            on_read: true,
            scrub_interval_secs: 0,
            scrub_rate_mb: 200,
            scrub_fast: true,
            threads: 0,
            trust_cached_secs: 3600,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain; empty = plain HTTP.
    pub cert: String,
    /// PEM private key of the certificate.
    pub key: String,
    /// PEM CA certificates for mutual TLS: a client certificate they issued
    /// logs the client in as the certificate's common name (CN). Clients
    /// without one can still use Basic auth. Empty = no client certificates.
    pub client_ca: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gc {
    /// Collect unreferenced blobs and manifests this often while serving,
    /// seconds (0 = never; `berth gc` runs it offline).
    pub interval_secs: u64,
}

/// Where `/metrics` is served and who may read it. By default it is open on
/// the main listener, as Prometheus scrapers expect: its labels name routes
/// and methods, never repositories, users or tags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// ADDR:PORT of a separate plain-HTTP listener for `/metrics`,
    /// `/healthz` and `/readyz` (e.g. a management network); the main
    /// listener then answers 404 for `/metrics`. Empty = the main listener.
    pub listen: String,
    /// `/metrics` on the main listener needs an admin's credentials.
    pub admin_only: bool,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `berth=debug`; `RUST_LOG` wins.
    pub level: String,
    /// Log every GET and HEAD too. Writes (push, delete), server errors and
    /// failed logins are always logged; reads are counted in /metrics.
    pub access: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            data_dir: PathBuf::from("berth-data"),
            cache_mb: 16,
            workers: 0,
            default_platform: Platform::parse("linux/amd64").expect("a platform"),
            limits: Limits::default(),
            uploads: Uploads::default(),
            verify: Verify::default(),
            gc: Gc::default(),
            auth: Default::default(),
            tls: Tls::default(),
            log: Log::default(),
            metrics: MetricsConfig::default(),
            repositories: Vec::new(),
            retention: Vec::new(),
            upstreams: Vec::new(),
            sync: Vec::new(),
            storage: Storage::default(),
            metadata: Metadata::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: 0,
            max_page: 10_000,
            max_sessions_per_user: 256,
            max_sessions: 0,
            body_idle_timeout_secs: 60,
            request_head_timeout_secs: 10,
            keep_alive_secs: 30,
            max_connections: 4096,
        }
    }
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            automatic_mount: true,
            chunk_min_length: 0,
            idle_timeout_secs: 24 * 3600,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
            access: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, overlaid with `file` (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(file, &|k| std::env::var(k).ok())
    }

    /// Defaults overlaid with `file` alone: a second configuration that the
    /// environment meant for this process must not change (the destination
    /// of `berth migrate`).
    pub fn load_file(file: &Path) -> Result<Config, ConfigError> {
        Config::load_with(Some(file), &|_| None)
    }

    fn load_with(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialise");
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
            let from_file: toml::Value = text
                .parse::<toml::Table>()
                .map(toml::Value::Table)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            // Deserialising the file on its own reports unknown keys by name.
            Config::deserialize(from_file.clone())
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
            merge(&mut value, from_file);
        }
        apply_env(&mut value, "BERTH", env)?;
        let cfg = Config::deserialize(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "listen: '{}' is not ADDR:PORT",
                self.listen
            )));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::Invalid(format!(
                "metrics.listen: '{}' is not ADDR:PORT",
                self.metrics.listen
            )));
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key go together".into(),
            ));
        }
        storage::validate(&self.storage, &self.metadata)?;
        if !self.tls.client_ca.is_empty() && self.tls.cert.is_empty() {
            return Err(ConfigError::Invalid(
                "tls.client_ca needs tls.cert and tls.key (client certificates need TLS)".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.upstreams {
            if !crate::oci::name::is_valid_name(&u.name) || u.name.contains('/') {
                return Err(ConfigError::Invalid(format!(
                    "upstreams: '{}' is not a namespace (one repository name component)",
                    u.name
                )));
            }
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "upstreams: '{}' twice",
                    u.name
                )));
            }
            if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "upstreams.{}: url '{}' is not http(s)://",
                    u.name, u.url
                )));
            }
        }
        for s in &self.sync {
            if !names.contains(s.upstream.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "sync: no upstream named '{}'",
                    s.upstream
                )));
            }
            if s.repos.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "sync ({}): repos must name at least one repository",
                    s.upstream
                )));
            }
        }
        self.auth.token.check().map_err(ConfigError::Invalid)?;
        self.auth.ldap.check().map_err(ConfigError::Invalid)?;
        if self.limits.max_page == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_page must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether callers must be identified: an htpasswd file, a directory,
    /// tokens, or a client certificate CA is configured.
    pub fn auth_on(&self) -> bool {
        !self.auth.htpasswd.is_empty()
            || !self.tls.client_ca.is_empty()
            || self.auth.ldap.on()
            || self.auth.token.on()
    }

    /// HTTP worker threads (`workers`, 0 = one per core).
    pub fn http_workers(&self) -> usize {
        crate::verify::parallelism(self.workers)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Overwrite each leaf `a.b` with `PREFIX_A_B` when that variable is set.
fn apply_env(
    value: &mut toml::Value,
    prefix: &str,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let toml::Value::Table(t) = value else {
        return Ok(());
    };
    for (k, v) in t.iter_mut() {
        let name = format!("{prefix}_{}", k.to_uppercase());
        if let toml::Value::Table(_) = v {
            apply_env(v, &name, get)?;
        } else if let Some(raw) = get(&name) {
            *v = match (&*v, format!("x = {raw}").parse::<toml::Table>()) {
                (toml::Value::String(_), _) => toml::Value::String(raw),
                (_, Ok(mut parsed)) => parsed.remove("x").expect("parsed key"),
                (_, Err(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: '{raw}' is not a valid value"
                    )))
                }
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_leaves() {
        let mut v = toml::Value::try_from(Config::default()).unwrap();
        let env = |k: &str| match k {
            "BERTH_LISTEN" => Some("0.0.0.0:6000".to_string()),
            "BERTH_LIMITS_MAX_MANIFEST_BYTES" => Some("1024".to_string()),
            "BERTH_UPLOADS_AUTOMATIC_MOUNT" => Some("false".to_string()),
            _ => None,
        };
        apply_env(&mut v, "BERTH", &env).unwrap();
        let c = Config::deserialize(v).unwrap();
        assert_eq!(c.listen, "0.0.0.0:6000");
        assert_eq!(c.limits.max_manifest_bytes, 1024);
        assert!(!c.uploads.automatic_mount);
    }

    #[test]
    fn repository_policies() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[[repositories]]\npattern = \"p/*\"\nmerge = \"overwrite\"\nprefer = [\"linux/ppc64le\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!(c.repositories[0].merge, MergeMode::Overwrite);
        std::fs::write(
            &f,
            "[[repositories]]\npattern = \"p/*\"\nprefer = [\"linux\"]\n",
        )
        .unwrap();
        assert!(Config::load(Some(&f)).is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[limits]\nmax_manifest_byte = 3\n").unwrap();
        let e = Config::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("max_manifest_byte"), "{e}");
        std::fs::write(&f, "cache_mb = 8\n[uploads]\nautomatic_mount = false\n").unwrap();
        let c = Config::load(Some(&f)).unwrap();
        assert_eq!((c.cache_mb, c.uploads.automatic_mount), (8, false));
    }
}
