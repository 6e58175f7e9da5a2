//! `GET /v2/<name>/_berth/platforms/<reference>`: the platforms a tag or
//! digest offers, each with digest, media type and size.

use actix_web::HttpResponse;
use serde_json::json;

use super::errors::{ApiError, ApiResult};
use super::params;
use super::State;
use crate::oci::{Kind, Reference};
use crate::registry::platforms::offered;
use crate::registry::Error;

pub fn get(state: &State, name: &str, reference: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let reference = Reference::parse(reference)
        .map_err(|e| ApiError::from(Error::ManifestUnknown(e.to_string())))?;
    let m = state
        .store
        .manifest(repo, &reference)?
        .ok_or_else(|| Error::ManifestUnknown(format!("{repo}:{reference}")))?;
    let platforms: Vec<_> = if m.summary.kind == Kind::Index {
        offered(&m.summary)
            .into_iter()
            .map(|(p, d)| json!({"platform": p.to_string(), "detail": p, "digest": d.digest, "mediaType": d.media_type, "size": d.size}))
            .collect()
    } else {
        m.summary
            .platform
            .iter()
            .map(|p| json!({"platform": p.to_string(), "detail": p, "digest": m.digest, "mediaType": m.summary.media_type, "size": m.bytes.len()}))
            .collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "name": repo,
        "reference": reference.to_string(),
        "digest": m.digest,
        "mediaType": m.summary.media_type,
        "platforms": platforms,
    })))
}
