//! Bearer tokens against the real server: the token endpoint grants the
//! intersection of what is asked and what the rules allow, tokens are
//! checked by signature, expiry, audience and scope; robot accounts; a
//! trusted external issuer; and CNCF Distribution accepting Berth's tokens.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::token_server::keypair;
use common::{Client, Distribution, Server};
use serde_json::{json, Value};

const SERVICE: &str = "registry.test";
const ISSUER: &str = "berth-token-issuer";

fn token_server(dir: &Path, kind: &str, extra: &str) -> Server {
    let (key, cert) = keypair(dir, "token", kind);
    let pw = common::htpasswd_file(dir, &["alice", "bob"]);
    Server::start_with_config(&format!(
        r#"
[auth]
htpasswd = "{}"
anonymous_pull = ["public/*"]
admins = ["alice"]
[auth.token]
service = "{SERVICE}"
issuer = "{ISSUER}"
key = "{}"
cert = "{}"
expiry_secs = 600
[[auth.rules]]
repos = "team/*"
users = ["alice"]
actions = ["pull", "push", "delete"]
[[auth.rules]]
repos = "team/*"
users = ["bob"]
actions = ["pull"]
{extra}"#,
        pw.display(),
        key.display(),
        cert.display()
    ))
}

/// GET /token as `user` (None: anonymous) for `scope`; the answer.
fn get_token(s: &Server, user: Option<&str>, scope: &str) -> common::Resp {
    let c = match user {
        Some(u) => Client::new(s).with_basic(u, &format!("{u}-pw")),
        None => Client::new(s),
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("service", SERVICE)
        .append_pair("scope", scope)
        .finish();
    c.get(&format!("/token?{q}"))
}

fn token_of(r: &common::Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A token signed with `key` (x5c = `cert`), with these claims.
fn forge(key: &Path, cert: &Path, claims: &Value) -> String {
    let pem = std::fs::read(key).unwrap();
    let ekey = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    let text = std::fs::read_to_string(cert).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    h.x5c = Some(vec![b64]);
    jsonwebtoken::encode(&h, claims, &ekey).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_token_endpoint_grants_what_the_rules_allow_and_tokens_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let s = token_server(dir.path(), "rsa", "");
    // the challenge sends clients to the token endpoint
    let r = Client::new(&s).get("/v2/");
    assert_eq!(r.status, 401);
    let challenge = r.header("WWW-Authenticate").unwrap().to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"{SERVICE}\"",
            s.port
        )
    );
    let r = Client::new(&s).get("/v2/team/app/manifests/v1");
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .contains("scope=\"repository:team/app:pull\""));

    // alice may push team/*: she gets what she asks
    let t = token_of(&get_token(
        &s,
        Some("alice"),
        "repository:team/app:pull,push",
    ));
    let c = claims(&t);
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str(), c["sub"].as_str()),
        (Some(ISSUER), Some(SERVICE), Some("alice"))
    );
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
    );
    assert!(c["exp"].as_u64().unwrap() > now() + 500);
    let alice = Client::new(&s).with_bearer(&t);
    assert_eq!(alice.get("/v2/").status, 200);
    alice.push_image("team/app", "v1", b"layer one");
    assert_eq!(alice.get("/v2/team/app/manifests/v1").status, 200);
    // ...but only on the repository the token names
    let r = alice.req("POST", "/v2/team/other/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 403);
    let h = r.header("WWW-Authenticate").unwrap();
    assert!(
        h.contains("error=\"insufficient_scope\"")
            && h.contains("scope=\"repository:team/other:pull,push\""),
        "{h}"
    );

    // bob may only pull: a pull token, whatever he asks; it cannot push
    let t = token_of(&get_token(
        &s,
        Some("bob"),
        "repository:team/app:pull,push,delete",
    ));
    assert_eq!(
        claims(&t)["access"],
        json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}])
    );
    let bob = Client::new(&s).with_bearer(&t);
    assert_eq!(bob.get("/v2/team/app/manifests/v1").status, 200);
    assert_eq!(
        bob.req("POST", "/v2/team/app/blobs/uploads/", &[], b"")
            .status,
        403
    );
    assert_eq!(bob.delete("/v2/team/app/manifests/v1").status, 403);

    // anonymous: what anonymous_pull allows, nothing more
    let t = token_of(&get_token(&s, None, "repository:public/x:pull,push"));
    assert_eq!(
        claims(&t)["access"],
        json!([{"type": "repository", "name": "public/x", "actions": ["pull"]}])
    );
    let t = token_of(&get_token(&s, None, "repository:team/app:pull"));
    assert_eq!(claims(&t)["access"], json!([]));
    assert_eq!(
        Client::new(&s)
            .with_bearer(&t)
            .get("/v2/team/app/tags/list")
            .status,
        403
    );

    // wrong password and another service are refused
    let r = Client::new(&s)
        .with_basic("alice", "nope")
        .get(&format!("/token?service={SERVICE}"));
    assert_eq!(r.status, 401);
    assert!(r.header("WWW-Authenticate").unwrap().starts_with("Basic "));
    assert_eq!(
        Client::new(&s)
            .with_basic("alice", "alice-pw")
            .get("/token?service=other")
            .status,
        400
    );

    // OAuth2 form (containerd): the same grant
    let r = Client::new(&s).req(
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("grant_type=password&username=alice&password=alice-pw&service={SERVICE}&scope=repository:team/app:pull&client_id=test").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["scope"], "repository:team/app:pull");
    assert_eq!(claims(j["access_token"].as_str().unwrap())["sub"], "alice");

    // expired, foreign-signed, other audience, tampered: 401 invalid_token
    let (key, cert) = (dir.path().join("token.key"), dir.path().join("token.pem"));
    let base = json!({"iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now() + 300, "nbf": now() - 10, "iat": now(),
        "jti": "x", "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]});
    let good = forge(&key, &cert, &base);
    assert_eq!(
        Client::new(&s)
            .with_bearer(&good)
            .get("/v2/team/app/tags/list")
            .status,
        200,
        "a well-formed token"
    );
    let mut expired = base.clone();
    expired["exp"] = json!(now() - 60);
    let (fkey, fcert) = keypair(dir.path(), "foreign", "rsa");
    let mut other_aud = base.clone();
    other_aud["aud"] = json!("elsewhere");
    let mut wider = base.clone();
    wider["access"][0]["actions"] = json!(["pull", "push"]);
    let good_sig = good.rsplit('.').next().unwrap();
    let w = forge(&key, &cert, &wider);
    let tampered = format!("{}.{good_sig}", w.rsplit_once('.').unwrap().0);
    for (what, t) in [
        ("expired", forge(&key, &cert, &expired)),
        ("foreign-signed", forge(&fkey, &fcert, &base)),
        ("foreign key, our certificate", forge(&fkey, &cert, &base)),
        ("other audience", forge(&key, &cert, &other_aud)),
        ("tampered", tampered),
        ("garbage", "a.b.c".to_string()),
    ] {
        let r = Client::new(&s)
            .with_bearer(&t)
            .get("/v2/team/app/tags/list");
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(
            r.header("WWW-Authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{what}"
        );
    }
    let c = Client::new(&s);
    assert!(common::metric(&c, "berth_auth_events_total{event=\"token_issued\"") >= 5.0);
    assert!(
        common::metric(
            &c,
            "berth_auth_events_total{event=\"refused\",method=\"bearer\"}"
        ) >= 6.0
    );
}

#[test]
fn ec_keys_sign_es256_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = token_server(dir.path(), "ec", "");
    let t = token_of(&get_token(
        &s,
        Some("alice"),
        "repository:team/app:pull,push",
    ));
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    assert_eq!(
        header["kid"].as_str().unwrap().split(':').count(),
        12,
        "a libtrust key ID"
    );
    Client::new(&s)
        .with_bearer(&t)
        .push_image("team/app", "v1", b"layer");
}

#[test]
fn robot_accounts_hold_their_scope_and_die_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = token_server(dir.path(), "rsa", "");
    let admin = Client::new(&s).with_basic("alice", "alice-pw");
    let r = admin.req(
        "POST",
        "/_berth/robots",
        &[("Content-Type", "application/json")],
        br#"{"name": "ci", "repos": ["ci/*"], "actions": ["pull", "push"], "expires_in_secs": 3600}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_string();
    assert_eq!(r.json()["name"], "robot$ci");
    // only admins manage robots, and a robot is never one
    let bob = Client::new(&s).with_basic("bob", "bob-pw");
    assert_eq!(bob.get("/_berth/robots").status, 403);
    let robot = Client::new(&s).with_basic("robot$ci", &secret);
    assert_eq!(robot.get("/_berth/robots").status, 403);
    // a name in use is refused
    assert_eq!(
        admin
            .req(
                "POST",
                "/_berth/robots",
                &[],
                br#"{"name": "ci", "repos": ["x"], "actions": ["pull"]}"#
            )
            .status,
        400
    );

    // Basic with the secret, and a token for it: exactly its scope
    robot.push_image("ci/app", "v1", b"ci layer");
    assert_eq!(
        robot
            .req("POST", "/v2/team/app/blobs/uploads/", &[], b"")
            .status,
        403
    );
    assert_eq!(
        robot.delete("/v2/ci/app/manifests/v1").status,
        403,
        "no delete right"
    );
    let q = format!("/token?service={SERVICE}&scope=repository:ci/app:pull,push,delete&scope=repository:team/app:pull");
    let r = robot.get(&q);
    let t = token_of(&r);
    assert_eq!(claims(&t)["sub"], "robot$ci");
    assert_eq!(
        claims(&t)["access"],
        json!([{"type": "repository", "name": "ci/app", "actions": ["pull", "push"]}])
    );
    let with_token = Client::new(&s).with_bearer(&t);
    assert_eq!(with_token.get("/v2/ci/app/manifests/v1").status, 200);
    assert_eq!(
        Client::new(&s)
            .with_basic("robot$ci", "guess")
            .get("/v2/ci/app/tags/list")
            .status,
        401
    );

    // listed without its secret
    let list = admin.get("/_berth/robots").json();
    assert_eq!(list[0]["name"], "robot$ci");
    assert_eq!(list[0]["active"], true);
    assert!(!list.to_string().contains(&secret) && !list.to_string().contains("secret"));

    // revoked: the secret and the token it was given stop at once
    assert_eq!(admin.delete("/_berth/robots/robot$ci").status, 204);
    assert_eq!(robot.get("/v2/ci/app/tags/list").status, 401);
    assert_eq!(with_token.get("/v2/ci/app/manifests/v1").status, 401);
    assert_eq!(admin.get("/_berth/robots").json()[0]["active"], false);
    assert_eq!(admin.delete("/_berth/robots/nope").status, 404);

    // the command line, through the admin API
    let berth = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("robot")
            .args(args)
            .args(["--url", &s.url(""), "--user", "alice:alice-pw"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let made = berth(&[
        "create",
        "deploy",
        "--repos",
        "team/*",
        "--actions",
        "pull",
        "--days",
        "1",
    ]);
    let secret = made["secret"].as_str().unwrap();
    let deploy = Client::new(&s).with_basic("robot$deploy", secret);
    assert_eq!(
        deploy.get("/v2/team/app/tags/list").status,
        404,
        "may pull; nothing there"
    );
    assert_eq!(
        deploy
            .req("POST", "/v2/team/app/blobs/uploads/", &[], b"")
            .status,
        403
    );
    assert_eq!(berth(&["list"]).as_array().unwrap().len(), 2);
    berth(&["revoke", "deploy"]);
    assert_eq!(deploy.get("/v2/team/app/tags/list").status, 401);
}

/// A JWKS document for the RSA key `key` (kid `k1`).
fn jwks(key: &Path) -> String {
    let out = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(key)
        .output()
        .unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("Modulus=")
        .to_string();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    json!({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": b64.encode(n), "e": "AQAB"}]}).to_string()
}

#[test]
fn tokens_of_a_trusted_external_issuer_are_accepted() {
    let ts = common::token_server::TokenServer::start("extuser", "ext-pw");
    let dir = tempfile::tempdir().unwrap();
    let (gkey, _) = keypair(dir.path(), "gitlab", "rsa");
    std::fs::write(dir.path().join("jwks.json"), jwks(&gkey)).unwrap();
    let s = Server::start_with_config(&format!(
        r#"
[auth.token]
service = "{}"
realm = "http://127.0.0.1:{}/token"
[[auth.token.trusted]]
issuer = "{}"
cert = "{}"
[[auth.token.trusted]]
issuer = "gitlab-issuer"
jwks = "{}"
"#,
        common::token_server::SERVICE,
        ts.port,
        common::token_server::ISSUER,
        ts.cert.display(),
        dir.path().join("jwks.json").display()
    ));
    let r = Client::new(&s).get("/v2/");
    assert_eq!(r.status, 401);
    let h = r.header("WWW-Authenticate").unwrap().to_string();
    assert!(
        h.contains(&format!("realm=\"http://127.0.0.1:{}/token\"", ts.port)),
        "{h}"
    );
    // Berth issues nothing itself here
    assert_eq!(Client::new(&s).get("/token").status, 404);
    let url = format!(
        "http://127.0.0.1:{}/token?service=x&scope=repository:ext/app:pull,push",
        ts.port
    );
    let r = Client::from_base("")
        .with_basic("extuser", "ext-pw")
        .get(&url);
    let t = r.json()["token"].as_str().unwrap().to_string();
    let c = Client::new(&s).with_bearer(&t);
    c.push_image("ext/app", "v1", b"external");
    assert_eq!(c.get("/v2/ext/app/manifests/v1").status, 200);
    assert_eq!(
        c.get("/v2/other/manifests/v1").status,
        403,
        "outside the token's access"
    );
    // a trusted issuer's subject is no admin here
    assert_eq!(c.req("POST", "/_berth/gc", &[], b"").status, 403);

    // an issuer known by its JWKS: the key the token's kid names
    let claims = json!({"iss": "gitlab-issuer", "sub": "ci", "aud": common::token_server::SERVICE, "exp": now() + 300,
        "access": [{"type": "repository", "name": "ext/app", "actions": ["pull"]}]});
    let pem = std::fs::read(&gkey).unwrap();
    let ekey = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some("k1".into());
    let t = jsonwebtoken::encode(&h, &claims, &ekey).unwrap();
    assert_eq!(
        Client::new(&s)
            .with_bearer(&t)
            .get("/v2/ext/app/manifests/v1")
            .status,
        200
    );
    h.kid = Some("k2".into());
    let t = jsonwebtoken::encode(&h, &claims, &ekey).unwrap();
    assert_eq!(
        Client::new(&s)
            .with_bearer(&t)
            .get("/v2/ext/app/manifests/v1")
            .status,
        401,
        "unknown kid"
    );
    // the other issuer's name with this key: not its key
    let mut wrong = claims.clone();
    wrong["iss"] = json!(common::token_server::ISSUER);
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &wrong,
        &ekey,
    )
    .unwrap();
    assert_eq!(
        Client::new(&s)
            .with_bearer(&t)
            .get("/v2/ext/app/manifests/v1")
            .status,
        401
    );
}

#[test]
fn distribution_accepts_tokens_berth_issues() {
    let dir = tempfile::tempdir().unwrap();
    let s = token_server(dir.path(), "rsa", "");
    let Some(d) = Distribution::start(&format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        s.port,
        dir.path().join("token.pem").display()
    )) else {
        return;
    };
    let r = Client::from_base(&d.url()).get("/v2/");
    assert_eq!(r.status, 401);
    assert!(r
        .header("WWW-Authenticate")
        .unwrap()
        .contains(&format!("/token\",service=\"{SERVICE}\"")));
    let push = token_of(&get_token(
        &s,
        Some("alice"),
        "repository:team/app:pull,push",
    ));
    let dc = Client::from_base(&d.url()).with_bearer(&push);
    assert_eq!(dc.get("/v2/").status, 200, "Distribution took the token");
    dc.push_image("team/app", "v1", b"pushed to distribution");
    let pull = token_of(&get_token(&s, Some("bob"), "repository:team/app:pull,push"));
    let bc = Client::from_base(&d.url()).with_bearer(&pull);
    let oci = [("Accept", common::OCI_MANIFEST)];
    assert_eq!(
        bc.req("GET", "/v2/team/app/manifests/v1", &oci, b"").status,
        200
    );
    assert_eq!(
        bc.req("POST", "/v2/team/app/blobs/uploads/", &[], b"")
            .status,
        401,
        "pull-only token pushed"
    );
    // Distribution refuses an expired Berth-signed token too
    let key = dir.path().join("token.key");
    let expired = forge(
        &key,
        &dir.path().join("token.pem"),
        &json!({"iss": ISSUER, "sub": "alice", "aud": SERVICE,
        "exp": now() - 120, "nbf": now() - 600, "iat": now() - 600, "jti": "e",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]}),
    );
    let r = Client::from_base(&d.url()).with_bearer(&expired).req(
        "GET",
        "/v2/team/app/manifests/v1",
        &oci,
        b"",
    );
    assert_eq!(r.status, 401);
    // and skopeo, given alice's password, goes through Berth's token endpoint
    if common::clients::available("skopeo") {
        let layout = dir.path().join("img");
        common::layout::runnable_image(&layout);
        let policy = dir.path().join("policy.json");
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        let copy = |creds: &str, to: &str| {
            common::clients::run(&[
                "skopeo",
                "copy",
                "--policy",
                policy.to_str().unwrap(),
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
                &format!("oci:{}:v1", layout.display()),
                &format!("docker://127.0.0.1:{}/{to}", d.port),
            ])
        };
        let (ok, log) = copy("alice:alice-pw", "team/skopeo:v1");
        assert!(ok, "skopeo to Distribution with a Berth token: {log}");
        let (ok, log) = copy("bob:bob-pw", "team/skopeo:v2");
        assert!(!ok, "bob pushed through Distribution: {log}");
    }
}
