//! The web pages under `/ui/`: repositories (searchable, paged), a
//! repository's tags and platform matrix, an image (config, layers,
//! children, referrers, pull commands), the platform matrix across
//! repositories, and storage and health for admins. Rendered on the
//! server (`render`); everything a page loads comes from this binary
//! (`static/`), so the pages work on an air-gapped box. The access rules
//! apply: a repository the caller may not pull does not exist here.

mod render;
pub mod session;

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use minijinja::context;
use serde::Serialize;

use super::State;
use crate::auth::{Action, Caller};
use crate::oci::Digest;

/// Rows on one page.
const PAGE: usize = 100;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Answer `GET /ui/<page>`.
pub async fn serve(req: HttpRequest, state: State, page: String) -> HttpResponse {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous);
    let q = super::params::Query::of(&req);
    let (text, after) = (
        q.get("q").unwrap_or("").to_string(),
        q.get("after").map(str::to_string),
    );
    let view = View::new(&req, &state, caller);
    let reg = state.registry.clone();
    let answer = match page.as_str() {
        "static/berth.css" => return asset("text/css", include_str!("static/berth.css")),
        "static/berth.js" => return asset("text/javascript", include_str!("static/berth.js")),
        "login" => return view.login_page(StatusCode::OK, None),
        "" | "/" => {
            let v = view.clone();
            web::block(move || v.repos(&reg, &text, after.as_deref())).await
        }
        "platforms" => {
            let v = view.clone();
            web::block(move || v.platforms(&reg, &text, after.as_deref())).await
        }
        "admin" => {
            let v = view.clone();
            web::block(move || v.admin(&reg)).await
        }
        p => match (p.strip_prefix("repo/"), p.strip_prefix("image/")) {
            (Some(repo), _) => {
                let (v, repo) = (view.clone(), repo.to_string());
                web::block(move || v.repo(&reg, &repo, after.as_deref())).await
            }
            (_, Some(r)) => {
                let (v, r) = (view.clone(), r.to_string());
                web::block(move || v.image(&reg, &r)).await
            }
            _ => Ok(Err((StatusCode::NOT_FOUND, "no such page".into()))),
        },
    };
    match answer {
        Ok(Ok(html)) => html_response(StatusCode::OK, html),
        Ok(Err((status, message))) => view.error(status, &message),
        Err(e) => view.error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

fn html_response(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header(("Cache-Control", "no-store"))
        .body(html)
}

type Page = Result<String, (StatusCode, String)>;

/// What every page knows: who asks, what they may, where they came from.
#[derive(Clone)]
struct View {
    caller: Caller,
    auth_on: bool,
    admin: bool,
    /// The server's state (its access rules).
    state: State,
    /// `host[:port]` of `auth.external_url`, else the one the client used,
    /// for pull commands.
    host: String,
    /// Logged in through a page session (so a logout button is shown).
    session: bool,
    plain_http: bool,
}

#[derive(Serialize)]
struct MatrixRow {
    repo: String,
    tag: String,
    digest: String,
    platforms: Vec<String>,
}

impl View {
    fn new(req: &HttpRequest, state: &State, caller: Caller) -> View {
        let cfg = state.config();
        let info = req.connection_info();
        let external = cfg.auth.external_url.trim_end_matches('/');
        let (host, plain_http) = match external.split_once("://") {
            Some((scheme, host)) if !host.is_empty() => (host.to_string(), scheme == "http"),
            _ => (info.host().to_string(), info.scheme() == "http"),
        };
        View {
            session: session_id(req).is_some_and(|id| state.ui_sessions.get(&id).is_some()),
            admin: !cfg.auth_on() || cfg.auth.is_admin(&caller),
            auth_on: cfg.auth_on(),
            state: state.clone(),
            caller,
            host,
            plain_http,
        }
    }

    fn may_pull(&self, repo: &str) -> bool {
        !self.auth_on
            || self
                .state
                .config()
                .auth
                .may(&self.caller, repo, Action::Pull)
    }

    fn base(&self) -> minijinja::Value {
        context! { user => self.caller.name(), admin => self.admin, session => self.session }
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Page {
        render::page(name, context! { ..self.base(), ..ctx })
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
    }

    fn error(&self, status: StatusCode, message: &str) -> HttpResponse {
        let html = render::page(
            "error.html",
            context! { ..self.base(), ..context! { status => status.as_u16(), message } },
        )
        .unwrap_or_else(|e| e);
        html_response(status, html)
    }

    /// The login form (or, logged in already, back to the repositories).
    fn login_page(&self, status: StatusCode, message: Option<&str>) -> HttpResponse {
        if self.caller.name().is_some() || !self.auth_on {
            return see_other("/ui/");
        }
        match self.render("login.html", context! { message }) {
            Ok(html) => html_response(status, html),
            Err((s, m)) => self.error(s, &m),
        }
    }

    fn not_found() -> (StatusCode, String) {
        (
            StatusCode::NOT_FOUND,
            "No such repository or image here (or you may not see it).".into(),
        )
    }

    fn repos(&self, reg: &crate::registry::Registry, q: &str, after: Option<&str>) -> Page {
        let visible = |r: &str| self.may_pull(r);
        let (repos, more) = reg
            .browse_repos(q, after, PAGE, &visible)
            .map_err(unavailable)?;
        let next = more.then(|| repos.last().map(|r| r.name.clone())).flatten();
        self.render("repos.html", context! { repos, q, next })
    }

    fn repo(&self, reg: &crate::registry::Registry, repo: &str, after: Option<&str>) -> Page {
        if !self.may_pull(repo) {
            return Err(View::not_found());
        }
        let (tags, next) = reg
            .browse_tags(repo, after, PAGE * 5)
            .map_err(unavailable)?;
        if tags.is_empty() && after.is_none() {
            return Err(View::not_found());
        }
        let platforms: BTreeSet<&String> = tags.iter().flat_map(|t| &t.platforms).collect();
        let platforms: Vec<String> = platforms.into_iter().cloned().collect();
        self.render("repo.html", context! { repo, tags, platforms, next })
    }

    fn image(&self, reg: &crate::registry::Registry, r: &str) -> Page {
        let Some((repo, digest)) = r.rsplit_once('@') else {
            return Err(View::not_found());
        };
        let digest: Digest = digest.parse().map_err(|_| View::not_found())?;
        if !self.may_pull(repo) {
            return Err(View::not_found());
        }
        let image = reg
            .browse_image(repo, &digest)
            .map_err(|e| match e.code() {
                crate::oci::Code::Unavailable | crate::oci::Code::Unknown => unavailable(e),
                _ => View::not_found(),
            })?;
        let pulls = self.pulls(repo, &image);
        self.render("image.html", context! { repo, image, pulls })
    }

    /// Pull commands for docker, podman and containerd, per platform.
    fn pulls(&self, repo: &str, image: &crate::registry::browse::ImageView) -> Vec<String> {
        let reference = match image.tags.first() {
            Some(t) => format!("{}/{repo}:{t}", self.host),
            None => format!("{}/{repo}@{}", self.host, image.digest),
        };
        let mut platforms: Vec<Option<String>> = image
            .children
            .iter()
            .map(|c| Some(c.platform.clone()))
            .collect();
        if platforms.is_empty() {
            platforms.push(image.platform.clone());
        }
        let (plain, tls) = match self.plain_http {
            true => (" --plain-http", " --tls-verify=false"),
            false => ("", ""),
        };
        let mut out = Vec::new();
        for p in platforms {
            let flag = p.map(|p| format!(" --platform {p}")).unwrap_or_default();
            out.push(format!("docker pull{flag} {reference}"));
            out.push(format!("podman pull{tls}{flag} {reference}"));
            out.push(format!("ctr images pull{plain}{flag} {reference}"));
        }
        out
    }

    fn platforms(&self, reg: &crate::registry::Registry, q: &str, after: Option<&str>) -> Page {
        let visible = |r: &str| self.may_pull(r);
        let (repos, more) = reg
            .browse_repos(q, after, PAGE / 4, &visible)
            .map_err(unavailable)?;
        let mut rows = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in &repos {
            let (tags, _) = reg.browse_tags(&r.name, None, PAGE).map_err(unavailable)?;
            for t in tags.into_iter().filter(|t| !t.platforms.is_empty()) {
                for p in &t.platforms {
                    *counts.entry(p.clone()).or_default() += 1;
                }
                rows.push(MatrixRow {
                    repo: r.name.clone(),
                    tag: t.tag,
                    digest: t.digest,
                    platforms: t.platforms,
                });
            }
        }
        let platforms: Vec<&String> = counts.keys().collect();
        let next = more.then(|| repos.last().map(|r| r.name.clone())).flatten();
        self.render(
            "platforms.html",
            context! { rows, platforms, counts, q, next },
        )
    }

    fn admin(&self, reg: &std::sync::Arc<crate::registry::Registry>) -> Page {
        if self.auth_on && !self.admin {
            return Err((
                StatusCode::FORBIDDEN,
                "Storage and health are for admins.".into(),
            ));
        }
        let figures = reg.figures_recent().map_err(unavailable)?;
        let damage = reg.damage().map_err(unavailable)?;
        let (gc_at, gc) = match reg.last_gc() {
            Some((at, o)) => (at, Some(o.gc)),
            None => (0, None),
        };
        let scrub = reg.last_scrub();
        let sync = reg.last_sync().jobs;
        self.render(
            "admin.html",
            context! { figures, damage, gc, gc_at, scrub, sync },
        )
    }
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", to))
        .finish()
}

/// The page session a request's cookie names.
pub fn session_id(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("Cookie")?.to_str().ok()?;
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == session::COOKIE && !v.is_empty()).then(|| v.to_string())
    })
}

