//! Authentication and per-repository access against the real server.

mod common;

use base64::Engine;
use common::{sha256, Client, Server};

fn basic(user: &str, pw: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    )
}

/// An htpasswd file in a new directory where each user's password is
/// `<user>-pw`.
fn htpasswd(users: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let mut text = String::new();
    for u in users {
        text.push_str(&format!(
            "{u}:{}\n",
            bcrypt::hash(format!("{u}-pw"), 4).unwrap()
        ));
    }
    std::fs::write(&pw, text).unwrap();
    (dir, pw)
}

fn server() -> (Server, tempfile::TempDir) {
    let (dir, pw) = htpasswd(&["alice", "bob", "carol"]);
    let cfg = format!(
        r#"
[auth]
htpasswd = "{}"
anonymous_pull = ["public/*"]
admins = ["alice"]
[auth.groups]
readers = ["bob"]
[[auth.rules]]
repos = "team/*"
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repos = "team/*"
groups = ["readers"]
actions = ["pull"]
"#,
        pw.display()
    );
    (Server::start_with_config(&cfg), dir)
}

fn as_user(c: &Client, user: &str, method: &str, path: &str, body: &[u8]) -> common::Resp {
    let auth = basic(user, &format!("{user}-pw"));
    c.req(method, path, &[("Authorization", &auth)], body)
}

fn push_blob_as(c: &Client, user: &str, repo: &str, data: &[u8]) -> u16 {
    as_user(
        c,
        user,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
        data,
    )
    .status
}

#[test]
fn access_rules_end_to_end() {
    let (s, _dir) = server();
    let c = Client::new(&s);
    // anonymous: 401 with a Basic challenge, also on /v2/
    let r = c.req(
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(b"x")),
        &[],
        b"x",
    );
    assert_eq!((r.status, r.error_code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Berth\""));
    assert_eq!(c.get("/v2/").status, 401);
    assert_eq!(as_user(&c, "bob", "GET", "/v2/", b"").status, 200);
    // wrong password: 401
    let r = c.req(
        "GET",
        "/v2/",
        &[("Authorization", &basic("alice", "nope"))],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = c.req(
        "GET",
        "/v2/",
        &[("Authorization", &basic("mallory", "x"))],
        b"",
    );
    assert_eq!(r.status, 401);
    // right password, no push right: 403 DENIED
    let r = as_user(
        &c,
        "bob",
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(b"x")),
        b"x",
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "DENIED"));
    // alice pushes; bob (group readers) pulls; carol may not
    assert_eq!(push_blob_as(&c, "alice", "team/app", b"secret layer"), 201);
    let path = format!("/v2/team/app/blobs/{}", sha256(b"secret layer"));
    assert_eq!(as_user(&c, "bob", "GET", &path, b"").status, 200);
    assert_eq!(as_user(&c, "carol", "GET", &path, b"").status, 403);
    assert_eq!(c.get(&path).status, 401);
    // anonymous pull only where configured
    assert_eq!(push_blob_as(&c, "alice", "public/base", b"open layer"), 201);
    assert_eq!(
        c.get(&format!("/v2/public/base/blobs/{}", sha256(b"open layer")))
            .status,
        200
    );
    // a mount from a repository the user cannot pull is refused
    let r = as_user(
        &c,
        "carol",
        "POST",
        &format!(
            "/v2/carol/blobs/uploads/?mount={}&from=team/app",
            sha256(b"secret layer")
        ),
        b"",
    );
    assert_eq!(r.status, 403);
    // ... and automatic mount is off with authentication on
    let r = as_user(
        &c,
        "carol",
        "POST",
        &format!("/v2/carol/blobs/uploads/?mount={}", sha256(b"secret layer")),
        b"",
    );
    assert_eq!(r.status, 202);
    // the catalog lists only what the caller may pull
    assert_eq!(push_blob_as(&c, "carol", "misc", b"carol's"), 201);
    let carol = as_user(&c, "carol", "GET", "/v2/_catalog", b"").json();
    assert_eq!(
        carol["repositories"],
        serde_json::json!(["misc", "public/base"])
    );
    let alice = as_user(&c, "alice", "GET", "/v2/_catalog", b"").json();
    assert_eq!(
        alice["repositories"],
        serde_json::json!(["misc", "public/base", "team/app"])
    );
    assert_eq!(
        c.get("/v2/_catalog").json()["repositories"],
        serde_json::json!(["public/base"])
    );
    // health stays open; admin endpoints need an admin
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(as_user(&c, "bob", "POST", "/_berth/gc", b"").status, 403);
    assert_eq!(
        as_user(&c, "alice", "POST", "/_berth/gc?dry_run=true", b"").status,
        200
    );
}

