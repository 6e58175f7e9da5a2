//! Values kept in the metadata tables, serialised as JSON so a data directory
//! can be inspected and a corrupt value is reported, never a panic.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::StoreError;
use crate::oci::Summary;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub size: u64,
    /// Unix seconds when the blob became visible.
    pub created: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub size: u64,
    /// True when the bytes live in a file instead of the `manifest_bytes` table.
    pub in_file: bool,
    pub summary: Summary,
    /// An index Berth made by merging platforms (kept in canonical order).
    #[serde(default)]
    pub made_by_berth: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    /// Unix seconds when the session was opened.
    pub created: u64,
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialise")
}

pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
