//! Blob uploads (end-4a/b, end-5, end-6, end-11, end-13, end-14): monolithic
//! POST or POST+PUT, streamed and chunked PATCH, status, cancel, mounts.
//! Bytes are written and hashed as they arrive; nothing is buffered whole.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::web::{self, Payload};
use actix_web::{HttpRequest, HttpResponse};

use super::appender::Appender;
use super::errors::{ApiError, ApiResult};
use super::params::{self, header, Query};
use super::range::parse_content_range;
use super::{body, State};
use crate::oci::{Algorithm, Code, Digest};
use crate::registry::uploads::{Session, Slot, Use};
use crate::registry::Error;

pub async fn dispatch(
    req: HttpRequest,
    payload: Payload,
    state: State,
    name: &str,
    id: &str,
) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    if req.method() != Method::GET {
        state.registry.check_push(&repo)?;
    }
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
                state.registry.clone(),
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
                Code::Unsupported,
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
    let (reg, r, who) = (state.registry.clone(), repo.clone(), owner(req));
    let id = web::block(move || reg.start_upload(&r, alg, &who)).await??;
    match digest {
        // Monolithic upload in one POST: nobody else knows the session, so
        // if the body does not arrive whole it goes at once.
        Some(d) => {
            let mut abandon = Abandon::new(state, &id);
            let s = slot(state, &repo, &id).await?.take().await;
            let (s, received) = receive(s, payload, state, false).await;
            received?;
            finish(state, s, d.clone()).await?;
            abandon.disarm();
            Ok(created(&repo, &d))
        }
        None => {
            let mut r = HttpResponse::Accepted();
            r.insert_header(("Location", location(&repo, &id)))
                .insert_header(("Range", "0-0"))
                .insert_header(("Docker-Upload-UUID", id.clone()));
            if state.config().uploads.chunk_min_length > 0 {
                r.insert_header((
                    "OCI-Chunk-Min-Length",
                    state.config().uploads.chunk_min_length.to_string(),
                ));
            }
            Ok(r.finish())
        }
    }
}

/// Removes a session when dropped armed: the session served one monolithic
/// request (the whole body in one POST or PUT) that did not complete
/// (error, or the client went away and actix dropped the request), so no
/// client can resume it, and its partial file need not wait for expiry.
struct Abandon {
    state: State,
    id: Option<String>,
}

impl Abandon {
    fn new(state: &State, id: &str) -> Abandon {
        Abandon {
            state: state.clone(),
            id: Some(id.to_string()),
        }
    }

    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let reg = self.state.registry.clone();
            actix_web::rt::task::spawn_blocking(move || {
                if let Err(e) = reg.abandon_upload(&id) {
                    tracing::warn!(error = %e, "could not remove an abandoned upload session");
                }
            });
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
    let s = open_session(state, &repo, id).await?;
    check_chunk(req, &s)?;
    // what arrived stays in the session even when the body was cut short
    let (s, received) = receive(s, payload, state, true).await;
    received?;
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
    let digest =
        params::digest(q.get("digest").ok_or_else(|| {
            ApiError::new(Code::DigestInvalid, "the closing PUT needs ?digest=")
        })?)?;
    let s = open_session(state, &repo, id).await?;
    check_chunk(req, &s)?;
    // POST then a PUT with the whole body: as monolithic as one POST
    let mut abandon = (s.offset == 0).then(|| Abandon::new(state, id));
    let (s, received) = receive(s, payload, state, false).await;
    received?;
    finish(state, s, digest.clone()).await?;
    if let Some(a) = &mut abandon {
        a.disarm();
    }
    Ok(created(&repo, &digest))
}

