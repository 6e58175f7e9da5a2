//! A backend that stops answering for a while under a request: a Garage
//! node SIGSTOPped (its connections stay open, nothing comes back), or a
//! PostgreSQL table locked by another session. The request waits for it
//! on a thread of its own: the HTTP worker goes on serving other requests,
//! a client's bytes wait in the socket without counting as the client
//! stalling, and once the backend answers again the request completes.

mod common;

use std::time::{Duration, Instant};

use common::garage::{signal, Garage};
use common::platforms::env_refs;
use common::postgres::Postgres;
use common::{bytes, sha256, Client, Server};

/// A node on one worker, patient with the store, strict with clients.
fn stall_node(pg: &Postgres, garage: &Garage) -> Server {
    let mut env = pg.env();
    env.extend(garage.env(0, "stall"));
    env.extend(
        [
            // one worker: a wait on it would stop every other request
            ("BERTH_WORKERS", "1"),
            // the store is stopped for longer than this
            ("BERTH_LIMITS_BODY_IDLE_TIMEOUT_SECS", "1"),
            // and for less than this
            ("BERTH_STORAGE_S3_TIMEOUT_SECS", "30"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Server::start_with_env(&env_refs(&env))
}

/// Garage node 0 stopped, to be resumed after `secs`.
struct Stall {
    since: Instant,
    secs: u64,
    resume: std::thread::JoinHandle<()>,
}

/// Stop Garage node 0 now, resume it in `secs`.
fn stall_for(garage: &Garage, secs: u64) -> Stall {
    let pid = garage.pause(0);
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        signal(pid, libc::SIGCONT);
    });
    Stall {
        since: Instant::now(),
        secs,
        resume,
    }
}

impl Stall {
    /// The node answers at once while the store is still stopped.
    fn answers_meanwhile(&self, c: &Client, while_: &str) {
        answers_at_once(c, while_);
        assert!(
            self.since.elapsed() < Duration::from_secs(self.secs),
            "the store answered again too soon"
        );
    }

    /// Wait for the store to be resumed.
    fn end(self) {
        self.resume.join().unwrap();
    }
}

/// GET /v2/ answers within a second.
fn answers_at_once(c: &Client, while_: &str) {
    let asked = Instant::now();
    assert_eq!(c.get("/v2/").status, 200);
    let answered = asked.elapsed();
    assert!(
        answered < Duration::from_secs(1),
        "GET /v2/ took {answered:?} while {while_}"
    );
}

#[test]
fn a_session_opened_elsewhere_is_loaded_off_the_worker() {
    let (Some(pg), Some(garage)) = (Postgres::start(), Garage::start()) else {
        return;
    };
    let (a, b) = (stall_node(&pg, &garage), stall_node(&pg, &garage));
    let r = Client::new(&a).req("POST", "/v2/moved/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    let chunk = bytes(19, 100_000);
    // node b has never seen the session: it loads it from the store
    let stall = stall_for(&garage, 4);
    let patch = {
        let (c, loc, chunk) = (Client::new(&b), loc.clone(), chunk.clone());
        std::thread::spawn(move || c.req("PATCH", &loc, &[], &chunk))
    };
    std::thread::sleep(Duration::from_millis(1000));
    stall.answers_meanwhile(
        &Client::new(&b),
        "a session was loaded from a stopped store",
    );
    stall.end();
    let r = patch.join().unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", chunk.len() - 1).as_str())
    );
}

#[test]
fn a_stalled_object_store_holds_no_worker_and_blames_no_client() {
    let (Some(pg), Some(garage)) = (Postgres::start(), Garage::start()) else {
        return;
    };
    let server = stall_node(&pg, &garage);
    let c = Client::new(&server);
    let r = c.req("POST", "/v2/stall/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").unwrap().to_string();
    // another client, sending steadily all along (64 KiB every 250 ms):
    // served by the same worker, it must not be taken for stalling
    let r = c.req("POST", "/v2/stall/blobs/uploads/", &[], b"");
    let steady_loc = r.header("location").unwrap().to_string();
    let steady_bytes = bytes(18, 32 << 16);
    let steady = {
        let (c, loc) = (Client::new(&server), steady_loc.clone());
        let body = Steady {
            bytes: steady_bytes.clone(),
            pos: 0,
            piece: 64 << 10,
        };
        std::thread::spawn(move || c.req_stream("PATCH", &loc, body.bytes.len() as u64, body))
    };
    // 8 MiB parts, 2 in flight: appending waits for the store from the
    // third part sent after the pause, with most of the body still to come
    let layer = bytes(17, 64 << 20);
    let (reached, go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
    let push = {
        let (c, loc) = (Client::new(&server), loc.clone());
        let body = Gated {
            bytes: layer.clone(),
            pos: 0,
            gate: 16 << 20,
            reached: reached.0,
            go: go.1,
        };
        std::thread::spawn(move || c.req_stream("PATCH", &loc, body.bytes.len() as u64, body))
    };
    // the server is appending (the session opened, parts on their way)
    reached.1.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stall = stall_for(&garage, 5);
    go.0.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // the upload is waiting for the store now; the worker is not
    stall.answers_meanwhile(&c, "an upload waited for the object store");

    stall.end();
    let r = push.join().unwrap();
    assert_eq!(r.status, 202, "the PATCH was cut off: {}", r.text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", layer.len() - 1).as_str())
    );
    let r = steady.join().unwrap();
    assert_eq!(r.status, 202, "a steady client was cut off: {}", r.text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", steady_bytes.len() - 1).as_str())
    );
    let digest = sha256(&layer);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c.req("PUT", &format!("{loc}{sep}digest={digest}"), &[], b"");
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(c.get(&format!("/v2/stall/blobs/{digest}")).body == layer);
}

/// A body that gives its first `gate` bytes, says so, and gives the rest
/// once told to.
struct Gated {
    bytes: Vec<u8>,
    pos: usize,
    gate: usize,
    reached: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.gate {
            let _ = self.reached.send(());
            let _ = self.go.recv();
        }
        let end = match self.pos < self.gate {
            true => self.gate,
            false => self.bytes.len(),
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A body sent a piece every 250 ms.
struct Steady {
    bytes: Vec<u8>,
    pos: usize,
    piece: usize,
}

impl std::io::Read for Steady {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos % self.piece == 0 && self.pos < self.bytes.len() {
            std::thread::sleep(Duration::from_millis(250));
        }
        let end = (self.pos / self.piece + 1) * self.piece;
        let n = buf.len().min(end.min(self.bytes.len()) - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_blob_opened_in_a_stalled_store_holds_no_worker() {
    let (Some(pg), Some(garage)) = (Postgres::start(), Garage::start()) else {
        return;
    };
    let server = stall_node(&pg, &garage);
    let c = Client::new(&server);
    let layer = bytes(20, 300_000);
    let digest = c.push_blob("open", &layer);
    let stall = stall_for(&garage, 4);
    let get = {
        let (c, path) = (Client::new(&server), format!("/v2/open/blobs/{digest}"));
        std::thread::spawn(move || c.get(&path))
    };
    std::thread::sleep(Duration::from_millis(1000));
    stall.answers_meanwhile(&c, "a blob was opened in a stopped store");
    stall.end();
    let r = get.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == layer);
}

#[test]
fn a_database_that_blocks_reads_holds_no_worker() {
    let (Some(pg), Some(garage)) = (Postgres::start(), Garage::start()) else {
        return;
    };
    let server = stall_node(&pg, &garage);
    let c = Client::new(&server);
    let (_, manifest) = c.push_image("locked", "v1", b"a layer");
    // another session locks the table every read needs, for 3 s
    let (locked, held) = std::sync::mpsc::channel();
    let mut session = pg.session();
    let lock = std::thread::spawn(move || {
        let mut tx = session.transaction().unwrap();
        tx.batch_execute("LOCK TABLE berth_kv IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        locked.send(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
        tx.commit().unwrap();
    });
    let since = held.recv().unwrap();
    let subject = sha256(&manifest);
    let referrers = format!("/v2/locked/referrers/{subject}");
    let pulls: Vec<_> = [
        "/v2/locked/manifests/v1",
        "/v2/locked/tags/list",
        "/v2/_catalog",
        &referrers,
    ]
    .into_iter()
    .map(str::to_string)
    .map(|path| {
        let c = Client::new(&server);
        std::thread::spawn(move || c.get(&path))
    })
    .collect();
    std::thread::sleep(Duration::from_millis(1000));
    answers_at_once(&c, "reads waited for a locked table");
    assert!(
        since.elapsed() < Duration::from_secs(3),
        "the lock went too soon"
    );
    lock.join().unwrap();
    let got: Vec<_> = pulls.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(got[0].status, 200, "{}", got[0].text());
    assert!(got[0].body == manifest);
    assert_eq!(got[1].json()["tags"], serde_json::json!(["v1"]));
    assert_eq!(got[2].json()["repositories"], serde_json::json!(["locked"]));
    assert_eq!(got[3].status, 200, "{}", got[3].text());
    assert_eq!(got[3].json()["manifests"], serde_json::json!([]));
}
