//! `GET /v2/<name>/_berth/platforms/<reference>`: the platforms a tag or
//! digest offers, each with digest, media type and size.

use actix_web::HttpResponse;

use super::errors::{ApiError, ApiResult};
use super::params;
use super::State;
use crate::oci::{Code, Reference};

pub fn get(state: &State, name: &str, reference: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let reference = Reference::parse(reference)
        .map_err(|e| ApiError::new(Code::ManifestUnknown, e.to_string()))?;
    Ok(HttpResponse::Ok().json(state.registry.platforms(repo, &reference)?))
}
