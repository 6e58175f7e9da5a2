//! Every error leaves as the OCI error body
//! `{"errors":[{"code","message","detail"}]}` with the status its code implies.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::registry::Error;
use crate::store::StoreError;

/// An error response: status, OCI code, message, optional detail.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub detail: Box<serde_json::Value>,
    /// Extra headers (e.g. `Range` on a 416 for a chunk out of order).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            detail: Box::new(serde_json::Value::Null),
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Box::new(detail);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint")
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "method not allowed on this endpoint",
        )
    }
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
        r.json(json!({"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use StatusCode as S;
        let (status, code) = match &e {
            Error::BlobUnknown(_) => (S::NOT_FOUND, "BLOB_UNKNOWN"),
            Error::BlobUploadInvalid(_) => (S::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            Error::BlobUploadUnknown(_) => (S::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            Error::DigestInvalid(_) => (S::BAD_REQUEST, "DIGEST_INVALID"),
            Error::ManifestBlobUnknown(_) => (S::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            Error::ManifestInvalid(_) => (S::BAD_REQUEST, "MANIFEST_INVALID"),
            Error::ManifestUnknown(_) => (S::NOT_FOUND, "MANIFEST_UNKNOWN"),
            Error::NameInvalid(_) => (S::BAD_REQUEST, "NAME_INVALID"),
            Error::NameUnknown(_) => (S::NOT_FOUND, "NAME_UNKNOWN"),
            Error::SizeInvalid(_) => (S::BAD_REQUEST, "SIZE_INVALID"),
            Error::Unsupported(_) => (S::BAD_REQUEST, "UNSUPPORTED"),
            Error::RangeInvalid(_) => (S::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            Error::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Error::TooManyRequests(_) => (S::TOO_MANY_REQUESTS, "TOOMANYREQUESTS"),
            Error::Store(se) if se.is_out_of_space() => {
                tracing::error!(error = %se, "store out of space");
                (S::INSUFFICIENT_STORAGE, "UNKNOWN")
            }
            Error::Store(StoreError::Unavailable(_)) => {
                // Distribution's code for a 503; clients retry after the header.
                return ApiError::new(S::SERVICE_UNAVAILABLE, "UNAVAILABLE", e.to_string())
                    .with_header("Retry-After", "1".to_string());
            }
            Error::Store(se) => {
                tracing::error!(error = %se, "store failure");
                (S::INTERNAL_SERVER_ERROR, "UNKNOWN")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        Error::Store(e).into()
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> ApiError {
        Error::from(e).into()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> ApiError {
        ApiError::new(S500, "UNKNOWN", "worker pool unavailable")
    }
}

const S500: StatusCode = StatusCode::INTERNAL_SERVER_ERROR;

pub type ApiResult<T = HttpResponse> = Result<T, ApiError>;