/// Progress of a session; answered at once even while a request is
/// sending it a body.
async fn status(state: &State, repo: &str, id: &str) -> ApiResult {
    let slot = slot(state, repo, id).await?;
    if slot.shared.is_closed() {
        return Err(Error::BlobUploadUnknown(id.to_string()).into());
    }
    let offset = match state.registry.shared_store() {
        // another node may have appended since: the store knows
        true => {
            let (reg, i) = (state.registry.clone(), id.to_string());
            web::block(move || reg.stored_offset(&i))
                .await??
                .ok_or_else(|| Error::BlobUploadUnknown(id.to_string()))?
        }
        false => slot.shared.offset(),
    };
    Ok(HttpResponse::NoContent()
        .insert_header(("Location", location(repo, id)))
        .insert_header(("Range", range_header(offset)))
        .insert_header(("Docker-Upload-UUID", id.to_string()))
        .finish())
}

async fn cancel(state: &State, repo: &str, id: &str) -> ApiResult {
    let mut s = open_session(state, repo, id).await?;
    let reg = state.registry.clone();
    web::block(move || reg.cancel_upload(&mut s)).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// The session `id` of `repo`: at once when this process holds it, else
/// loaded from the store off the async workers (with a shared store, a
/// session another node opened; after a restart, any).
async fn slot(state: &State, repo: &str, id: &str) -> Result<Arc<Slot>, ApiError> {
    if let Some(found) = state.registry.loaded_session(repo, id) {
        return Ok(found?);
    }
    let (reg, r, i) = (state.registry.clone(), repo.to_string(), id.to_string());
    Ok(web::block(move || reg.session(&r, &i)).await??)
}

/// The session `id` of `repo`, held by this request (a request still
/// holding it is made to give it up); unknown once finished or cancelled.
async fn open_session(state: &State, repo: &str, id: &str) -> Result<Use, ApiError> {
    let mut s = slot(state, repo, id).await?.take().await;
    if state.registry.shared_store() {
        let reg = state.registry.clone();
        s = web::block(move || {
            let mut s = s;
            reg.resync(&mut s).map(|()| s)
        })
        .await??;
    }
    if s.is_closed() {
        return Err(Error::BlobUploadUnknown(id.to_string()).into());
    }
    Ok(s)
}

/// Append the request body to the session, hashing as it arrives (see
/// [`Appender`] for where). A body that stalls (see `body::Paced`) ends the
/// request with 408; what arrived before stays in the session, and its
/// status reports it. `settle`: end by making what arrived readable by
/// every node (a PATCH), even when the body broke off.
async fn receive(
    s: Use,
    mut payload: Payload,
    state: &State,
    settle: bool,
) -> (Use, Result<(), ApiError>) {
    let shared = s.shared().clone();
    let max = state.config().limits.max_blob_bytes;
    let mut to = Appender::new(s, max, state.registry.shared_store(), settle);
    let mut body = body::Paced::new(&mut payload, state.config().limits.body_idle_timeout_secs);
    let read = loop {
        let next = tokio::select! {
            biased;
            () = shared.wanted() => {
                break Err(ApiError::from(Error::BlobUploadInvalid(
                    "another request took over this upload session".into(),
                )));
            }
            next = body.next() => next,
        };
        match next.map_err(|e| e.for_code(Code::BlobUploadInvalid)) {
            Err(e) => break Err(e),
            Ok(None) => break Ok(()),
            Ok(Some(piece)) => {
                if !to.push(piece).await {
                    break Ok(()); // appending failed: its error comes from `end`
                }
            }
        }
    };
    let (s, written) = to.end().await;
    (s, written.and(read))
}

/// Verify and commit off the async workers (hashing a rebuilt session,
/// fsync, rename, database commit).
async fn finish(state: &State, mut s: Use, digest: Digest) -> Result<(), ApiError> {
    let reg = state.registry.clone();
    web::block(move || reg.finish_upload(&mut s, &digest)).await??;
    Ok(())
}

/// Who a session belongs to, for the per-user session limit: the
/// authenticated user, or the client address when anonymous.
fn owner(req: &HttpRequest) -> String {
    let ext = actix_web::HttpMessage::extensions(req);
    match ext.get::<crate::auth::Caller>().and_then(|c| c.name()) {
        Some(u) => u.to_string(),
        None => format!(
            "anonymous@{}",
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    }
}
