#![warn(missing_docs)]
//! Every error leaves as the OCI error body
//! `{"errors":[{"code","message","detail"}]}`, with the status its
//! [`Code`] goes with, or one of the few others this file names.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::oci::Code;
use crate::registry::Error;

/// An error response: status, OCI code, message, detail, extra headers.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OCI error code.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
    /// What it is about, for programs (digests, names, sizes).
    pub detail: Box<serde_json::Value>,
    /// Extra headers (e.g. `Range` on a 416 for a chunk out of order).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with `code` and the status it goes with.
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status(code.status()),
            code,
            message: message.into(),
            detail: Box::new(serde_json::Value::Null),
            headers: Vec::new(),
        }
    }

    /// The same code with another status (413, 408, 405, 507: see `oci::code`).
    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// With this `detail`.
    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Box::new(detail);
        self
    }

    /// With an extra header.
    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// A path that names no endpoint.
    pub fn not_found() -> ApiError {
        ApiError::new(Code::NameUnknown, "no such endpoint")
    }

    /// An endpoint that does not take this method.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(Code::Unsupported, "method not allowed on this endpoint")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        for (k, v) in &self.headers {
            r.insert_header((*k, v.as_str()));
        }
        r.insert_header(("Docker-Distribution-API-Version", "registry/2.0"));
        r.json(json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": self.detail}]}))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let mut api = ApiError::new(e.code(), e.to_string()).with_detail(e.detail());
        match e {
            Error::TooLarge { .. } => api.status = StatusCode::PAYLOAD_TOO_LARGE,
            // the namespace takes no pushes at all, whoever asks
            Error::ReadOnly { .. } => api.status = StatusCode::METHOD_NOT_ALLOWED,
            _ => {}
        }
        if e.out_of_space() {
            api.status = StatusCode::INSUFFICIENT_STORAGE;
        }
        // clients retry after the header
        if let Some(secs) = e.retry_after() {
            api = api.with_header("Retry-After", secs.to_string());
        } else if e.is_fault() {
            tracing::error!(error = %e, "store failure");
        }
        api
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        Error::from(e).into()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> ApiError {
        ApiError::new(Code::Unknown, "worker pool unavailable")
    }
}

/// What a handler returns.
pub type ApiResult<T = HttpResponse> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, Reference};

    fn digest() -> Digest {
        format!("sha256:{}", "a".repeat(64)).parse().unwrap()
    }

    /// Registry errors get their code's status, typed detail, and the few
    /// statuses this file overrides.
    #[test]
    fn registry_errors_map_to_codes_statuses_and_detail() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let cases = [
            (Error::BlobUnknown(digest()), 404, Code::BlobUnknown),
            (Error::BlobDamaged(digest()), 404, Code::BlobUnknown),
            (
                Error::ManifestChildUnknown(digest()),
                400,
                Code::ManifestBlobUnknown,
            ),
            (
                Error::ManifestUnknown {
                    repo: "a".into(),
                    reference: Reference::Tag("t".into()),
                },
                404,
                Code::ManifestUnknown,
            ),
            (Error::RangeInvalid("x".into()), 416, Code::RangeInvalid),
            (
                Error::TooLarge {
                    what: "blobs",
                    limit: 9,
                },
                413,
                Code::SizeInvalid,
            ),
            (Error::from(full), 507, Code::Unknown),
            (Error::from(std::io::Error::other("x")), 500, Code::Unknown),
        ];
        for (e, status, code) in cases {
            let what = e.to_string();
            let a = ApiError::from(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code), "{what}");
        }
        let a = ApiError::from(Error::DescriptorSize {
            digest: digest(),
            declared: 5,
            stored: 3_000_000,
        });
        assert_eq!(a.detail["declared"], 5);
        assert_eq!(a.detail["stored"], 3_000_000);
        assert_eq!(a.detail["digest"], digest().to_string());
    }
}
