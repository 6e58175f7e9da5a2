//! Retention policies, previewed with dry_run and applied before GC.

mod common;

use common::{bytes, Client, Server};

#[test]
fn keep_last_keep_tags_and_untagged_expiry() {
    let s = Server::start_with_config(
        "[[retention]]\npattern = \"ci/*\"\nkeep_last = 2\nkeep_tags = [\"release-*\"]\nuntagged_after_secs = 1\n",
    );
    let c = Client::new(&s);
    let mut digests = Vec::new();
    for (i, tag) in ["release-1", "t1", "t2", "t3", "t4"].iter().enumerate() {
        let (d, _) = c.push_image("ci/app", tag, &bytes(60 + i as u64, 1000));
        digests.push(d);
    }
    c.push_image("other/app", "old", &bytes(70, 1000));
    c.push_image("other/app", "new", &bytes(71, 1000));

    let dry = c.req("POST", "/_berth/gc?dry_run=true", &[], b"").json();
    assert_eq!(
        dry["retention"]["tags_deleted"],
        serde_json::json!(["ci/app:t1", "ci/app:t2"])
    );
    assert_eq!(
        c.get("/v2/ci/app/tags/list").json()["tags"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "dry run changed nothing"
    );

    let r = c.req("POST", "/_berth/gc", &[], b"").json();
    assert_eq!(
        r["retention"]["tags_deleted"],
        serde_json::json!(["ci/app:t1", "ci/app:t2"])
    );
    assert_eq!(
        c.get("/v2/ci/app/tags/list").json()["tags"],
        serde_json::json!(["release-1", "t3", "t4"])
    );
    // untagged manifests go once older than untagged_after_secs
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = c.req("POST", "/_berth/gc", &[], b"").json();
    let mut gone: Vec<String> = r["retention"]["manifests_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    gone.sort();
    let mut want = vec![
        format!("ci/app@{}", digests[1]),
        format!("ci/app@{}", digests[2]),
    ];
    want.sort();
    assert_eq!(gone, want);
    assert_eq!(
        c.get(&format!("/v2/ci/app/manifests/{}", digests[1]))
            .status,
        404
    );
    assert_eq!(c.get("/v2/ci/app/manifests/t4").status, 200);
    // repositories no policy matches are untouched
    assert_eq!(
        c.get("/v2/other/app/tags/list").json()["tags"],
        serde_json::json!(["new", "old"])
    );
}
