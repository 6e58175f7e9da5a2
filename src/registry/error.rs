//! Errors of registry operations. Each maps to one OCI error code; the HTTP
//! layer picks the status.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry: {0}")]
    BlobUploadUnknown(String),
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown to registry: {0}")]
    ManifestUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// A chunk out of order, or a Range that cannot be satisfied.
    #[error("requested range not satisfiable: {0}")]
    RangeInvalid(String),
    /// Content over a configured limit.
    #[error("content too large: {0}")]
    TooLarge(String),
    /// A per-client limit reached (open upload sessions).
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Store(StoreError::Io(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
