//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>` (end-2, end-10).

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::params::{self, header};
use super::range::{parse_range, RangeError};
use super::{body, offload, State};
use crate::oci::Digest;
use crate::registry::blobs::Served;
use crate::registry::fetch::Arriving;
use crate::registry::Error;

pub async fn get(req: &HttpRequest, state: &State, name: &str, digest: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let digest = params::digest(digest)?;
    let head = req.method() == Method::HEAD;
    if head && state.registry.is_mirrored(repo) {
        // may ask the upstream: off the async worker
        let (reg, r, d) = (state.registry.clone(), repo.to_string(), digest.clone());
        let size = web::block(move || reg.blob_size(&r, &d)).await??;
        return Ok(headers(&mut HttpResponse::Ok(), &digest).body(body::HeadBody(size)));
    }
    if !head && state.config().storage.s3.redirect {
        // presigning is local, but whether the repository holds the blob
        // is a metadata read (PostgreSQL)
        let (r, d) = (repo.to_string(), digest.clone());
        if let Some(url) = offload::read(state, repo, move |reg| reg.blob_redirect(&r, &d)).await? {
            return Ok(HttpResponse::TemporaryRedirect()
                .insert_header(("Location", url))
                .insert_header(("Docker-Content-Digest", digest.to_string()))
                .finish());
        }
    }
    let (r, d) = (repo.to_string(), digest.clone());
    let served = offload::read(state, repo, move |reg| match head {
        // HEAD: opened without its block hashes
        true => reg.stat_blob(&r, &d).map(Served::Stored),
        false => reg.serve_blob(&r, &d),
    });
    let blob = match served.await? {
        Served::Stored(b) => b,
        Served::Arriving(a) if header(req, "Range").is_none() => return arriving(a, &digest).await,
        // a range of a blob not here yet: once it is, from the store
        Served::Arriving(mut a) => {
            a.finished().await?;
            let (r, d) = (repo.to_string(), digest.clone());
            offload::read(state, repo, move |reg| reg.open_blob(&r, &d)).await?
        }
    };
    let size = blob.size;
    let mut r = HttpResponse::Ok();
    headers(&mut r, &digest);
    let (start, len) = match header(req, "Range").map(|v| parse_range(v, size)) {
        None | Some(Err(RangeError::Malformed)) => (0, size),
        Some(Err(RangeError::Unsatisfiable)) => {
            return Err(ApiError::from(Error::RangeInvalid(format!(
                "range not satisfiable for a blob of {size} bytes"
            )))
            .with_header("Content-Range", format!("bytes */{size}")));
        }
        Some(Ok(range)) => {
            r.status(StatusCode::PARTIAL_CONTENT);
            r.insert_header((
                "Content-Range",
                format!("bytes {}-{}/{size}", range.start, range.end),
            ));
            (range.start, range.len())
        }
    };
    if head {
        return Ok(r.body(body::HeadBody(len)));
    }
    let remote = blob.remote;
    let r = r.no_chunking(len);
    Ok(match blob.into_reader() {
        // checked where the bucket's bytes arrive, no thread of its own
        Ok(reader) if reader.streams() => r.streaming(reader.streamed(start, len)),
        Ok(reader) if remote => {
            r.streaming(body::off_workers(body::verified_stream(reader, start, len)))
        }
        // from memory, vouched for: at once, on the worker
        Ok(reader) if reader.vouched_for() => {
            r.streaming(body::verified_stream(reader, start, len))
        }
        // hashed, likely read from the disk
        Ok(reader) => r.streaming(body::hashing(body::verified_stream(reader, start, len))),
        Err(file) if remote => r.streaming(body::off_workers(body::file_stream(file, start, len))),
        Err(file) => r.streaming(body::file_stream(file, start, len)),
    })
}

/// The headers of every blob answer.
fn headers<'r>(
    r: &'r mut actix_web::HttpResponseBuilder,
    digest: &Digest,
) -> &'r mut actix_web::HttpResponseBuilder {
    r.insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("ETag", format!("\"{digest}\"")))
        .content_type("application/octet-stream")
}

/// A blob streamed as it arrives from an upstream.
async fn arriving(mut a: Arriving, digest: &Digest) -> ApiResult {
    let size = a.size().await?;
    let mut r = HttpResponse::Ok();
    headers(&mut r, digest);
    Ok(match size {
        Some(n) => r.no_chunking(n).streaming(a.stream()),
        None => r.streaming(a.stream()),
    })
}

pub async fn delete(state: &State, name: &str, digest: &str) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    state.registry.check_push(&repo)?;
    let digest = params::digest(digest)?;
    let reg = state.registry.clone();
    web::block(move || reg.delete_blob(&repo, &digest)).await??;
    Ok(HttpResponse::Accepted().finish())
}
