//! `GET /v2/<name>/referrers/<digest>` (end-12a/b): always an OCI index.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::errors::ApiResult;
use super::params::{self, Query};
use super::{offload, State};
use crate::oci::media;

pub async fn get(req: &HttpRequest, state: &State, name: &str, digest: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let subject = params::digest(digest)?;
    let q = Query::of(req);
    let filter = q.get("artifactType");
    let (r, f) = (repo.to_string(), filter.map(str::to_string));
    let list = offload::read(state, repo, move |reg| {
        reg.referrers(&r, &subject, f.as_deref())
    })
    .await?;
    let mut r = HttpResponse::Ok();
    if filter.is_some() {
        r.insert_header(("OCI-Filters-Applied", "artifactType"));
    }
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": list});
    Ok(r.content_type(media::OCI_INDEX).body(body.to_string()))
}
