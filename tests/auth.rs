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

fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    let mut text = String::new();
    for u in ["alice", "bob", "carol"] {
        text.push_str(&format!(
            "{u}:{}\n",
            bcrypt::hash(format!("{u}-pw"), 4).unwrap()
        ));
    }
    std::fs::write(&pw, text).unwrap();
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
