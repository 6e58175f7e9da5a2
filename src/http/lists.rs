//! Paginated lists: tags (end-8a/b) and the catalog, with `n`, `last` and
//! `Link: <...>; rel="next"`.

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use serde_json::json;

use super::errors::ApiResult;
use super::params::{self, Query};
use super::{offload, State};
use crate::auth::{Action, Caller};
use crate::registry::lists::Page;

pub async fn tags(req: &HttpRequest, state: &State, name: &str) -> ApiResult {
    let repo = params::repo(name)?;
    let q = Query::of(req);
    let n = params::page_size(&q, state.config().limits.max_page)?;
    let last = q.get("last").map(str::to_string);
    let r = repo.to_string();
    let page = offload::read(state, repo, move |reg| reg.tags(&r, last.as_deref(), n)).await?;
    let mut r = HttpResponse::Ok();
    link(&mut r, &format!("/v2/{repo}/tags/list"), n, &page);
    Ok(r.json(json!({"name": repo, "tags": page.entries})))
}

pub async fn catalog(req: &HttpRequest, state: &State) -> ApiResult {
    let q = Query::of(req);
    let n = params::page_size(&q, state.config().limits.max_page)?;
    let last = q.get("last").map(str::to_string);
    // With authentication on, only what the caller may pull is listed.
    let who = req.extensions().get::<Caller>().cloned();
    let page = offload::read(state, "", move |reg| {
        let cfg = reg.config();
        let visible = |repo: &str| match (cfg.auth_on(), &who) {
            (false, _) => true,
            (true, Some(w)) => cfg.auth.may(w, repo, Action::Pull),
            (true, None) => false,
        };
        reg.catalog(last.as_deref(), n, &visible)
    })
    .await?;
    let mut r = HttpResponse::Ok();
    link(&mut r, "/v2/_catalog", n, &page);
    Ok(r.json(json!({"repositories": page.entries})))
}

/// `Link` to the next page, when there is one.
fn link(r: &mut actix_web::HttpResponseBuilder, path: &str, n: usize, page: &Page) {
    let Some(last) = page.entries.last().filter(|_| page.more) else {
        return;
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    r.insert_header(("Link", format!("<{path}?{q}>; rel=\"next\"")));
}
