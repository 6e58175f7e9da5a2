//! `GET /v2/<name>/_berth/platforms/<reference>`: the platforms a tag or
//! digest offers, each with digest, media type and size.

use actix_web::HttpResponse;

use super::errors::{ApiError, ApiResult};
use super::params;
use super::State;
use crate::oci::{Code, Reference};

pub async fn get(state: &State, name: &str, reference: &str) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    let reference = Reference::parse(reference)
        .map_err(|e| ApiError::new(Code::ManifestUnknown, e.to_string()))?;
    let reg = state.registry.clone();
    // may ask an upstream (mirrored namespaces): off the async worker
    let body = actix_web::web::block(move || reg.platforms(&repo, &reference)).await??;
    Ok(HttpResponse::Ok().json(body))
}
