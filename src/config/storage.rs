//! `[storage]` and `[metadata]`: where blob bodies and the metadata live.
//! Both default to the data directory (files and redb); object storage and
//! PostgreSQL are what several Berth processes share to be one registry.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[storage]`: where blob bodies (and manifests too large for the
/// metadata database) are kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub blobs: BlobsBackend,
    pub s3: S3Config,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobsBackend {
    /// Content-addressed files in the data directory.
    #[default]
    Files,
    /// An S3-compatible object store (`[storage.s3]`).
    S3,
}

/// `[storage.s3]`: an S3-compatible bucket (Garage, Ceph RGW, MinIO, AWS).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `http(s)://host:port` of the S3 API; empty means AWS for `region`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    /// A file holding the secret key (its first line), so that the secret
    /// is in neither the config nor the process list.
    pub secret_access_key_file: String,
    /// Key prefix of everything this registry writes, so that several
    /// share one bucket (`teams/a`); empty: the bucket's root.
    pub prefix: String,
    /// Blob GETs answer 307 to a presigned URL of the object (for clients
    /// that can reach the store). The bytes then bypass Berth, and with it
    /// verify-on-read: the scrub still checks them.
    pub redirect: bool,
    /// Seconds a request to the store may take before it counts as failed
    /// (and the client gets 503).
    pub timeout_secs: u64,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key_file: String::new(),
            prefix: String::new(),
            redirect: false,
            timeout_secs: 30,
        }
    }
}

/// `[metadata]`: the embedded database, or a PostgreSQL one that several
/// Berth processes can share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metadata {
    pub engine: MetadataEngine,
    /// `postgres://user@host:port/database` (engine = "postgres").
    pub url: String,
    /// A file holding the database password (its first line), so that the
    /// password is in neither the config nor the process list.
    pub password_file: String,
    /// Seconds to wait for a connection before answering 503.
    pub timeout_secs: u64,
    /// A PEM file of the CA certificates the database server's certificate
    /// must chain to: connections are then TLS only. Without it, TLS when
    /// `url` says `sslmode=require` (checked against the web's roots).
    pub ca_file: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataEngine {
    /// redb in the data directory.
    #[default]
    Redb,
    Postgres,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            engine: MetadataEngine::Redb,
            url: String::new(),
            password_file: String::new(),
            timeout_secs: 5,
            ca_file: String::new(),
        }
    }
}

/// The storage and metadata sections are consistent.
pub(super) fn validate(s: &Storage, m: &Metadata) -> Result<(), ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(m.into()));
    if (m.engine == MetadataEngine::Postgres) == m.url.is_empty() {
        return invalid("metadata.url is set exactly when metadata.engine = \"postgres\"");
    }
    if s.blobs == BlobsBackend::S3 {
        if s.s3.bucket.is_empty() {
            return invalid("storage.s3.bucket is needed with storage.blobs = \"s3\"");
        }
        if s.s3.access_key_id.is_empty() != s.s3.secret_access_key_file.is_empty() {
            return invalid(
                "storage.s3.access_key_id and storage.s3.secret_access_key_file go together",
            );
        }
        let url = ["", "http://", "https://"]
            .iter()
            .any(|p| s.s3.endpoint.starts_with(p) && (p.is_empty() == s.s3.endpoint.is_empty()));
        if !url {
            return invalid("storage.s3.endpoint is an http:// or https:// URL");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_needs_a_bucket_and_both_halves_of_a_key() {
        let m = Metadata::default();
        let mut s = Storage {
            blobs: BlobsBackend::S3,
            ..Storage::default()
        };
        assert!(validate(&s, &m).is_err());
        s.s3.bucket = "berth".into();
        assert!(validate(&s, &m).is_ok());
        s.s3.access_key_id = "GK1".into();
        assert!(validate(&s, &m).is_err());
        s.s3.secret_access_key_file = "/etc/berth/s3.secret".into();
        assert!(validate(&s, &m).is_ok());
        s.s3.endpoint = "garage:3900".into();
        assert!(validate(&s, &m).is_err());
    }
}
