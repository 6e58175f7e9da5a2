//! Tag list, catalog and referrers pagination and filters.

mod common;

use common::{sha256, Client, Server, OCI_MANIFEST};
use serde_json::json;

#[test]
fn tags_list_pagination() {
    let s = Server::start();
    let c = Client::new(&s);
    let (_, m) = c.push_image("p", "c", b"l");
    for t in ["a", "b", "d", "e"] {
        assert_eq!(c.put_manifest("p", t, OCI_MANIFEST, &m).status, 201);
    }
    let r = c.get("/v2/p/tags/list");
    assert_eq!(
        r.json(),
        json!({"name": "p", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(r.header("link").is_none());

    let r = c.get("/v2/p/tags/list?n=2");
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/p/tags/list?n=2&last=b>; rel=\"next\"")
    );
    let r = c.get("/v2/p/tags/list?n=2&last=b");
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    let r = c.get("/v2/p/tags/list?n=2&last=d");
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert!(r.header("link").is_none());
    // last need not be an existing tag
    assert_eq!(
        c.get("/v2/p/tags/list?last=bb").json()["tags"],
        json!(["c", "d", "e"])
    );
    assert_eq!(c.get("/v2/p/tags/list?n=0").json()["tags"], json!([]));
    assert_eq!(c.get("/v2/p/tags/list?n=x").status, 400);

    let r = c.get("/v2/nothere/tags/list");
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));
}

#[test]
fn catalog_pagination() {
    let s = Server::start();
    let c = Client::new(&s);
    for r in ["b/x", "a", "c"] {
        c.push_blob(r, r.as_bytes());
    }
    assert_eq!(
        c.get("/v2/_catalog").json(),
        json!({"repositories": ["a", "b/x", "c"]})
    );
    let r = c.get("/v2/_catalog?n=1");
    assert_eq!(r.json()["repositories"], json!(["a"]));
    assert_eq!(
        r.header("link"),
        Some("</v2/_catalog?n=1&last=a>; rel=\"next\"")
    );
    assert_eq!(
        c.get("/v2/_catalog?n=5&last=a").json()["repositories"],
        json!(["b/x", "c"])
    );
    // a repository whose only content is deleted leaves the catalog
    let d = sha256(b"c");
    assert_eq!(c.delete(&format!("/v2/c/blobs/{d}")).status, 202);
    assert_eq!(
        c.get("/v2/_catalog").json()["repositories"],
        json!(["a", "b/x"])
    );
}

#[test]
fn referrers_filter_and_empty() {
    let s = Server::start();
    let c = Client::new(&s);
    let (subject, m) = c.push_image("r", "v1", b"layer");
    let empty = c.push_blob("r", b"{}");
    let mut pushed = Vec::new();
    for at in ["application/vnd.a", "application/vnd.b"] {
        let art = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": m.len()}
        }))
        .unwrap();
        assert_eq!(
            c.put_manifest("r", &sha256(&art), OCI_MANIFEST, &art)
                .status,
            201
        );
        pushed.push(sha256(&art));
    }
    let all = c.get(&format!("/v2/r/referrers/{subject}")).json();
    assert_eq!(all["manifests"].as_array().unwrap().len(), 2);
    let r = c.get(&format!(
        "/v2/r/referrers/{subject}?artifactType=application/vnd.b"
    ));
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType"));
    let j = r.json();
    assert_eq!(j["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(j["manifests"][0]["digest"], json!(pushed[1]));

    // deleting a referrer drops it from the list
    assert_eq!(
        c.delete(&format!("/v2/r/manifests/{}", pushed[0])).status,
        202
    );
    assert_eq!(
        c.get(&format!("/v2/r/referrers/{subject}")).json()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // no referrers: an empty index, still 200
    let none = c.get(&format!("/v2/r/referrers/{}", sha256(b"nothing")));
    assert_eq!(none.status, 200);
    assert_eq!(none.json()["manifests"], json!([]));
    assert_eq!(c.get("/v2/r/referrers/sha256:bad").status, 400);
}
