//! Blob pull, push, mount and delete against the real server.

mod common;

use berth::oci::Algorithm;
use berth::verify;
use common::{bytes, sha256, Client, Server};

#[test]
fn monolithic_push_then_get_head_and_ranges() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(1, 10_000);
    let d = c.push_blob("lib/app", &data);

    let r = c.get(&format!("/v2/lib/app/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));

    let r = c.head(&format!("/v2/lib/app/blobs/{d}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10000"));
    assert!(r.body.is_empty());

    let r = c.req(
        "GET",
        &format!("/v2/lib/app/blobs/{d}"),
        &[("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/10000"));

    let r = c.req(
        "GET",
        &format!("/v2/lib/app/blobs/{d}"),
        &[("Range", "bytes=-10")],
        b"",
    );
    assert_eq!((r.status, &r.body[..]), (206, &data[9990..]));

    let r = c.req(
        "GET",
        &format!("/v2/lib/app/blobs/{d}"),
        &[("Range", "bytes=9990-")],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (206, 10));

    for bad in ["bytes=10000-", "bytes=500-0", "bytes=-0"] {
        let r = c.req(
            "GET",
            &format!("/v2/lib/app/blobs/{d}"),
            &[("Range", bad)],
            b"",
        );
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(r.header("content-range"), Some("bytes */10000"));
        r.error_code();
    }
    // a range that is not bytes= is ignored: the whole blob
    let r = c.req(
        "GET",
        &format!("/v2/lib/app/blobs/{d}"),
        &[("Range", "lines=1-2")],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (200, 10_000));
}

#[test]
fn single_post_with_digest_and_digest_mismatch() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(2, 3000);
    let d = sha256(&data);
    let r = c.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={d}"),
        &[],
        &data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/blobs/{d}").as_str())
    );
    assert_eq!(c.get(&format!("/v2/a/blobs/{d}")).body, data);

    // wrong digest: DIGEST_INVALID and nothing stored under either digest
    let other = sha256(b"something else");
    let r = c.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={other}"),
        &[],
        &bytes(3, 100),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(c.head(&format!("/v2/a/blobs/{other}")).status, 404);
    assert_eq!(
        c.head(&format!("/v2/a/blobs/{}", sha256(&bytes(3, 100))))
            .status,
        404
    );
    assert_eq!(s.stored("uploads"), 0);
}

