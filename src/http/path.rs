//! One canonical path per request, before anything looks at it.
//!
//! Clients may percent-encode any character of a path (`/%5Fberth/gc` is
//! `/_berth/gc`). If the access check read the raw path while routing read
//! a decoded one, an encoded path would be routed to an endpoint that the
//! check had classified as something else. So the path is decoded once,
//! here, the request's URI is rewritten to the result, and routing, access
//! checks, metrics and logs all see that one path. Names, tags and digests
//! use only a few ASCII characters; a path that decodes to anything outside
//! the URI's path characters (control bytes, spaces, `%`, `?`, `#`, bytes
//! that are not UTF-8) is refused with 400 before routing.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;
use actix_web::ResponseError;

use super::errors::ApiError;
use crate::oci::Code;

/// The canonical form of `raw`: percent-escapes decoded. None when the
/// result holds a character that no path Berth serves may contain.
pub fn canonical(raw: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?;
    decoded.bytes().all(path_char).then(|| decoded.into_owned())
}

/// `/` and the characters RFC 3986 allows in a path segment, less `%`.
fn path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b)
}

/// containerd's mirror requests name the registry they stand in for in
/// `?ns=` (`/v2/library/alpine/manifests/3?ns=docker.io`): when an
/// upstream serves that host, the path is the one of its namespace
/// (`/v2/hub/library/alpine/manifests/3`). A path already in that
/// namespace (containerd's `override_path = true` onto `/v2/hub`) is left
/// as it is.
pub fn mirrored_path(
    path: &str,
    ns: &str,
    upstreams: &[crate::config::UpstreamConfig],
) -> Option<String> {
    let up = upstreams.iter().find(|u| u.hosts.iter().any(|h| h == ns))?;
    let rest = path.strip_prefix("/v2/")?;
    if rest.is_empty() || rest.starts_with("_catalog") {
        return None;
    }
    if rest
        .strip_prefix(up.name.as_str())
        .is_some_and(|r| r.starts_with('/'))
    {
        return None;
    }
    Some(format!("/v2/{}/{rest}", up.name))
}

/// Middleware: rewrite the request's path to its canonical form (and to
/// its mirror namespace, see [`mirrored_path`]), or refuse.
pub async fn canonicalise(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let Some(path) = namespaced(&req) {
        set_path(&mut req, path);
    }
    if req.path().contains('%') {
        let Some(path) = canonical(req.path()) else {
            let e = ApiError::new(
                Code::NameInvalid,
                "the request path decodes to characters no name, tag or digest uses",
            );
            return Ok(req.into_response(e.error_response()));
        };
        if !set_path(&mut req, path) {
            let e = ApiError::new(Code::NameInvalid, "malformed path");
            return Ok(req.into_response(e.error_response()));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The mirror namespace's path for a request with `?ns=`, if any.
fn namespaced(req: &ServiceRequest) -> Option<String> {
    let query = req.query_string();
    if !query.contains("ns=") {
        return None;
    }
    let state = req.app_data::<super::State>()?;
    let upstreams = &state.config().upstreams;
    let ns = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "ns")?
        .1;
    mirrored_path(req.path(), &ns, upstreams)
}

/// Point the request at `path` (the query kept); false if that is no URI.
fn set_path(req: &mut ServiceRequest, path: String) -> bool {
    let path_and_query = match req.query_string() {
        "" => path,
        q => format!("{path}?{q}"),
    };
    let Ok(uri) = path_and_query.parse::<Uri>() else {
        return false;
    };
    req.head_mut().uri = uri.clone();
    req.match_info_mut().get_mut().update(&uri);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_maps_into_the_namespace_once() {
        let up: crate::config::UpstreamConfig =
            toml::from_str("name = \"hub\"\nurl = \"http://u\"\nhosts = [\"docker.io\"]").unwrap();
        let ups = [up];
        let m = |p: &str, ns: &str| mirrored_path(p, ns, &ups);
        assert_eq!(
            m("/v2/library/alpine/manifests/3", "docker.io").as_deref(),
            Some("/v2/hub/library/alpine/manifests/3")
        );
        // override_path onto /v2/hub: already there
        assert_eq!(m("/v2/hub/library/alpine/manifests/3", "docker.io"), None);
        assert_eq!(
            m("/v2/hubble/x/manifests/3", "docker.io").as_deref(),
            Some("/v2/hub/hubble/x/manifests/3")
        );
        assert_eq!(m("/v2/library/alpine/manifests/3", "quay.io"), None);
        assert_eq!(m("/v2/_catalog", "docker.io"), None);
    }

    #[test]
    fn decodes_once_and_refuses_what_names_never_hold() {
        assert_eq!(canonical("/%5Fberth/gc").as_deref(), Some("/_berth/gc"));
        assert_eq!(
            canonical("/_%62erth/scrub").as_deref(),
            Some("/_berth/scrub")
        );
        assert_eq!(
            canonical("/v2/a/blobs/sha256%3Aab").as_deref(),
            Some("/v2/a/blobs/sha256:ab")
        );
        // decoded once: %25 is a literal '%', which no path holds
        assert_eq!(canonical("/%255Fberth/gc"), None);
        for bad in [
            "/v2/%00",
            "/v2/a%0Ab",
            "/v2/%ff%fe",
            "/v2/a%20b",
            "/v2/a%3Fb",
            "/v2/a%23",
        ] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }
}
