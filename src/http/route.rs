//! Parsing request paths: every endpoint Berth serves is named here, so
//! routing, access checks and metrics labels all classify a request by the
//! same function of the same (canonical, see `path`) path.
//!
//! Repository names contain slashes, so a `/v2/...` path is read from its
//! end: the last segment is the reference, the one before it says what kind
//! of resource is meant.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Base,
    Catalog,
    Tags {
        name: &'a str,
    },
    Manifest {
        name: &'a str,
        reference: &'a str,
    },
    Blob {
        name: &'a str,
        digest: &'a str,
    },
    /// `id` is empty for `POST .../blobs/uploads/`.
    Upload {
        name: &'a str,
        id: &'a str,
    },
    Referrers {
        name: &'a str,
        digest: &'a str,
    },
    /// `GET /v2/<name>/_berth/platforms/<reference>`: what a reference offers.
    Platforms {
        name: &'a str,
        reference: &'a str,
    },
    /// `/healthz`: the process is alive.
    Health,
    /// `/readyz`: the store takes a durable write.
    Ready,
    /// `/metrics`: Prometheus text format.
    Metrics,
    /// `/_berth/scrub` (admin).
    Scrub,
    /// `/_berth/gc` (admin).
    Gc,
    /// `/_berth/sync` (admin): run the `[[sync]]` jobs now.
    Sync,
    /// `/_berth/robots` (admin): create and list robot accounts.
    Robots,
    /// `/_berth/robots/<name>` (admin): revoke one.
    Robot {
        name: &'a str,
    },
    /// `/token`: the token endpoint of the Bearer protocol.
    Token,
    /// `/`: browsers are sent to the pages.
    Root,
    /// `/ui/<page>`: the web pages (`page` after `/ui/`).
    Ui {
        page: &'a str,
    },
    NotFound,
}

impl Route<'_> {
    /// A bounded label for metrics: the kind of endpoint, never a name.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifests",
            Route::Blob { .. } => "blobs",
            Route::Upload { .. } => "uploads",
            Route::Referrers { .. } => "referrers",
            Route::Platforms { .. } => "platforms",
            Route::Health | Route::Ready | Route::Metrics => "ops",
            Route::Scrub | Route::Gc | Route::Sync | Route::Robots | Route::Robot { .. } => "admin",
            Route::Token => "token",
            Route::Root | Route::Ui { .. } => "ui",
            Route::NotFound => "other",
        }
    }

    /// The operator endpoints under `/_berth/`, which need an admin.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Route::Scrub | Route::Gc | Route::Sync | Route::Robots | Route::Robot { .. }
        )
    }
}

/// Parse the path of a request.
///
/// ```
/// use berth::http::route::{parse, Route};
/// assert_eq!(parse("/v2/team/app/manifests/v1"), Route::Manifest { name: "team/app", reference: "v1" });
/// assert_eq!(parse("/v2/a/blobs/uploads/"), Route::Upload { name: "a", id: "" });
/// assert_eq!(parse("/_berth/gc"), Route::Gc);
/// assert!(parse("/_berth/gc").is_admin());
/// assert_eq!(parse("/v2/a").label(), "other");
/// ```
pub fn parse(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix("/v2") else {
        return match path {
            "/healthz" => Route::Health,
            "/readyz" => Route::Ready,
            "/metrics" => Route::Metrics,
            "/_berth/scrub" => Route::Scrub,
            "/_berth/gc" => Route::Gc,
            "/_berth/sync" => Route::Sync,
            "/_berth/robots" => Route::Robots,
            "/token" => Route::Token,
            "/" => Route::Root,
            "/ui" => Route::Ui { page: "" },
            p => match (p.strip_prefix("/_berth/robots/"), p.strip_prefix("/ui/")) {
                (Some(name), _) if !name.is_empty() && !name.contains('/') => Route::Robot { name },
                (_, Some(page)) => Route::Ui { page },
                _ => Route::NotFound,
            },
        };
    };
    let rest = match rest {
        "" | "/" => return Route::Base,
        r => match r.strip_prefix('/') {
            Some(r) => r,
            None => return Route::NotFound,
        },
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    // name/tags/list
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags { name };
    }
    // name/blobs/uploads/ and name/blobs/uploads/<id>
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Route::Upload { name, id: "" };
    }
    let Some((head, last)) = rest.rsplit_once('/') else {
        return Route::NotFound;
    };
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Route::Upload { name, id: last };
    }
    if let Some(name) = head.strip_suffix("/_berth/platforms") {
        return Route::Platforms {
            name,
            reference: last,
        };
    }
    let Some((name, kind)) = head.rsplit_once('/') else {
        return Route::NotFound;
    };
    match kind {
        "manifests" => Route::Manifest {
            name,
            reference: last,
        },
        "blobs" => Route::Blob { name, digest: last },
        "referrers" => Route::Referrers { name, digest: last },
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/"), Route::Base);
        assert_eq!(parse("/v2"), Route::Base);
        assert_eq!(parse("/v2/_catalog"), Route::Catalog);
        assert_eq!(parse("/v2/a/b/tags/list"), Route::Tags { name: "a/b" });
        assert_eq!(
            parse("/v2/a/manifests/latest"),
            Route::Manifest {
                name: "a",
                reference: "latest"
            }
        );
        assert_eq!(
            parse("/v2/a/manifests/x/blobs/sha256:1"),
            Route::Blob {
                name: "a/manifests/x",
                digest: "sha256:1"
            }
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/"),
            Route::Upload { name: "a", id: "" }
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/123"),
            Route::Upload {
                name: "a/b",
                id: "123"
            }
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:1"),
            Route::Referrers {
                name: "a",
                digest: "sha256:1"
            }
        );
        assert_eq!(
            parse("/v2/a/b/_berth/platforms/v1"),
            Route::Platforms {
                name: "a/b",
                reference: "v1"
            }
        );
        assert_eq!(parse("/_berth/gc"), Route::Gc);
        assert_eq!(parse("/_berth/scrub"), Route::Scrub);
        assert_eq!(parse("/_berth/sync"), Route::Sync);
        assert!(parse("/_berth/sync").is_admin());
        assert_eq!(parse("/metrics"), Route::Metrics);
        assert_eq!(parse("/token"), Route::Token);
        assert_eq!(parse("/"), Route::Root);
        assert_eq!(parse("/ui/"), Route::Ui { page: "" });
        assert_eq!(parse("/ui/repo/a/b"), Route::Ui { page: "repo/a/b" });
        assert_eq!(parse("/_berth/robots"), Route::Robots);
        assert_eq!(parse("/_berth/robots/ci"), Route::Robot { name: "ci" });
        assert!(parse("/_berth/robots/ci").is_admin());
        assert_eq!(parse("/_berth/robots/"), Route::NotFound);
        assert_eq!(parse("/_berth/gc/"), Route::NotFound);
        assert_eq!(parse("/%5Fberth/gc"), Route::NotFound);
        assert_eq!(parse("/v2/a"), Route::NotFound);
        assert_eq!(parse("/v2x/a/manifests/b"), Route::NotFound);
        assert_eq!(parse("/v2/manifests/x"), Route::NotFound);
    }
}
