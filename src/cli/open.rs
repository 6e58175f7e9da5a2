//! A store as a configuration describes it: `[storage]` and `[metadata]`
//! turned into the store's options, secrets read from their files.

use berth::config::Config;
use berth::store::bodies::{Location, S3Options};
use berth::store::{Metadata, PostgresOptions, StoreOptions};

use super::Error;

/// The options `Store::open` takes for `cfg`.
pub fn store_options(cfg: &Config) -> Result<StoreOptions, Error> {
    Ok(StoreOptions {
        cache_mb: cfg.cache_mb,
        metadata: metadata(&cfg.metadata)?,
        blobs: blobs(&cfg.storage)?,
    })
}

/// Where the store keeps bodies, as `[storage]` configures it.
fn blobs(s: &berth::config::Storage) -> Result<Location, Error> {
    use berth::config::BlobsBackend;
    Ok(match s.blobs {
        BlobsBackend::Files => Location::Files,
        BlobsBackend::S3 => Location::S3(S3Options {
            endpoint: s.s3.endpoint.clone(),
            bucket: s.s3.bucket.clone(),
            region: s.s3.region.clone(),
            access_key_id: s.s3.access_key_id.clone(),
            secret_access_key: match s.s3.secret_access_key_file.as_str() {
                "" => String::new(),
                f => first_line(f, "storage.s3.secret_access_key_file")?,
            },
            prefix: s.s3.prefix.clone(),
            timeout: std::time::Duration::from_secs(s.s3.timeout_secs.max(1)),
        }),
    })
}

/// The first line of a secret's file.
fn first_line(path: &str, key: &str) -> Result<String, Error> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("{key} {path}: {e}")))?
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The store's metadata engine as `[metadata]` configures it.
fn metadata(m: &berth::config::Metadata) -> Result<Metadata, Error> {
    use berth::config::MetadataEngine;
    Ok(match m.engine {
        MetadataEngine::Redb => Metadata::Embedded,
        MetadataEngine::Postgres => {
            let password = match m.password_file.as_str() {
                "" => None,
                f => Some(first_line(f, "metadata.password_file")?),
            };
            Metadata::Postgres(PostgresOptions {
                url: m.url.clone(),
                password,
                timeout: std::time::Duration::from_secs(m.timeout_secs.max(1)),
                ca_file: (!m.ca_file.is_empty()).then(|| m.ca_file.clone()),
            })
        }
    })
}