/// `POST /ui/login` (form: `user`, `password`; checked, throttled and
/// audited as any login) and `POST /ui/logout`.
pub async fn post(req: HttpRequest, state: State, page: String, body: web::Bytes) -> HttpResponse {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous);
    let view = View::new(&req, &state, caller);
    let secure = req.connection_info().scheme() == "https";
    let cookie = |value: &str, max_age: i64| {
        format!(
            "{}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
            session::COOKIE,
            if secure { "; Secure" } else { "" }
        )
    };
    match page.as_str() {
        "login" => {
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let field = |k: &str| {
                form.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let (user, password) = (field("user"), field("password"));
            match super::login::login(&state, &req, &user, &password).await {
                Ok(c) => {
                    let id = state.ui_sessions.open(c);
                    let mut r = see_other("/ui/");
                    r.headers_mut().insert(
                        actix_web::http::header::SET_COOKIE,
                        actix_web::http::header::HeaderValue::from_str(&cookie(&id, 8 * 3600))
                            .expect("a cookie"),
                    );
                    r
                }
                // the form again, with why (a 200: a page, not an API answer)
                Err(super::login::Refusal::Invalid) => {
                    view.login_page(StatusCode::OK, Some("Wrong user name or password."))
                }
                Err(super::login::Refusal::Throttled(secs)) => view.login_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(&format!("Too many failed logins; try again in {secs} s.")),
                ),
                Err(super::login::Refusal::Unavailable(why)) => view.login_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some(&format!("Logins cannot be checked now: {why}")),
                ),
            }
        }
        "logout" => {
            if let Some(id) = session_id(&req) {
                state.ui_sessions.close(&id);
            }
            let mut r = see_other("/ui/");
            r.headers_mut().insert(
                actix_web::http::header::SET_COOKIE,
                actix_web::http::header::HeaderValue::from_str(&cookie("", 0)).expect("a cookie"),
            );
            r
        }
        _ => view.error(StatusCode::METHOD_NOT_ALLOWED, "not a form"),
    }
}

fn unavailable(e: crate::registry::Error) -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}
