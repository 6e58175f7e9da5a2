//! Manifest push, pull and delete against the real server.

mod common;

use common::{bytes, image_manifest, sha256, Client, Server, OCI_INDEX, OCI_MANIFEST};
use serde_json::json;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[test]
fn put_get_head_delete_by_tag_and_digest() {
    let s = Server::start();
    let c = Client::new(&s);
    let (d, m) = c.push_image("app", "v1", &bytes(1, 500));

    for reference in ["v1", d.as_str()] {
        let r = c.get(&format!("/v2/app/manifests/{reference}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, m, "exact bytes");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
        let r = c.head(&format!("/v2/app/manifests/{reference}"));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some(m.len().to_string().as_str())
        );
    }

    // delete by tag removes only the tag
    assert_eq!(c.delete("/v2/app/manifests/v1").status, 202);
    assert_eq!(c.get("/v2/app/manifests/v1").status, 404);
    assert_eq!(c.get(&format!("/v2/app/manifests/{d}")).status, 200);
    // re-tag by pushing the same bytes, then delete by digest: tag goes too
    assert_eq!(c.put_manifest("app", "v2", OCI_MANIFEST, &m).status, 201);
    assert_eq!(c.delete(&format!("/v2/app/manifests/{d}")).status, 202);
    assert_eq!(c.get("/v2/app/manifests/v2").status, 404);
    let r = c.get(&format!("/v2/app/manifests/{d}"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    assert_eq!(c.delete(&format!("/v2/app/manifests/{d}")).status, 404);
    // an invalid tag is unknown on read, invalid on push
    assert_eq!(c.get("/v2/app/manifests/.bad").status, 404);
    assert_eq!(
        c.put_manifest("app", ".bad", OCI_MANIFEST, &m).error_code(),
        "MANIFEST_INVALID"
    );
}

#[test]
fn referenced_content_must_exist() {
    let s = Server::start();
    let c = Client::new(&s);
    let cfg = c.push_blob("r", b"{}");
    let missing = sha256(b"not pushed");
    let m = image_manifest(&cfg, 2, &[(&missing, 10)]);
    let r = c.put_manifest("r", "t", OCI_MANIFEST, &m);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    // a blob of another repository does not count
    let other = c.push_blob("elsewhere", b"layer");
    let m = image_manifest(&cfg, 2, &[(&other, 5)]);
    assert_eq!(
        c.put_manifest("r", "t", OCI_MANIFEST, &m).error_code(),
        "MANIFEST_BLOB_UNKNOWN"
    );

    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]
    }))
    .unwrap();
    // a missing child is an unknown reference of the index: 400, as
    // Distribution answers (MANIFEST_BLOB_UNKNOWN: "manifest references a
    // manifest or blob unknown to registry")
    let r = c.put_manifest("r", "i", OCI_INDEX, &index);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    assert!(r.text().contains(&missing), "{}", r.text());

    // non-distributable layers need not be pushed
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    "digest": missing, "size": 10, "urls": ["https://example.invalid/l"]}]
    }))
    .unwrap();
    assert_eq!(c.put_manifest("r", "nd", OCI_MANIFEST, &m).status, 201);
}

#[test]
fn refuses_schema1_bad_json_and_mismatches() {
    let s = Server::start();
    let c = Client::new(&s);
    let r = c.put_manifest(
        "r",
        "t",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        br#"{"schemaVersion":1,"name":"r","tag":"t","fsLayers":[]}"#,
    );
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    assert!(r.text().contains("schema1"), "{}", r.text());
    let r = c.put_manifest("r", "t", OCI_MANIFEST, b"{not json");
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    // body mediaType differs from Content-Type
    let (_, m) = c.push_image("r", "ok", b"l");
    assert_eq!(
        c.put_manifest("r", "t", DOCKER_MANIFEST, &m).error_code(),
        "MANIFEST_INVALID"
    );
    // PUT by digest with the wrong digest
    let r = c.put_manifest("r", &sha256(b"x"), OCI_MANIFEST, &m);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
}

