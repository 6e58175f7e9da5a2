//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>` (end-3, end-7, end-9).

use actix_web::http::Method;
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::params::{self, header, Query};
use super::{body, offload, State};
use crate::oci::name::{self, ReferenceError};
use crate::oci::{media, Code, Platform, Reference};
use crate::registry::manifests::Want;

/// Manifests up to this size are checked on the async worker.
const CHECK_INLINE_MAX: usize = 64 * 1024;

/// A tag that cannot exist is unknown when read (404) and invalid when pushed (400).
fn reference(s: &str, pushing: bool) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        ReferenceError::Digest(d) => params::digest_error(d),
        ReferenceError::Invalid(_) if pushing => {
            ApiError::new(Code::ManifestInvalid, e.to_string())
        }
        ReferenceError::Invalid(_) => ApiError::new(Code::ManifestUnknown, e.to_string()),
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
        Method::GET | Method::HEAD => get(&req, &state, &repo, &reference).await,
        Method::PUT => {
            state.registry.check_push(&repo)?;
            put(&req, payload, &state, repo, reference).await
        }
        Method::DELETE => {
            state.registry.check_push(&repo)?;
            delete(&state, repo, reference).await
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

async fn get(req: &HttpRequest, state: &State, repo: &str, reference: &Reference) -> ApiResult {
    let q = Query::of(req);
    let platform = match q.get("platform") {
        None => None,
        Some(p) => Some(Platform::parse(p).ok_or_else(|| {
            ApiError::new(
                Code::Unsupported,
                format!("'{p}' is not a platform (os/arch[/variant])"),
            )
        })?),
    };
    let want = Want {
        platform,
        user_agent: header(req, "User-Agent").map(str::to_string),
        accept: accepted(req),
    };
    let (r, reference) = (repo.to_string(), reference.clone());
    let m = offload::read(state, repo, move |reg| {
        reg.pull_manifest(&r, &reference, &want)
    })
    .await?;
    let mut r = HttpResponse::Ok();
    r.content_type(m.summary.media_type.as_str())
        .insert_header(("Docker-Content-Digest", m.digest.to_string()))
        .insert_header(("ETag", format!("\"{}\"", m.digest)));
    if req.method() == Method::HEAD {
        return Ok(r.body(body::HeadBody(m.bytes.len() as u64)));
    }
    Ok(r.body(m.bytes))
}

/// The media types the request's `Accept` headers name.
fn accepted(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all("Accept")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| media::essence(t).to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn put(
    req: &HttpRequest,
    payload: Payload,
    state: &State,
    repo: String,
    reference: Reference,
) -> ApiResult {
    let limits = &state.config().limits;
    let limit = limits.max_manifest_bytes;
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
                Code::ManifestInvalid,
                format!("'{t}' is not a valid tag"),
            ));
        }
        tags.push(t.to_string());
    }
    let bytes = body::read_limited(
        payload,
        limit,
        limits.body_idle_timeout_secs,
        Code::ManifestInvalid,
    )
    .await?;
    let content_type = header(req, "Content-Type").unwrap_or("").to_string();
    let tagged_by_query = !tags.is_empty();
    // Parsing and hashing a small manifest takes microseconds: done here. A
    // large one (up to the limit's megabytes) goes to the blocking pool so
    // it does not stall this worker's other connections.
    let (push, prepared) = if bytes.len() <= CHECK_INLINE_MAX {
        state
            .registry
            .prepare_manifest(&repo, &reference, &content_type, bytes, tags)?
    } else {
        let (reg, repo) = (state.registry.clone(), repo.clone());
        web::block(move || reg.prepare_manifest(&repo, &reference, &content_type, bytes, tags))
            .await??
    };
    let pushed = state.registry.commit_manifest(push, prepared).await?;
    let mut r = HttpResponse::Created();
    r.insert_header((
        "Location",
        format!("/v2/{repo}/manifests/{}", pushed.digest),
    ))
    .insert_header(("Docker-Content-Digest", pushed.digest.to_string()));
    if let Some(s) = &pushed.subject {
        r.insert_header(("OCI-Subject", s.to_string()));
    }
    // what each tag holds now: the pushed manifest, or a merged index
    for (tag, d) in &pushed.tag_digests {
        r.append_header(("Berth-Tag-Digest", format!("{tag}={d}")));
    }
    if tagged_by_query {
        for t in &pushed.tags {
            r.append_header(("OCI-Tag", t.as_str()));
        }
    }
    Ok(r.finish())
}

async fn delete(state: &State, repo: String, reference: Reference) -> ApiResult {
    let reg = state.registry.clone();
    web::block(move || reg.delete_manifest(&repo, &reference)).await??;
    Ok(HttpResponse::Accepted().finish())
}
