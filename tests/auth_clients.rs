//! Real clients against Berth in token mode: skopeo, podman and oras-py
//! log in and push through the Bearer flow (challenge, `/token` with the
//! user's password, the token on every request), and a user the rules
//! allow only pulls cannot push. `.ci/run` installs them and sets
//! BERTH_REQUIRE_CLIENTS=1.

mod common;

use common::clients::{available, oras_round_trip, run, Podman};
use common::layout::runnable_image;
use common::{Client, Server};

#[test]
fn skopeo_podman_and_oras_log_in_and_push_with_tokens() {
    if !available("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let t = |n: &str| dir.path().join(n).display().to_string();
    let (key, cert) = common::token_server::keypair(dir.path(), "token", "rsa");
    let users = common::htpasswd_file(dir.path(), &["alice", "bob"]);
    let s = Server::start_with_config(&format!(
        r#"
[auth]
htpasswd = "{}"
[auth.token]
service = "berth-clients"
key = "{}"
cert = "{}"
[[auth.rules]]
repos = "team/*"
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repos = "team/*"
users = ["bob"]
actions = ["pull"]
"#,
        users.display(),
        key.display(),
        cert.display()
    ));
    let host = format!("127.0.0.1:{}", s.port);
    let layout = dir.path().join("img");
    runnable_image(&layout);
    std::fs::write(
        t("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let tokens = || {
        common::metric(
            &Client::new(&s),
            "berth_auth_events_total{event=\"token_issued\"",
        )
    };

    // skopeo: --dest-creds, the token flow underneath
    let auth = t("auth.json");
    let (ok, log) = run(&[
        "skopeo",
        "login",
        "--authfile",
        &auth,
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "alice-pw",
        &host,
    ]);
    assert!(ok, "skopeo login: {log}");
    let before = tokens();
    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--policy",
        &t("policy.json"),
        "--authfile",
        &auth,
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{host}/team/app:v1"),
    ]);
    assert!(ok, "skopeo push with a token: {log}");
    assert!(tokens() > before, "skopeo went through /token");
    let (ok, log) = run(&[
        "skopeo",
        "copy",
        "--policy",
        &t("policy.json"),
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:bob-pw",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{host}/team/bob:v1"),
    ]);
    assert!(!ok, "bob pushed: {log}");
    let (ok, log) = run(&[
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bob:bob-pw",
        &format!("docker://{host}/team/app:v1"),
    ]);
    assert!(ok && log.contains("schemaVersion"), "bob pulls: {log}");
    let (ok, log) = run(&[
        "skopeo",
        "login",
        "--authfile",
        &t("bad.json"),
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "nope",
        &host,
    ]);
    assert!(!ok, "skopeo login with a wrong password: {log}");

    if available("podman") {
        let podman = Podman::new(dir.path());
        let podman = |args: &[&str]| podman.run(args);
        let pauth = t("podman-auth.json");
        let (ok, log) = podman(&[
            "login",
            "--authfile",
            &pauth,
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "alice-pw",
            &host,
        ]);
        assert!(ok, "podman login: {log}");
        let (ok, log) = podman(&[
            "pull",
            "--authfile",
            &pauth,
            "--tls-verify=false",
            &format!("{host}/team/app:v1"),
        ]);
        assert!(ok, "podman pull: {log}");
        let (ok, log) = podman(&[
            "push",
            "--authfile",
            &pauth,
            "--tls-verify=false",
            &format!("{host}/team/app:v1"),
            &format!("{host}/team/podman:v1"),
        ]);
        assert!(ok, "podman push: {log}");
        let bauth = t("bob-auth.json");
        let (ok, log) = podman(&[
            "login",
            "--authfile",
            &bauth,
            "--tls-verify=false",
            "-u",
            "bob",
            "-p",
            "bob-pw",
            &host,
        ]);
        assert!(ok, "podman login as bob: {log}");
        let (ok, log) = podman(&[
            "push",
            "--authfile",
            &bauth,
            "--tls-verify=false",
            &format!("{host}/team/app:v1"),
            &format!("{host}/team/bob:v1"),
        ]);
        assert!(!ok, "bob pushed with podman: {log}");
    }

    oras_round_trip(
        dir.path(),
        &host,
        r#"insecure=True, auth_backend="token""#,
        &[],
    );
    assert!(tokens() >= 6.0);
}
