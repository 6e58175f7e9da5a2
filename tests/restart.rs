//! Upload sessions survive a restart (graceful and kill -9) and expire when idle.

mod common;

use std::time::Duration;

use common::{bytes, sha256, Client, Server};

fn continue_after(kill: bool) {
    let mut s = Server::start();
    let data = bytes(11, 300_000);
    let loc = {
        let c = Client::new(&s);
        let r = c.req("POST", "/v2/r/blobs/uploads/", &[], b"");
        let loc = r.header("location").unwrap().to_string();
        let r = c.req(
            "PATCH",
            &loc,
            &[("Content-Range", "0-99999")],
            &data[..100_000],
        );
        assert_eq!(r.status, 202);
        loc
    };
    if kill {
        s.kill9();
        s.start_again();
    } else {
        s.restart();
    }
    let c = Client::new(&s);
    let r = c.get(&loc);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-99999"));
    let r = c.req(
        "PATCH",
        &loc,
        &[("Content-Range", "100000-199999")],
        &data[100_000..200_000],
    );
    assert_eq!((r.status, r.header("range")), (202, Some("0-199999")));
    let d = sha256(&data);
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], &data[200_000..]);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(c.get(&format!("/v2/r/blobs/{d}")).body, data);
}

#[test]
fn upload_session_survives_graceful_restart() {
    continue_after(false);
}

#[test]
fn upload_session_survives_kill9() {
    continue_after(true);
}

#[test]
fn idle_sessions_expire() {
    let s = Server::start_with_env(&[("BERTH_UPLOADS_IDLE_TIMEOUT_SECS", "1")]);
    let c = Client::new(&s);
    let loc = c
        .req("POST", "/v2/r/blobs/uploads/", &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    assert_eq!(c.req("PATCH", &loc, &[], b"abc").status, 202);
    let mut gone = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        if c.get(&loc).status == 404 {
            gone = true;
            break;
        }
    }
    assert!(gone, "session did not expire");
    assert_eq!(
        std::fs::read_dir(s.data.join("uploads")).unwrap().count(),
        0
    );
}

#[test]
fn content_survives_restart() {
    let mut s = Server::start();
    let (d, m) = Client::new(&s).push_image("keep", "v1", &bytes(12, 1000));
    s.kill9();
    s.start_again();
    let c = Client::new(&s);
    let r = c.get("/v2/keep/manifests/v1");
    assert_eq!((r.status, &r.body), (200, &m));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
}
