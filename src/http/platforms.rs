//! `GET /v2/<name>/_berth/platforms/<reference>`: the platforms a tag or
//! digest offers, each with digest, media type and size.

use actix_web::HttpResponse;

use super::errors::{ApiError, ApiResult};
use super::params;
use super::State;
use crate::oci::Reference;
use crate::registry::platforms::describe;
use crate::registry::Error;

pub fn get(state: &State, name: &str, reference: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let reference = Reference::parse(reference)
        .map_err(|e| ApiError::from(Error::ManifestUnknown(e.to_string())))?;
    let body = describe(&state.store, repo, &reference)?
        .ok_or_else(|| Error::ManifestUnknown(format!("{repo}:{reference}")))?;
    Ok(HttpResponse::Ok().json(body))
}