#[test]
fn chunked_upload_with_out_of_order_and_repeated_chunks() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(4, 3 * 1000 + 7);
    let r = c.req("POST", "/v2/x/y/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_string();
    assert!(loc.starts_with("/v2/x/y/blobs/uploads/"));

    let patch = |from: usize, to: usize| {
        c.req(
            "PATCH",
            &loc,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &format!("{}-{}", from, to - 1)),
            ],
            &data[from..to],
        )
    };
    let r = patch(0, 1000);
    assert_eq!(r.status, 202);
    assert_eq!(r.header("range"), Some("0-999"));
    // out of order: 416, session still usable
    let r = patch(2000, 3000);
    assert_eq!(r.status, 416);
    // Distribution's code for it (one code for every 416, see oci::Code)
    assert_eq!(r.error_code(), "RANGE_INVALID");
    assert_eq!(r.header("range"), Some("0-999"));
    // repeated chunk: 416
    assert_eq!(patch(0, 1000).status, 416);
    let r = patch(1000, 2000);
    assert_eq!((r.status, r.header("range")), (202, Some("0-1999")));

    // status
    let r = c.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-1999"));
    assert_eq!(r.header("location"), Some(loc.as_str()));

    // closing PUT carries the last chunk
    let d = sha256(&data);
    let r = c.req(
        "PUT",
        &format!("{loc}?digest={d}"),
        &[("Content-Range", &format!("2000-{}", data.len() - 1))],
        &data[2000..],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.get(&format!("/v2/x/y/blobs/{d}")).body, data);
    // the session is gone
    assert_eq!(c.get(&loc).status, 404);
    assert_eq!(c.get(&loc).error_code(), "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn streamed_patch_cancel_and_unknown_sessions() {
    let s = Server::start();
    let c = Client::new(&s);
    let r = c.req("POST", "/v2/s/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let r = c.req("PATCH", &loc, &[], &bytes(5, 5000));
    assert_eq!((r.status, r.header("range")), (202, Some("0-4999")));
    let r = c.delete(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(c.get(&loc).status, 404);
    assert_eq!(c.delete(&loc).status, 404);
    assert_eq!(
        c.req("PATCH", "/v2/s/blobs/uploads/nope", &[], b"x")
            .error_code(),
        "BLOB_UPLOAD_UNKNOWN"
    );
    // a session of another repository is not reachable through this one
    let r = c.req("POST", "/v2/s/blobs/uploads/", &[], b"");
    let id = r
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(c.get(&format!("/v2/other/blobs/uploads/{id}")).status, 404);
    // PUT without digest
    let r = c.req("PUT", &format!("/v2/s/blobs/uploads/{id}"), &[], b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
}

#[test]
fn other_digest_algorithms() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(6, 2048);
    for alg in [Algorithm::Sha512, Algorithm::Blake3] {
        let d = verify::digest_bytes(alg, &data).to_string();
        let r = c.req(
            "POST",
            &format!("/v2/a/blobs/uploads/?digest-algorithm={}", alg.name()),
            &[],
            b"",
        );
        assert_eq!(r.status, 202);
        let loc = r.header("location").unwrap().to_string();
        assert_eq!(c.req("PATCH", &loc, &[], &data).status, 202);
        let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], b"");
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(c.get(&format!("/v2/a/blobs/{d}")).body, data);
    }
    // a sha512 digest on a session hashing sha256 is still verified (re-hash)
    let d = verify::digest_bytes(Algorithm::Sha512, b"abc").to_string();
    let r = c.req("POST", "/v2/a/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(
        c.req("PUT", &format!("{loc}?digest={d}"), &[], b"abc")
            .status,
        201
    );

    let r = c.req(
        "POST",
        "/v2/a/blobs/uploads/?digest-algorithm=md5",
        &[],
        b"",
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "UNSUPPORTED"));
    let r = c.req("POST", "/v2/a/blobs/uploads/?digest=md5:abcd", &[], b"x");
    assert_eq!((r.status, r.error_code().as_str()), (400, "UNSUPPORTED"));
    let r = c.head("/v2/a/blobs/sha256:short");
    assert_eq!(r.status, 400);
    let r = c.get("/v2/a/blobs/sha256:short");
    assert_eq!(r.error_code(), "DIGEST_INVALID");
}

#[test]
fn mounts_and_deletes() {
    let s = Server::start();
    let c = Client::new(&s);
    let data = bytes(7, 4000);
    let d = c.push_blob("src", &data);

    let r = c.req(
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(c.get(&format!("/v2/dst/blobs/{d}")).body, data);

    // from a repository that lacks it: a session instead
    let r = c.req(
        "POST",
        &format!("/v2/dst2/blobs/uploads/?mount={d}&from=nothere"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    // automatic mount (on by default)
    let r = c.req(
        "POST",
        &format!("/v2/dst3/blobs/uploads/?mount={d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 201);

    // delete from one repository leaves the others
    assert_eq!(c.delete(&format!("/v2/src/blobs/{d}")).status, 202);
    assert_eq!(c.get(&format!("/v2/src/blobs/{d}")).status, 404);
    assert_eq!(
        c.get(&format!("/v2/src/blobs/{d}")).error_code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(c.get(&format!("/v2/dst/blobs/{d}")).body, data);
    assert_eq!(c.delete(&format!("/v2/src/blobs/{d}")).status, 404);

    // stored once on disk however many repositories hold it
    assert_eq!(s.stored("blobs"), 1);
}

#[test]
fn automatic_mount_can_be_switched_off() {
    let s = Server::start_with_env(&[("BERTH_UPLOADS_AUTOMATIC_MOUNT", "false")]);
    let c = Client::new(&s);
    let d = c.push_blob("src", b"hello");
    let r = c.req(
        "POST",
        &format!("/v2/dst/blobs/uploads/?mount={d}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
}

#[test]
fn blob_size_limit() {
    let s = Server::start_with_env(&[("BERTH_LIMITS_MAX_BLOB_BYTES", "1000")]);
    let c = Client::new(&s);
    let data = bytes(8, 2000);
    let r = c.req(
        "POST",
        &format!("/v2/a/blobs/uploads/?digest={}", sha256(&data)),
        &[],
        &data,
    );
    assert_eq!((r.status, r.error_code().as_str()), (413, "SIZE_INVALID"));
}
