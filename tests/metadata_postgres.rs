//! The PostgreSQL metadata engine, against a real PostgreSQL 15 started by
//! the test: pushes and pulls with the metadata there, a kill -9 of Berth
//! loses nothing acknowledged, PostgreSQL going away answers 503 with
//! Retry-After and service resumes without a Berth restart, and two Berth
//! processes sharing the database (and a blob directory) merge 8
//! concurrent single-platform pushes to one tag without losing one.

mod common;

use common::platforms::env_refs;
use common::postgres::Postgres;
use common::{bytes, sha256, Client, Server, OCI_MANIFEST};
use serde_json::json;

#[test]
fn pushes_live_in_postgres_through_kill9_and_a_database_restart() {
    let Some(pg) = Postgres::start() else { return };
    let env = pg.env();
    let mut s = Server::start_with_env(&env_refs(&env));
    let c = Client::new(&s);
    let layer = bytes(1, 3 << 20);
    let (digest, manifest) = c.push_image("app/web", "v1", &layer);
    assert_eq!(
        c.get("/v2/_catalog").json()["repositories"],
        json!(["app/web"])
    );
    // no redb beside the blob files: the metadata is in PostgreSQL
    assert!(!s.data.join("meta.redb").exists());
    // GC with the metadata in PostgreSQL: what the tag holds stays
    let r = c.req("POST", "/_berth/gc", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["blobs_removed"], 0, "{}", r.text());
    // an offline command on this directory would see an empty embedded
    // database (every body an orphan): it refuses, and nothing is removed
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["gc", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!s.data.join("meta.redb").exists());

    s.kill9();
    s.start_again();
    let c = Client::new(&s);
    let r = c.get("/v2/app/web/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, manifest);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let ld = sha256(&layer);
    assert_eq!(c.get(&format!("/v2/app/web/blobs/{ld}")).body, layer);

    // the database goes away: 503 with Retry-After, never a 500 or a hang
    pg.stop();
    let r = c.get("/v2/app/web/manifests/v1");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    let r = c.put_manifest("app/web", "v2", OCI_MANIFEST, &manifest);
    assert_eq!(r.status, 503, "{}", r.text());
    // back: the same Berth process serves again
    pg.start_again();
    let status = common::wait_for_status(&c, "/v2/app/web/manifests/v1", 200);
    assert_eq!(status, 200, "no recovery after the database came back");
    assert_eq!(
        c.put_manifest("app/web", "v2", OCI_MANIFEST, &manifest)
            .status,
        201
    );
    assert_eq!(
        c.get("/v2/app/web/tags/list").json()["tags"],
        json!(["v1", "v2"])
    );
}

#[test]
fn two_nodes_merge_eight_concurrent_platforms() {
    let Some(pg) = Postgres::start() else { return };
    let env = pg.env();
    // two Berth processes: one database, one blob directory
    let blobs = tempfile::tempdir().unwrap();
    let a = Server::on_with_env(blobs.path(), &env);
    let b = Server::on_with_env(blobs.path(), &env);
    common::platforms::race(&[a.url(""), b.url("")], "race", 10);
    // a push to one node is visible on the other at once
    let (d, _) = Client::new(&a).push_image("seen", "now", b"from a");
    let r = Client::new(&b).get("/v2/seen/manifests/now");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
}

#[test]
fn a_robot_made_or_revoked_on_one_node_holds_on_the_other() {
    let Some(pg) = Postgres::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let users = common::htpasswd_file(dir.path(), &["admin"]);
    let cfg = dir.path().join("berth.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\nhtpasswd = \"{}\"\nadmins = [\"admin\"]\n",
            users.display()
        ),
    )
    .unwrap();
    let mut env = pg.env();
    env.push(("--config".into(), cfg.display().to_string()));
    let blobs = tempfile::tempdir().unwrap();
    let a = Server::on_with_env(blobs.path(), &env);
    let b = Server::on_with_env(blobs.path(), &env);
    let wait = || std::thread::sleep(std::time::Duration::from_millis(2500));
    // b has read the (empty) robot records before the robot exists
    assert_eq!(
        Client::new(&b)
            .with_basic("robot$ci", "x")
            .get("/v2/")
            .status,
        401
    );
    let admin = Client::new(&a).with_basic("admin", "admin-pw");
    let r = admin.req(
        "POST",
        "/_berth/robots",
        &[("Content-Type", "application/json")],
        br#"{"name": "ci", "repos": ["ci/*"], "actions": ["pull"]}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    wait();
    let robot_on_b = Client::new(&b).with_basic("robot$ci", &secret);
    assert_eq!(robot_on_b.get("/v2/").status, 200, "b never saw the robot");
    assert_eq!(admin.delete("/_berth/robots/robot$ci").status, 204);
    wait();
    assert_eq!(robot_on_b.get("/v2/").status, 401, "revoked on a, not on b");
}

#[test]
fn nodes_starting_at_once_on_a_new_database_all_come_up() {
    let Some(pg) = Postgres::start() else { return };
    let env = pg.env();
    // as a cluster's nodes do when started together: each creates the
    // table if missing (raced in PostgreSQL's catalog before the lock)
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let starting: Vec<_> = (0..4)
        .map(|_| {
            let (env, barrier) = (env.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Server::start_with_env(&env_refs(&env))
            })
        })
        .collect();
    let nodes: Vec<Server> = starting
        .into_iter()
        .map(|t| t.join().expect("a node failed to start"))
        .collect();
    for n in &nodes {
        assert_eq!(Client::new(n).get("/v2/").status, 200);
    }
}

/// `berth serve` with `env`: its exit status and stderr when it stops
/// within 20 s (it fails at start), None when it is still serving then.
fn serve_fails(env: &[(String, String)]) -> Option<String> {
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(data.path())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(!st.success());
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return Some(err);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn tls_to_the_database_is_checked_against_the_ca_file() {
    let certs = tempfile::tempdir().unwrap();
    common::make_ca_and_server_cert(certs.path());
    let other = tempfile::tempdir().unwrap();
    common::make_ca_and_server_cert(other.path());
    let Some(pg) = Postgres::start_tls(certs.path()) else {
        return;
    };
    let with_ca = |ca: &std::path::Path| {
        let mut env = pg.env();
        env.push((
            "BERTH_METADATA_CA_FILE".into(),
            ca.join("ca.pem").display().to_string(),
        ));
        env
    };
    // the server takes TLS only: a plain connection is refused
    let err = serve_fails(&pg.env()).expect("a plain connection was accepted");
    assert!(err.contains("no encryption"), "{err}");
    // a certificate from another CA is not the database's
    let err = serve_fails(&with_ca(other.path())).expect("a stranger's certificate was accepted");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // the right CA: TLS, and the registry works through it
    let s = Server::start_with_env(&env_refs(&with_ca(certs.path())));
    let c = Client::new(&s);
    let (digest, manifest) = c.push_image("over/tls", "v1", &bytes(9, 2 << 20));
    let r = c.get("/v2/over/tls/manifests/v1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, manifest);
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
}
