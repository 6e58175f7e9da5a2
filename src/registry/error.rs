//! Errors of registry operations. Each names its OCI error code
//! ([`Error::code`]) and carries what it is about as typed values, which
//! the HTTP layer sends as the error's `detail` ([`Error::detail`]).

use serde_json::{json, Value};

use crate::oci::{Code, Digest, Reference};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// Found corrupt (on read, or by a scrub): unknown until a push of the
    /// same bytes repairs it, so clients that check before pushing push it.
    #[error("blob {0} failed verification on this registry; push it again to repair it")]
    BlobDamaged(Digest),
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// The session id.
    #[error("blob upload unknown to registry: {0}")]
    BlobUploadUnknown(String),
    #[error("provided digest did not match uploaded content: the content has digest {got}, expected {expected}")]
    DigestMismatch { expected: Digest, got: Digest },
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(Digest),
    #[error("manifest references a manifest unknown to the repository: child {0} of the index")]
    ManifestChildUnknown(Digest),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest invalid: descriptor of {digest} says {declared} bytes, the registry holds {stored}")]
    DescriptorSize {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
    #[error("manifest unknown to registry: {repo}:{reference}")]
    ManifestUnknown { repo: String, reference: Reference },
    /// A manifest kept in a file no longer hashes to its digest.
    #[error("manifest unknown to registry: {0} failed verification on this registry; push it again to repair it")]
    ManifestDamaged(Digest),
    /// An index has no child for the platform a client needs.
    #[error("manifest unknown to registry: {repo}:{reference} has no manifest for the requested platform; it offers {}", offered.join(", "))]
    NoPlatform {
        repo: String,
        reference: Reference,
        offered: Vec<String>,
    },
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
    #[error("content too large: {what} are limited to {limit} bytes")]
    TooLarge { what: &'static str, limit: u64 },
    /// A limit on open upload sessions reached.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// An upstream could not give what was not cached (unreachable,
    /// failing, or content that fails its digest).
    #[error("not cached here, and upstream {upstream} cannot give it: {reason}")]
    Upstream { upstream: String, reason: String },
    /// A push into a mirrored namespace.
    #[error("{repo} is a read-only mirror of {upstream}")]
    ReadOnly { repo: String, upstream: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The OCI error code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            Error::BlobUnknown(_) | Error::BlobDamaged(_) => Code::BlobUnknown,
            Error::BlobUploadInvalid(_) => Code::BlobUploadInvalid,
            Error::BlobUploadUnknown(_) => Code::BlobUploadUnknown,
            Error::DigestMismatch { .. } => Code::DigestInvalid,
            Error::ManifestBlobUnknown(_) | Error::ManifestChildUnknown(_) => {
                Code::ManifestBlobUnknown
            }
            Error::ManifestInvalid(_) | Error::DescriptorSize { .. } => Code::ManifestInvalid,
            Error::ManifestUnknown { .. }
            | Error::ManifestDamaged(_)
            | Error::NoPlatform { .. } => Code::ManifestUnknown,
            Error::NameUnknown(_) => Code::NameUnknown,
            Error::SizeInvalid(_) | Error::TooLarge { .. } => Code::SizeInvalid,
            Error::Unsupported(_) => Code::Unsupported,
            Error::RangeInvalid(_) => Code::RangeInvalid,
            Error::TooManyRequests(_) => Code::TooManyRequests,
            Error::Upstream { .. } => Code::Unavailable,
            Error::ReadOnly { .. } => Code::Denied,
            Error::Store(StoreError::Unavailable(_)) => Code::Unavailable,
            Error::Store(_) => Code::Unknown,
        }
    }

    /// What the error is about, as the `detail` of its error body.
    pub fn detail(&self) -> Value {
        match self {
            Error::BlobUnknown(d)
            | Error::BlobDamaged(d)
            | Error::ManifestBlobUnknown(d)
            | Error::ManifestChildUnknown(d)
            | Error::ManifestDamaged(d) => json!({ "digest": d }),
            Error::DigestMismatch { expected, got } => json!({ "expected": expected, "got": got }),
            Error::DescriptorSize {
                digest,
                declared,
                stored,
            } => json!({ "digest": digest, "declared": declared, "stored": stored }),
            Error::ManifestUnknown { repo, reference } => {
                json!({ "name": repo, "reference": reference.to_string() })
            }
            Error::NoPlatform { offered, .. } => json!({ "platforms": offered }),
            Error::NameUnknown(repo) => json!({ "name": repo }),
            Error::TooLarge { limit, .. } => json!({ "limit": limit }),
            Error::Upstream { upstream, .. } => json!({ "upstream": upstream }),
            Error::ReadOnly { upstream, .. } => json!({ "upstream": upstream }),
            _ => Value::Null,
        }
    }
}

impl Error {
    /// The file system ran out of room (disk full, quota, size limit): not a
    /// fault of the data, and answered as such (507).
    pub fn out_of_space(&self) -> bool {
        matches!(self, Error::Store(s) if s.is_out_of_space())
    }

    /// Seconds after which the same request may succeed (writes refused
    /// for a moment after one failed).
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, Error::Store(StoreError::Unavailable(_))).then_some(1)
    }

    /// A fault of the registry rather than of the request (to log).
    pub fn is_fault(&self) -> bool {
        matches!(self, Error::Store(_))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Store(StoreError::from(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_faults_classify() {
        let busy = Error::Store(StoreError::Unavailable("a write failed".into()));
        assert_eq!(
            (busy.code(), busy.retry_after()),
            (Code::Unavailable, Some(1))
        );
        let full = Error::from(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(full.out_of_space() && full.is_fault());
        assert_eq!(full.code(), Code::Unknown);
        let gone = Error::ManifestDamaged(format!("sha256:{}", "b".repeat(64)).parse().unwrap());
        assert!(!gone.is_fault() && gone.retry_after().is_none());
        assert_eq!(gone.code(), Code::ManifestUnknown);
    }
}
