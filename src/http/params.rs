//! Validating what a request names: repository, digest, query parameters.

use actix_web::HttpRequest;

use super::errors::ApiError;
use crate::oci::{name, Code, Digest, DigestError};

/// The query string as (key, value) pairs, percent-decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of(req: &HttpRequest) -> Query {
        Query(
            form_urlencoded::parse(req.query_string().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Is `key` switched on (`=true` or `=1`)?
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v == "true" || v == "1")
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn repo(name: &str) -> Result<&str, ApiError> {
    if name::is_valid_name(name) {
        Ok(name)
    } else {
        Err(ApiError::new(
            Code::NameInvalid,
            format!("'{}' is not a valid repository name", name.escape_default()),
        ))
    }
}

pub fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(digest_error)
}

pub fn digest_error(e: DigestError) -> ApiError {
    let code = match e {
        DigestError::Unsupported(_) => Code::Unsupported,
        _ => Code::DigestInvalid,
    };
    ApiError::new(code, e.to_string())
}

/// A header as text, if present and valid UTF-8.
pub fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Parse `n` of a list request: absent -> `max`, otherwise at most `max`.
pub fn page_size(q: &Query, max: usize) -> Result<usize, ApiError> {
    match q.get("n") {
        None | Some("") => Ok(max),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| ApiError::new(Code::Unsupported, format!("n={v} is not a number"))),
    }
}
