//! Blob uploads (end-4a/b, end-5, end-6, end-11, end-13, end-14): monolithic
//! POST or POST+PUT, streamed and chunked PATCH, status, cancel, mounts.
//! Bytes are written and hashed as they arrive; nothing is buffered whole.

use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::errors::{ApiError, ApiResult};
use super::params::{self, header, Query};
use super::range::parse_content_range;
use super::{body, State};
use crate::oci::{Algorithm, Digest};
use crate::registry::uploads::Session;
use crate::registry::Error;
use tokio::sync::OwnedMutexGuard;

pub async fn dispatch(
    req: HttpRequest,
    payload: Payload,
    state: State,
    name: &str,
    id: &str,
) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    match (req.method().clone(), id) {
        (Method::POST, "") => post(&req, payload, &state, repo).await,
        (_, "") => Err(ApiError::method_not_allowed()),
        (Method::PATCH, id) => patch(&req, payload, &state, repo, id).await,
        (Method::PUT, id) => put(&req, payload, &state, repo, id).await,
        (Method::GET, id) => status(&state, &repo, id).await,
        (Method::DELETE, id) => cancel(&state, &repo, id).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn location(repo: &str, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>` as uploads report progress.
fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn accepted(repo: &str, s: &Session) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header(("Location", location(repo, &s.id)))
        .insert_header(("Range", range_header(s.offset)))
        .insert_header(("Docker-Upload-UUID", s.id.clone()))
        .finish()
}

fn created(repo: &str, digest: &Digest) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(("Location", format!("/v2/{repo}/blobs/{digest}")))
        .insert_header(("Docker-Content-Digest", digest.to_string()))
        .finish()
}

async fn post(req: &HttpRequest, payload: Payload, state: &State, repo: String) -> ApiResult {
    let q = Query::of(req);
    if let Some(mount) = q.get("mount") {
        // An invalid mount digest is not fatal: fall back to a new session.
        if let Ok(d) = mount.parse::<Digest>() {
            let (reg, r, from, d2) = (
                state.clone(),
                repo.clone(),
                q.get("from").map(str::to_string),
                d.clone(),
            );
            if web::block(move || reg.mount(&r, &d2, from.as_deref())).await?? {
                return Ok(created(&repo, &d));
            }
        }
    }
    let alg = match q.get("digest-algorithm") {
        None => None,
        Some(a) => Some(Algorithm::from_name(a).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                format!("digest algorithm '{a}' is not supported (use sha256, sha512 or blake3)"),
            )
        })?),
    };
    let digest = q.get("digest").map(params::digest).transpose()?;
    let alg = digest
        .as_ref()
        .map(|d| d.algorithm())
        .or(alg)
        .unwrap_or(Algorithm::Sha256);
    let (reg, r, who) = (state.clone(), repo.clone(), owner(req));
    let id = web::block(move || reg.start_upload(&r, alg, &who)).await??;
    let session = state.session(&repo, &id)?;
    let mut s = session.lock_owned().await;
    match digest {
        // Monolithic upload in one POST.
        Some(d) => {
            if let Err(e) = receive(&mut s, payload, state).await {
                let reg = state.clone();
                let _ = web::block(move || reg.cancel_upload(&mut s)).await;
                return Err(e);
            }
            finish(state, s, d.clone()).await?;
            Ok(created(&repo, &d))
        }
        None => {
            let mut r = HttpResponse::Accepted();
            r.insert_header(("Location", location(&repo, &id)))
                .insert_header(("Range", "0-0"))
                .insert_header(("Docker-Upload-UUID", id.clone()));
            if state.config.uploads.chunk_min_length > 0 {
                r.insert_header((
                    "OCI-Chunk-Min-Length",
                    state.config.uploads.chunk_min_length.to_string(),
                ));
            }
            Ok(r.finish())
        }
    }
}

/// Check a chunk's `Content-Range`/`Content-Length` against the session.
fn check_chunk(req: &HttpRequest, s: &Session) -> Result<(), ApiError> {
    let Some(v) = header(req, "Content-Range") else {
        return Ok(());
    };
    let out_of_order = |msg: String| {
        ApiError::from(Error::RangeInvalid(msg))
            .with_header("Location", location(&s.repo, &s.id))
            .with_header("Range", range_header(s.offset))
    };
    let range = parse_content_range(v)
        .ok_or_else(|| out_of_order(format!("Content-Range '{v}' is malformed")))?;
    if range.start != s.offset {
        return Err(out_of_order(format!(
            "chunk starts at {}, the upload has {} bytes",
            range.start, s.offset
        )));
    }
    if let Some(len) = header(req, "Content-Length").and_then(|l| l.parse::<u64>().ok()) {
        if len != range.len() {
            return Err(ApiError::from(Error::SizeInvalid(format!(
                "Content-Range spans {} bytes, Content-Length says {len}",
                range.len()
            ))));
        }
    }
    Ok(())
}

async fn patch(
    req: &HttpRequest,
    payload: Payload,
    state: &State,
    repo: String,
    id: &str,
) -> ApiResult {
    let mut s = open_session(state, &repo, id).await?;
    check_chunk(req, &s)?;
    receive(&mut s, payload, state).await?;
    Ok(accepted(&repo, &s))
}

async fn put(
    req: &HttpRequest,
    payload: Payload,
    state: &State,
    repo: String,
    id: &str,
) -> ApiResult {
    let q = Query::of(req);
    let digest = params::digest(q.get("digest").ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "the closing PUT needs ?digest=",
        )
    })?)?;
    let mut s = open_session(state, &repo, id).await?;
    check_chunk(req, &s)?;
    receive(&mut s, payload, state).await?;
    finish(state, s, digest.clone()).await?;
    Ok(created(&repo, &digest))
}

async fn status(state: &State, repo: &str, id: &str) -> ApiResult {
    let s = open_session(state, repo, id).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("Location", location(repo, id)))
        .insert_header(("Range", range_header(s.offset)))
        .insert_header(("Docker-Upload-UUID", id.to_string()))
        .finish())
}

async fn cancel(state: &State, repo: &str, id: &str) -> ApiResult {
    let mut s = open_session(state, repo, id).await?;
    let reg = state.clone();
    web::block(move || reg.cancel_upload(&mut s)).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// The session `id` of `repo`, locked for this request (waits while another
/// request uses it); unknown once finished or cancelled.
async fn open_session(
    state: &State,
    repo: &str,
    id: &str,
) -> Result<OwnedMutexGuard<Session>, ApiError> {
    let s = state.session(repo, id)?.lock_owned().await;
    if s.is_closed() {
        return Err(Error::BlobUploadUnknown(id.to_string()).into());
    }
    Ok(s)
}

/// Append the request body to the session, hashing as it arrives.
async fn receive(s: &mut Session, mut payload: Payload, state: &State) -> Result<(), ApiError> {
    let max = state.config.limits.max_blob_bytes;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(body::payload_error)?;
        if max > 0 && s.offset + chunk.len() as u64 > max {
            return Err(Error::TooLarge(format!("blobs are limited to {max} bytes")).into());
        }
        s.append(&chunk)?;
    }
    Ok(())
}

/// Verify and commit off the async workers (hashing a rebuilt session,
/// fsync, rename, database commit).
async fn finish(
    state: &State,
    mut s: OwnedMutexGuard<Session>,
    digest: Digest,
) -> Result<(), ApiError> {
    let reg = state.clone();
    web::block(move || reg.finish_upload(&mut s, &digest)).await??;
    Ok(())
}

/// Who a session belongs to, for the per-user session limit: the
/// authenticated user, or the client address when anonymous.
fn owner(req: &HttpRequest) -> String {
    match actix_web::HttpMessage::extensions(req).get::<crate::auth::Identity>() {
        Some(crate::auth::Identity::User(u)) => u.clone(),
        _ => format!(
            "anonymous@{}",
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    }
}
