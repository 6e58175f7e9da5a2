//! The HTTP layer in process (actix-web's test service, no socket): how
//! registry errors become OCI error bodies, pagination with `Link`, and
//! `Accept` / platform negotiation. The spawned-binary tests cover crash,
//! TLS and real clients.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use berth::config::Config;
use berth::http::{access_log, auth, dispatch, path, App};
use berth::oci::{Algorithm, Code};
use berth::registry::Registry;
use berth::store::{Store, StoreOptions};
use serde_json::{json, Value};

fn digest(data: &[u8]) -> String {
    berth::verify::digest_bytes(Algorithm::Sha256, data).to_string()
}

/// The app over a fresh store, with the middleware `http::serve` uses.
fn app_data(dir: &tempfile::TempDir) -> web::Data<App> {
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let registry = Arc::new(Registry::new(Arc::new(store), Config::default()));
    web::Data::new(App::new(registry).unwrap())
}

macro_rules! service {
    ($data:expr) => {
        test::init_service(
            actix_web::App::new()
                .app_data($data.clone())
                .wrap(from_fn(auth::authorize))
                .wrap(from_fn(path::canonicalise))
                .wrap(from_fn(access_log::log_request))
                .configure(dispatch::configure),
        )
        .await
    };
}

/// The OCI error code and detail of an error response's body.
fn error_of(body: &[u8]) -> (Code, Value) {
    let v: Value = serde_json::from_slice(body).expect("an OCI error body");
    let e = &v["errors"][0];
    (
        Code::parse(e["code"].as_str().unwrap()).unwrap(),
        e["detail"].clone(),
    )
}

/// The `Docker-Content-Digest` a response names.
fn digest_of<B>(r: &actix_web::dev::ServiceResponse<B>) -> String {
    r.headers()
        .get("Docker-Content-Digest")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// An image manifest for `config` with no layers, annotated to differ.
fn image(config: &str, config_len: usize, note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": [], "annotations": {"note": note}
    }))
    .unwrap()
}