/// Percent-encoded paths are the same paths: `/%5Fberth/gc` is `/_berth/gc`
/// for the access check as for routing, so it needs an admin (it ran GC for
/// anyone before), and metrics count it under its real route.
#[test]
fn percent_encoded_admin_paths_need_an_admin() {
    let (s, _dir) = server();
    let c = Client::new(&s);
    let encoded = [
        ("POST", "/%5Fberth/gc?dry_run=true"),
        ("POST", "/%5fberth/gc?dry_run=true"),
        ("POST", "/_%62erth/gc?dry_run=true"),
        ("POST", "/_%62erth/scrub"),
        ("GET", "/%5F%62%65rth/scrub"),
        ("POST", "/_berth%2Fgc?dry_run=true"),
    ];
    for (method, path) in encoded {
        let r = c.req(method, path, &[], b"");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (401, "UNAUTHORIZED"),
            "anonymous {method} {path}: {}",
            r.text()
        );
        assert_eq!(
            as_user(&c, "bob", method, path, b"").status,
            403,
            "bob {path}"
        );
    }
    // an admin reaches them, encoded or not
    for path in ["/%5Fberth/gc?dry_run=true", "/_berth/gc?dry_run=true"] {
        let r = as_user(&c, "alice", "POST", path, b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["dry_run"], true);
    }
    // repository paths decode the same way: team/app by any spelling
    assert_eq!(push_blob_as(&c, "alice", "team/app", b"secret"), 201);
    let d = sha256(b"secret");
    for path in [
        format!("/v2/team/%61pp/blobs/{d}"),
        format!("/v2/team%2Fapp/blobs/{d}"),
        format!("/v2/team/app/blobs/{}", d.replace(':', "%3A")),
    ] {
        assert_eq!(c.get(&path).status, 401, "{path}");
        assert_eq!(
            as_user(&c, "carol", "GET", &path, b"").status,
            403,
            "{path}"
        );
        let r = as_user(&c, "bob", "GET", &path, b"");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"secret"[..]),
            "{path}"
        );
    }
    // what no name, tag or digest holds is refused before routing
    for path in [
        "/v2/a%00b/tags/list",
        "/v2/a%0Ab/tags/list",
        "/v2/%25/tags/list",
    ] {
        let r = as_user(&c, "alice", "GET", path, b"");
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "NAME_INVALID"),
            "{path}"
        );
    }
    let m = as_user(&c, "alice", "GET", "/metrics", b"").text();
    let admin_posts: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("berth_http_requests_total{")
                && l.contains("route=\"admin\"")
                && l.contains("method=\"POST\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // 5 POSTs x (anonymous, bob) + 2 by alice
    assert_eq!(admin_posts, 12.0, "{m}");
}

/// A logged-in user may always pull what anonymous clients may, even where
/// a rule for other users matches the repository.
#[test]
fn logging_in_takes_no_right_away() {
    let (_dir, pw) = htpasswd(&["alice", "ops"]);
    let s = Server::start_with_config(&format!(
        "[auth]\nhtpasswd = \"{}\"\nanonymous_pull = [\"public/*\"]\n[[auth.rules]]\nrepos = \"public/*\"\nusers = [\"ops\"]\nactions = [\"pull\", \"push\"]\n",
        pw.display()
    ));
    let c = Client::new(&s);
    let d = sha256(b"open");
    let r = as_user(
        &c,
        "ops",
        "POST",
        &format!("/v2/public/pub/blobs/uploads/?digest={d}"),
        b"open",
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let path = format!("/v2/public/pub/blobs/{d}");
    assert_eq!(c.get(&path).status, 200, "anonymous");
    assert_eq!(as_user(&c, "alice", "GET", &path, b"").status, 200, "alice");
    // ... but only pull
    let r = as_user(
        &c,
        "alice",
        "POST",
        &format!("/v2/public/pub/blobs/uploads/?digest={d}"),
        b"open",
    );
    assert_eq!(r.status, 403);
    let cat = as_user(&c, "alice", "GET", "/v2/_catalog", b"").json();
    assert_eq!(cat["repositories"], serde_json::json!(["public/pub"]));
}

/// Password guessing: after a few failures an address is refused with 429
/// and Retry-After before any password is checked, while a valid user from
/// another address is served; a user guessed at from many addresses is
/// refused from unknown addresses only. Both are counted.
#[test]
fn password_guessing_is_throttled() {
    let (s, _dir) = server();
    let p = s.port;
    let login = |src: &str, user: &str, pw: &str| {
        let auth = basic(user, pw);
        common::request_from(src, p, "GET", "/v2/", &[("Authorization", &auth)], b"")
    };
    // bob logs in from his machine first
    assert_eq!(login("127.0.0.2", "bob", "bob-pw").status, 200);
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(login("127.0.0.9", "alice", &format!("guess{i}")).status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    let r = login("127.0.0.9", "alice", "alice-pw");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (429, "TOOMANYREQUESTS")
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    // the right password from elsewhere is not slowed
    assert_eq!(login("127.0.0.3", "alice", "alice-pw").status, 200);
    assert_eq!(login("127.0.0.2", "bob", "bob-pw").status, 200);
    // bob guessed at from many addresses: refused from new ones only
    for i in 0..10 {
        let r = login(&format!("127.0.1.{}", i + 1), "bob", "nope");
        assert_eq!(r.status, 401, "guess {i}");
    }
    assert_eq!(
        login("127.0.2.1", "bob", "bob-pw").status,
        429,
        "unknown address"
    );
    assert_eq!(
        login("127.0.0.2", "bob", "bob-pw").status,
        200,
        "bob's machine"
    );
    assert_eq!(
        login("127.0.2.1", "carol", "carol-pw").status,
        200,
        "other users"
    );
    let m = as_user(&Client::new(&s), "carol", "GET", "/metrics", b"").text();
    let value = |name: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("berth_failed_logins_total"), 15.0, "{m}");
    assert_eq!(value("berth_throttled_logins_total"), 9.0, "{m}");
}

/// `/metrics` can be kept for admins.
#[test]
fn metrics_can_need_an_admin() {
    let (_dir, pw) = htpasswd(&["alice", "bob"]);
    let s = Server::start_with_config(&format!(
        "[auth]\nhtpasswd = \"{}\"\nadmins = [\"alice\"]\n[metrics]\nadmin_only = true\n",
        pw.display()
    ));
    let c = Client::new(&s);
    assert_eq!(c.get("/metrics").status, 401);
    assert_eq!(c.get("/%6Detrics").status, 401);
    assert_eq!(as_user(&c, "bob", "GET", "/metrics", b"").status, 403);
    let r = as_user(&c, "alice", "GET", "/metrics", b"");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("berth_http_requests_total"));
    assert_eq!(c.get("/healthz").status, 200);
}