#[test]
fn docker_schema2_list_artifacts_and_subject() {
    let s = Server::start();
    let c = Client::new(&s);
    let cfg = br#"{"architecture":"arm64","os":"linux"}"#;
    let cd = c.push_blob("d", cfg);
    let ld = c.push_blob("d", b"layer");
    let dm = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld, "size": 5}]
    }))
    .unwrap();
    assert_eq!(c.put_manifest("d", "arm", DOCKER_MANIFEST, &dm).status, 201);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&dm), "size": dm.len(),
                       "platform": {"architecture": "arm64", "os": "linux"}}]
    }))
    .unwrap();
    assert_eq!(c.put_manifest("d", "list", DOCKER_LIST, &list).status, 201);
    let r = c.get("/v2/d/manifests/list");
    assert_eq!(
        (r.header("content-type"), r.body.clone()),
        (Some(DOCKER_LIST), list)
    );

    // an artifact with the empty config and a subject
    let empty = c.push_blob("d", b"{}");
    let art = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": {"mediaType": DOCKER_MANIFEST, "digest": sha256(&dm), "size": dm.len()},
        "annotations": {"org.example": "yes"}
    }))
    .unwrap();
    let r = c.put_manifest("d", &sha256(&art), OCI_MANIFEST, &art);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("oci-subject"), Some(sha256(&dm).as_str()));
    let r = c.get(&format!("/v2/d/referrers/{}", sha256(&dm)));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX));
    let j = r.json();
    assert_eq!(j["manifests"][0]["digest"], json!(sha256(&art)));
    assert_eq!(
        j["manifests"][0]["artifactType"],
        json!("application/vnd.example.sbom")
    );
    assert_eq!(
        j["manifests"][0]["annotations"]["org.example"],
        json!("yes")
    );

    // a subject that does not exist (yet) is accepted
    let art2 = String::from_utf8(art.clone())
        .unwrap()
        .replace(&sha256(&dm), &sha256(b"future"));
    let r = c.put_manifest("d", "sig", OCI_MANIFEST, art2.as_bytes());
    assert_eq!(
        (r.status, r.header("oci-subject")),
        (201, Some(sha256(b"future").as_str()))
    );
}

#[test]
fn push_by_digest_with_tag_parameters() {
    let s = Server::start();
    let c = Client::new(&s);
    let (_, m) = c.push_image("t", "first", b"x");
    let d = sha256(&m);
    let r = c.req(
        "PUT",
        &format!("/v2/t/manifests/{d}?tag=a&tag=b"),
        &[("Content-Type", OCI_MANIFEST)],
        &m,
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.headers_all("oci-tag"),
        vec!["a".to_string(), "b".to_string()]
    );
    assert_eq!(c.get("/v2/t/manifests/b").body, m);
}

#[test]
fn size_limit_and_large_manifests() {
    let s = Server::start();
    let c = Client::new(&s);
    let cfg = c.push_blob("big", b"{}");
    // ~200 KiB of annotations: stored in a file, served exactly
    let mut ann = serde_json::Map::new();
    for i in 0..2000 {
        ann.insert(format!("k{i}"), json!("v".repeat(100)));
    }
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [], "annotations": ann
    }))
    .unwrap();
    assert!(m.len() > 64 * 1024);
    assert_eq!(c.put_manifest("big", "t", OCI_MANIFEST, &m).status, 201);
    assert_eq!(c.get("/v2/big/manifests/t").body, m);

    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = c.put_manifest("big", "h", OCI_MANIFEST, &huge);
    assert_eq!((r.status, r.error_code().as_str()), (413, "SIZE_INVALID"));
}

/// A descriptor must state the size of what it names: a layer said to be
/// 5 bytes that is 3,000,000 is refused, naming the digest and both sizes;
/// so is an index whose child's size is wrong.
#[test]
fn descriptor_sizes_must_match_the_content() {
    let s = Server::start();
    let c = Client::new(&s);
    let cfg = c.push_blob("r", b"{}");
    let layer = common::bytes(3, 3_000_000);
    let ld = c.push_blob("r", &layer);
    let m = image_manifest(&cfg, 2, &[(&ld, 5)]);
    let r = c.put_manifest("r", "t", OCI_MANIFEST, &m);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    let text = r.text();
    for part in [ld.as_str(), "5", "3000000"] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    let m = image_manifest(&cfg, 3, &[(&ld, layer.len())]);
    assert_eq!(
        c.put_manifest("r", "t", OCI_MANIFEST, &m).status,
        400,
        "config size"
    );
    let m = image_manifest(&cfg, 2, &[(&ld, layer.len())]);
    assert_eq!(c.put_manifest("r", "t", OCI_MANIFEST, &m).status, 201);
    let md = sha256(&m);
    let index = |size: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": size,
                           "platform": {"os": "linux", "architecture": "amd64"}}]
        }))
        .unwrap()
    };
    let r = c.put_manifest("r", "i", OCI_INDEX, &index(m.len() + 1));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    assert_eq!(
        c.put_manifest("r", "i", OCI_INDEX, &index(m.len())).status,
        201
    );
}
