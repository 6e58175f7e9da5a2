//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9).

use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::params::{self, header, Query};
use super::{body, State};
use crate::oci::name::{self, ReferenceError};
use crate::oci::Reference;
use crate::registry::Error;

/// A tag that cannot exist is unknown when read (404) and invalid when pushed (400).
fn reference(s: &str, pushing: bool) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        ReferenceError::Digest(d) => params::digest_error(d),
        ReferenceError::Invalid(_) if pushing => {
            ApiError::new(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", e.to_string())
        }
        ReferenceError::Invalid(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", e.to_string())
        }
    })
}

pub async fn dispatch(
    req: HttpRequest,
    payload: Payload,
    state: State,
    name: &str,
    reference: &str,
) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    let reference = self::reference(reference, req.method() == Method::PUT)?;
    match *req.method() {
        Method::GET | Method::HEAD => get(&req, &state, &repo, &reference),
        Method::PUT => put(&req, payload, &state, repo, reference).await,
        Method::DELETE => delete(&state, repo, reference).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn get(req: &HttpRequest, state: &State, repo: &str, reference: &Reference) -> ApiResult {
    let m = state
        .store
        .manifest(repo, reference)?
        .ok_or_else(|| Error::ManifestUnknown(format!("{repo}:{reference}")))?;
    let mut r = HttpResponse::Ok();
    r.content_type(m.summary.media_type.as_str())
        .insert_header(("Docker-Content-Digest", m.digest.to_string()))
        .insert_header(("ETag", format!("\"{}\"", m.digest)));
    if req.method() == Method::HEAD {
        return Ok(r.body(body::HeadBody(m.bytes.len() as u64)));
    }
    Ok(r.body(m.bytes))
}

async fn put(
    req: &HttpRequest,
    payload: Payload,
    state: &State,
    repo: String,
    reference: Reference,
) -> ApiResult {
    let limit = state.config.limits.max_manifest_bytes;
    if let Some(len) = header(req, "Content-Length").and_then(|l| l.parse::<u64>().ok()) {
        if len > limit as u64 {
            return Err(body::too_large(limit));
        }
    }
    let q = Query::of(req);
    let mut tags = Vec::new();
    for t in q.all("tag") {
        if !name::is_valid_tag(t) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "MANIFEST_INVALID",
                format!("'{t}' is not a valid tag"),
            ));
        }
        tags.push(t.to_string());
    }
    let bytes = body::read_limited(payload, limit).await?;
    let content_type = header(req, "Content-Type").unwrap_or("").to_string();
    let reg = state.clone();
    let (r2, tagged_by_query) = (repo.clone(), !tags.is_empty());
    let pushed = web::block(move || reg.put_manifest(&r2, &reference, &content_type, &bytes, tags))
        .await??;
    let mut r = HttpResponse::Created();
    r.insert_header((
        "Location",
        format!("/v2/{repo}/manifests/{}", pushed.digest),
    ))
    .insert_header(("Docker-Content-Digest", pushed.digest.to_string()));
    if let Some(s) = &pushed.subject {
        r.insert_header(("OCI-Subject", s.to_string()));
    }
    if tagged_by_query {
        for t in &pushed.tags {
            r.append_header(("OCI-Tag", t.as_str()));
        }
    }
    Ok(r.finish())
}

async fn delete(state: &State, repo: String, reference: Reference) -> ApiResult {
    let store = state.store.clone();
    let r = reference.clone();
    let found = web::block(move || match &r {
        Reference::Digest(d) => store.delete_manifest(&repo, d),
        Reference::Tag(t) => store.delete_tag(&repo, t),
    })
    .await??;
    if !found {
        return Err(Error::ManifestUnknown(reference.to_string()).into());
    }
    Ok(HttpResponse::Accepted().finish())
}
