//! What can go wrong in the store. Errors keep their cause (`source()`), and
//! are cheap to clone: a failed batch commit answers every member with it.

use std::sync::Arc;

use crate::oci::Digest;

/// The cause of an error from the metadata engine or the file system.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The metadata engine failed, or refused (a commit lost, a reopen
    /// under way).
    #[error("metadata database: {0}")]
    Db(#[source] Cause),
    /// The file system refused to grow a file: disk full, quota, size limit.
    #[error("out of disk space: {0}")]
    NoSpace(#[source] Arc<std::io::Error>),
    /// Writes are refused for a moment after one failed.
    #[error("{0}")]
    Unavailable(String),
    #[error("I/O: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A manifest kept in a file no longer hashes to its digest: it is not
    /// served, and a push of its bytes repairs it.
    #[error("manifest {0} failed verification on this registry ({1}); push it again to repair it")]
    ManifestDamaged(Digest, String),
    #[error("data directory has schema version {found}, this build understands {expected}; use a matching Berth release")]
    Schema { found: String, expected: u32 },
    /// The data directory belongs to another metadata engine.
    #[error("{0}")]
    Elsewhere(String),
    #[error("data directory {0} is in use by another Berth process (stop it, or use --url to ask the running server)")]
    Locked(String),
}

impl StoreError {
    /// A metadata engine error from a message of ours.
    pub fn db(message: impl Into<String>) -> StoreError {
        let m: Box<dyn std::error::Error + Send + Sync> = message.into().into();
        StoreError::Db(Cause::from(m))
    }

    /// A metadata engine error, keeping `cause`.
    pub fn db_from(cause: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Db(Arc::new(cause))
    }

    /// Did the file system run out of room (not a fault of the data)?
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::NoSpace(_))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> StoreError {
        // a bucket that does not answer is a moment's outage, not damage
        if let Some(u) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<super::bodies::Unreachable>())
        {
            return StoreError::Unavailable(u.to_string());
        }
        match out_of_space(&e) {
            true => StoreError::NoSpace(Arc::new(e)),
            false => StoreError::Io(Arc::new(e)),
        }
    }
}

/// ENOSPC, EDQUOT, or EFBIG (a file-size limit).
pub fn out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge
    )
}
