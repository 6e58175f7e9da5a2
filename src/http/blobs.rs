//! `GET|HEAD|DELETE /v2/<name>/blobs/<digest>` (end-2, end-10).

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::{ApiError, ApiResult};
use super::params::{self, header};
use super::range::{parse_range, RangeError};
use super::{body, State};
use crate::registry::Error;

pub async fn get(req: &HttpRequest, state: &State, name: &str, digest: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let digest = params::digest(digest)?;
    let store = state.store.clone();
    let info = store
        .blob(repo, &digest)?
        .ok_or_else(|| Error::BlobUnknown(digest.to_string()))?;
    // A damaged blob is unknown until a push repairs it: clients that check
    // with HEAD before pushing then upload it again.
    if store.is_damaged(&digest)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!(
                "blob {digest} failed verification on this registry; push it again to repair it"
            ),
        ));
    }
    let file = store.open_blob(&digest, &info)?;
    let mut r = HttpResponse::Ok();
    r.insert_header(("Docker-Content-Digest", digest.to_string()))
        .insert_header(("Accept-Ranges", "bytes"))
        .insert_header(("ETag", format!("\"{digest}\"")))
        .content_type("application/octet-stream");
    let (start, len) = match header(req, "Range").map(|v| parse_range(v, info.size)) {
        None | Some(Err(RangeError::Malformed)) => (0, info.size),
        Some(Err(RangeError::Unsatisfiable)) => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BLOB_UNKNOWN",
                format!("range not satisfiable for a blob of {} bytes", info.size),
            )
            .with_header("Content-Range", format!("bytes */{}", info.size)));
        }
        Some(Ok(range)) => {
            r.status(StatusCode::PARTIAL_CONTENT);
            r.insert_header((
                "Content-Range",
                format!("bytes {}-{}/{}", range.start, range.end, info.size),
            ));
            (range.start, range.len())
        }
    };
    if req.method() == Method::HEAD {
        return Ok(r.body(body::HeadBody(len)));
    }
    let hashes = match state.config.verify.on_read {
        true => store.blob_blocks(&digest)?,
        false => None,
    };
    let Some(hashes) = hashes else {
        return Ok(r
            .no_chunking(len)
            .streaming(body::file_stream(file, start, len)));
    };
    let (store, d, reg) = (store.clone(), digest.clone(), state.clone());
    let on_corrupt = Box::new(move |block: u64| {
        reg.metrics.corrupt_reads.inc();
        tracing::error!(digest = %d, block, "corrupt blob block caught on read; transfer aborted, blob marked damaged");
        let (store, d) = (store.clone(), d.clone());
        std::thread::spawn(move || {
            if let Err(e) =
                store.mark_damaged(&d, &format!("block {block} failed verification on read"))
            {
                tracing::error!(error = %e, "could not mark blob damaged");
            }
        });
    });
    Ok(r.no_chunking(len).streaming(body::verified_stream(
        file, info.size, start, len, hashes, on_corrupt,
    )))
}

pub async fn delete(state: &State, name: &str, digest: &str) -> ApiResult {
    let repo = params::repo(name)?.to_string();
    let digest = params::digest(digest)?;
    let store = state.store.clone();
    let d = digest.clone();
    if !web::block(move || store.unlink_blob(&repo, &d)).await?? {
        return Err(Error::BlobUnknown(digest.to_string()).into());
    }
    Ok(HttpResponse::Accepted().finish())
}