#[actix_web::test]
async fn registry_errors_become_oci_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let data = app_data(&dir);
    let app = service!(data);
    let missing = digest(b"nothing");
    let r = test::call_service(
        &app,
        TestRequest::get()
            .uri(&format!("/v2/a/blobs/{missing}"))
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (code, detail) = error_of(&test::read_body(r).await);
    assert_eq!(
        (code, detail["digest"].as_str()),
        (Code::BlobUnknown, Some(missing.as_str()))
    );

    let r = test::call_service(
        &app,
        TestRequest::put()
            .uri("/v2/a/manifests/t")
            .insert_header(("Content-Type", "application/vnd.oci.image.manifest.v1+json"))
            .set_payload("{not json")
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&test::read_body(r).await).0, Code::ManifestInvalid);

    let r = test::call_service(
        &app,
        TestRequest::get().uri("/v2/a/manifests/nope").to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (code, detail) = error_of(&test::read_body(r).await);
    assert_eq!(code, Code::ManifestUnknown);
    assert_eq!(detail, json!({"name": "a", "reference": "nope"}));

    let body = b"0123456789";
    let d = digest(body);
    let r = test::call_service(
        &app,
        TestRequest::post()
            .uri(&format!("/v2/a/blobs/uploads/?digest={d}"))
            .set_payload(&body[..])
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = test::call_service(
        &app,
        TestRequest::get()
            .uri(&format!("/v2/a/blobs/{d}"))
            .insert_header(("Range", "bytes=50-60"))
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers().get("Content-Range").unwrap(), "bytes */10");
    assert_eq!(error_of(&test::read_body(r).await).0, Code::RangeInvalid);

    // a mismatched descriptor size names both sizes in `detail`
    let m = image(&d, 3, "x");
    let r = test::call_service(
        &app,
        TestRequest::put()
            .uri("/v2/a/manifests/t")
            .insert_header(("Content-Type", "application/vnd.oci.image.manifest.v1+json"))
            .set_payload(m)
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (code, detail) = error_of(&test::read_body(r).await);
    assert_eq!(code, Code::ManifestInvalid);
    assert_eq!(
        (detail["declared"].as_u64(), detail["stored"].as_u64()),
        (Some(3), Some(10))
    );

    let r = test::call_service(&app, TestRequest::patch().uri("/v2/").to_request()).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_of(&test::read_body(r).await).0, Code::Unsupported);
}

#[actix_web::test]
async fn tags_and_catalog_page_with_link() {
    let dir = tempfile::tempdir().unwrap();
    let data = app_data(&dir);
    let app = service!(data);
    let cfg = b"{}";
    let cd = digest(cfg);
    for repo in ["p/a", "p/b", "p/c"] {
        let r = test::call_service(
            &app,
            TestRequest::post()
                .uri(&format!("/v2/{repo}/blobs/uploads/?digest={cd}"))
                .set_payload(&cfg[..])
                .to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for t in ["t1", "t2", "t3", "t4", "t5"] {
        let r = test::call_service(
            &app,
            TestRequest::put()
                .uri(&format!("/v2/p/a/manifests/{t}"))
                .insert_header(("Content-Type", "application/vnd.oci.image.manifest.v1+json"))
                .set_payload(image(&cd, 2, t))
                .to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut uri = "/v2/p/a/tags/list?n=2".to_string();
    let mut seen = Vec::new();
    loop {
        let r = test::call_service(&app, TestRequest::get().uri(&uri).to_request()).await;
        assert_eq!(r.status(), StatusCode::OK);
        let link = r
            .headers()
            .get("Link")
            .map(|l| l.to_str().unwrap().to_string());
        let body: Value = test::read_body_json(r).await;
        seen.extend(
            body["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        );
        let Some(link) = link else { break };
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        uri = link[1..link.find('>').unwrap()].to_string();
    }
    assert_eq!(seen, ["t1", "t2", "t3", "t4", "t5"]);
    let r = test::call_service(
        &app,
        TestRequest::get().uri("/v2/_catalog?n=2").to_request(),
    )
    .await;
    assert_eq!(
        r.headers().get("Link").unwrap(),
        "</v2/_catalog?n=2&last=p%2Fb>; rel=\"next\""
    );
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["repositories"], json!(["p/a", "p/b"]));
    let r = test::call_service(
        &app,
        TestRequest::get()
            .uri("/v2/_catalog?n=2&last=p%2Fb")
            .to_request(),
    )
    .await;
    assert!(r.headers().get("Link").is_none());
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["repositories"], json!(["p/c"]));
    let r = test::call_service(
        &app,
        TestRequest::get().uri("/v2/p/nope/tags/list").to_request(),
    )
    .await;
    assert_eq!(error_of(&test::read_body(r).await).0, Code::NameUnknown);
}

#[actix_web::test]
async fn accept_and_platform_choose_what_a_pull_gets() {
    let dir = tempfile::tempdir().unwrap();
    let data = app_data(&dir);
    let app = service!(data);
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let cfg = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
        let cd = digest(&cfg);
        let r = test::call_service(
            &app,
            TestRequest::post()
                .uri(&format!("/v2/n/app/blobs/uploads/?digest={cd}"))
                .set_payload(cfg.clone())
                .to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // pushed to one tag: the server merges them into an index
        let m = image(&cd, cfg.len(), arch);
        let r = test::call_service(
            &app,
            TestRequest::put()
                .uri("/v2/n/app/manifests/v1")
                .insert_header(("Content-Type", "application/vnd.oci.image.manifest.v1+json"))
                .set_payload(m.clone())
                .to_request(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        children.push((arch, digest(&m)));
    }
    let get = |accept: Option<&str>, ua: Option<&str>, query: &str| {
        let mut req = TestRequest::get().uri(&format!("/v2/n/app/manifests/v1{query}"));
        if let Some(a) = accept {
            req = req.insert_header(("Accept", a));
        }
        if let Some(u) = ua {
            req = req.insert_header(("User-Agent", u));
        }
        req.to_request()
    };
    let image_only = "application/vnd.oci.image.manifest.v1+json";
    // no Accept admits anything: the index
    let r = test::call_service(&app, get(None, None, "")).await;
    assert_eq!(
        r.headers().get("Content-Type").unwrap(),
        "application/vnd.oci.image.index.v1+json"
    );
    // a client that cannot read an index: the default platform's child
    let r = test::call_service(&app, get(Some(image_only), None, "")).await;
    assert_eq!(digest_of(&r), children[0].1);
    // ... or its own platform, from a Docker engine's User-Agent
    let ua = "docker/24.0 go/go1.20 os/linux arch/arm64";
    let r = test::call_service(&app, get(Some(image_only), Some(ua), "")).await;
    assert_eq!(digest_of(&r), children[1].1);
    // ?platform= wins over Accept
    let r = test::call_service(&app, get(None, None, "?platform=linux/arm64")).await;
    assert_eq!(digest_of(&r), children[1].1);
    // a platform the index lacks: 404 naming what it offers
    let r = test::call_service(&app, get(None, None, "?platform=linux/ppc64le")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (code, detail) = error_of(&test::read_body(r).await);
    assert_eq!(code, Code::ManifestUnknown);
    assert_eq!(detail, json!({"platforms": ["linux/amd64", "linux/arm64"]}));
    let r = test::call_service(&app, get(None, None, "?platform=linux")).await;
    assert_eq!(error_of(&test::read_body(r).await).0, Code::Unsupported);
}
