//! Paginated lists: tags (end-8a/b) and the catalog, with `n`, `last` and
//! `Link: <...>; rel="next"`.

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use serde_json::json;

use super::errors::ApiResult;
use super::params::{self, Query};
use super::State;
use crate::auth::{Action, Identity};
use crate::registry::Error;

pub fn tags(req: &HttpRequest, state: &State, name: &str) -> ApiResult {
    let repo = params::repo(name)?;
    if !state.store.repo_exists(repo)? {
        return Err(Error::NameUnknown(repo.to_string()).into());
    }
    let q = Query::of(req);
    let n = params::page_size(&q, state.config.limits.max_page)?;
    // One more than asked tells whether a next page exists.
    let mut tags = state.store.tags(repo, q.get("last"), n.saturating_add(1))?;
    let more = tags.len() > n;
    tags.truncate(n);
    let mut r = HttpResponse::Ok();
    if more {
        if let Some(last) = tags.last() {
            r.insert_header(("Link", next_link(&format!("/v2/{repo}/tags/list"), n, last)));
        }
    }
    Ok(r.json(json!({"name": repo, "tags": tags})))
}

pub fn catalog(req: &HttpRequest, state: &State) -> ApiResult {
    let q = Query::of(req);
    let n = params::page_size(&q, state.config.limits.max_page)?;
    // With authentication on, only what the caller may pull is listed.
    let who = req.extensions().get::<Identity>().cloned();
    let visible = |repo: &str| match (state.auth_on(), &who) {
        (false, _) => true,
        (true, Some(w)) => state.config.auth.may(w, repo, Action::Pull),
        (true, None) => false,
    };
    let mut repos = Vec::new();
    let mut last = q.get("last").map(str::to_string);
    // One more than asked tells whether a next page exists.
    while repos.len() <= n {
        let batch = state.store.repositories(last.as_deref(), 1000)?;
        let Some(end) = batch.last().cloned() else {
            break;
        };
        repos.extend(batch.into_iter().filter(|r| visible(r)));
        last = Some(end);
    }
    let more = repos.len() > n;
    repos.truncate(n);
    let mut r = HttpResponse::Ok();
    if more {
        if let Some(last) = repos.last() {
            r.insert_header(("Link", next_link("/v2/_catalog", n, last)));
        }
    }
    Ok(r.json(json!({"repositories": repos})))
}

fn next_link(path: &str, n: usize, last: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("n", &n.to_string())
        .append_pair("last", last)
        .finish();
    format!("<{path}?{q}>; rel=\"next\"")
}
