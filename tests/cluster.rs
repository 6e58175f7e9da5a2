//! Several Berth processes as one registry: blob bodies in Garage (S3),
//! metadata in one PostgreSQL, each node with a data directory of its own
//! (which then holds nothing that matters). What a round-robin balancer in
//! front of them needs: a session moves between nodes, a push to one is
//! visible on all at once, the merge loses no platform whichever nodes the
//! pushers reach, a node's death loses nothing it acknowledged, and an
//! object store or a database that stops answering costs 503s, not data.

mod common;

use common::garage::Garage;
use common::platforms::{env_refs, race};
use common::postgres::Postgres;
use common::{bytes, sha256, Client, Server};

/// `n` nodes on one database and one bucket; node `i` talks to Garage
/// node `i % garage nodes`.
fn nodes(pg: &Postgres, garage: &Garage, garage_nodes: usize, n: usize) -> Vec<Server> {
    (0..n)
        .map(|i| {
            let mut env = pg.env();
            env.extend(garage.env(i % garage_nodes, "cluster"));
            if garage_nodes > 1 {
                // a write a replicated Garage has not settled yet may
                // take seconds: more than the 3 s of the outage tests
                env.push(("BERTH_STORAGE_S3_TIMEOUT_SECS".into(), "15".into()));
            }
            Server::start_with_env(&env_refs(&env))
        })
        .collect()
}

/// One node, its bodies under `prefix`, with `extra` settings.
fn one_node(pg: &Postgres, garage: &Garage, prefix: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = pg.env();
    env.extend(garage.env(0, prefix));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with_env(&env_refs(&env))
}

fn services() -> Option<(Postgres, Garage)> {
    Some((Postgres::start()?, Garage::start()?))
}

/// POST on one node: the upload URL.
fn open_session(c: &Client, repo: &str) -> String {
    let r = c.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    r.header("location").unwrap().to_string()
}

fn patch(c: &Client, loc: &str, from: usize, chunk: &[u8]) {
    let range = format!("{from}-{}", from + chunk.len() - 1);
    let r = c.req(
        "PATCH",
        loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &range),
        ],
        chunk,
    );
    assert_eq!(r.status, 202, "PATCH {range}: {}", r.text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", from + chunk.len() - 1).as_str())
    );
}

fn close(c: &Client, loc: &str, digest: &str) -> common::Resp {
    let sep = if loc.contains('?') { '&' } else { '?' };
    c.req("PUT", &format!("{loc}{sep}digest={digest}"), &[], b"")
}

#[test]
fn three_nodes_are_one_registry() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 3);
    let c: Vec<Client> = n.iter().map(Client::new).collect();

    // a push to one node is visible on the others at once
    let layer = bytes(7, 3 << 20);
    let (digest, manifest) = c[0].push_image("app/web", "v1", &layer);
    // node 0 counts the object-store requests the push made
    for op in ["put", "copy", "list", "delete"] {
        let line = format!("berth_object_store_requests_total{{op=\"{op}\"}}");
        assert!(common::metric(&c[0], &line) > 0.0, "no {op} counted");
    }
    for other in &c[1..] {
        let r = other.get("/v2/app/web/manifests/v1");
        assert_eq!((r.status, &r.body), (200, &manifest));
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(
            other
                .get(&format!("/v2/app/web/blobs/{}", sha256(&layer)))
                .body,
            layer
        );
    }

    // a chunked upload whose requests land on three nodes, in turn
    let blob = bytes(8, 20 << 20);
    let loc = open_session(&c[0], "app/web");
    patch(&c[1], &loc, 0, &blob[..9 << 20]);
    // any node reports what the session holds
    let r = c[2].req("GET", &loc, &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("range"),
        Some(format!("0-{}", (9 << 20) - 1).as_str())
    );
    patch(&c[2], &loc, 9 << 20, &blob[9 << 20..15 << 20]);
    // node 0 still has the session as it was at POST: it catches up
    patch(&c[0], &loc, 15 << 20, &blob[15 << 20..]);
    let d = sha256(&blob);
    let r = close(&c[1], &loc, &d);
    assert_eq!(r.status, 201, "{}", r.text());
    for node in &c {
        let r = node.get(&format!("/v2/app/web/blobs/{d}"));
        assert_eq!(r.status, 200);
        assert!(r.body == blob, "the blob differs when read from a node");
    }
    // finished on one node: unknown on every other
    let r = c[2].req("GET", &loc, &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // no staged upload is left in the bucket
    assert_eq!(garage.count_objects("cluster/uploads/"), 0);

    // a wrong digest at the end is refused on whichever node, nothing kept
    let loc = open_session(&c[1], "app/web");
    patch(&c[2], &loc, 0, b"not what the digest says");
    let r = close(&c[0], &loc, &sha256(b"something else"));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c[1].head(&format!("/v2/app/web/blobs/{}", sha256(b"something else")));
    assert_eq!(r.status, 404);

    // a delete on one node holds on the others
    assert_eq!(c[2].delete("/v2/app/web/manifests/v1").status, 202);
    assert_eq!(c[0].get("/v2/app/web/manifests/v1").status, 404);
}

#[test]
fn eight_platforms_pushed_through_three_nodes_merge_into_one_tag() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 3);
    let urls: Vec<String> = n.iter().map(|s| s.url("")).collect();
    race(&urls, "race", 6);
}

#[test]
fn a_node_killed_mid_push_loses_nothing_it_acknowledged() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let mut n = nodes(&pg, &garage, 1, 3);
    let layer = bytes(11, 1 << 20);
    let (digest, manifest) = Client::new(&n[0]).push_image("kept", "v1", &layer);
    // a chunked upload: the first chunk acknowledged by node 0
    let blob = bytes(12, 12 << 20);
    let loc = open_session(&Client::new(&n[0]), "kept");
    patch(&Client::new(&n[0]), &loc, 0, &blob[..6 << 20]);

    // node 0 dies while a client streams a blob to it
    let url = n[0].url("");
    let (reached, go_on) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let big = bytes(13, 16 << 20);
    let (tx_reached, rx_go) = (reached.0, go_on.1);
    let body = big.clone();
    let pusher = std::thread::spawn(move || {
        let c = Client::from_base(&url);
        let r = c.req("POST", "/v2/kept/blobs/uploads/", &[], b"");
        let loc = r.header("location").unwrap().to_string();
        let reader = Halting {
            data: body,
            at: 0,
            halt_at: 5 << 20,
            reached: Some(tx_reached),
            go_on: rx_go,
        };
        let d = sha256(&reader.data);
        let sep = if loc.contains('?') { '&' } else { '?' };
        let path = loc.trim_start_matches(&url).to_string();
        c.req_stream("PUT", &format!("{path}{sep}digest={d}"), 16 << 20, reader)
            .status
    });
    reached.1.recv().unwrap();
    n[0].kill9();
    go_on.0.send(()).ok();
    // the client sees its connection fail (a panic in the pusher's thread)
    let acknowledged = matches!(pusher.join(), Ok(201));
    assert!(!acknowledged, "a push to a killed node was acknowledged");

    // the client retries on another node and completes
    let c1 = Client::new(&n[1]);
    let d = c1.push_blob("kept", &big);
    assert_eq!(
        Client::new(&n[2]).get(&format!("/v2/kept/blobs/{d}")).body,
        big
    );
    // the session node 0 acknowledged a chunk of goes on elsewhere
    patch(&Client::new(&n[2]), &loc, 6 << 20, &blob[6 << 20..]);
    let r = close(&c1, &loc, &sha256(&blob));
    assert_eq!(r.status, 201, "{}", r.text());
    // and what node 0 acknowledged before it died is all there
    let r = Client::new(&n[2]).get("/v2/kept/manifests/v1");
    assert_eq!((r.status, &r.body), (200, &manifest));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        c1.get(&format!("/v2/kept/blobs/{}", sha256(&layer))).body,
        layer
    );
    // node 0 comes back and serves the same registry
    n[0].start_again();
    assert_eq!(
        Client::new(&n[0]).get(&format!("/v2/kept/blobs/{d}")).body,
        big
    );
}

/// A request body that stops after `halt_at` bytes until the test has
/// killed the server, then fails (the client gives up).
struct Halting {
    data: Vec<u8>,
    at: usize,
    halt_at: usize,
    reached: Option<std::sync::mpsc::Sender<()>>,
    go_on: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for Halting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.halt_at {
            if let Some(tx) = self.reached.take() {
                tx.send(()).unwrap();
                let _ = self.go_on.recv();
            }
            return Err(std::io::Error::other("the server is gone"));
        }
        let n = buf.len().min(self.halt_at - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn an_unreachable_object_store_costs_503s_not_data() {
    let Some((pg, mut garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 2);
    let (a, b) = (Client::new(&n[0]), Client::new(&n[1]));
    let layer = bytes(21, 100_000);
    let (_, manifest) = a.push_image("up", "v1", &layer);
    let ld = sha256(&layer);

    garage.kill(0);
    // a new upload cannot be staged: 503 with Retry-After, never a 500
    let r = b.req("POST", "/v2/up/blobs/uploads/", &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
    // a body cannot be read: 503 too, and the blob is not marked damaged
    let r = a.get(&format!("/v2/up/blobs/{ld}"));
    assert_eq!(r.status, 503, "{}", r.text());
    // the metadata is still there: the manifest (in PostgreSQL) is served
    assert_eq!(a.get("/v2/up/manifests/v1").body, manifest);

    garage.restart(0);
    let status = common::wait_for_status(&b, &format!("/v2/up/blobs/{ld}"), 200);
    assert_eq!(status, 200, "no recovery after the object store came back");
    assert_eq!(a.get(&format!("/v2/up/blobs/{ld}")).body, layer);
    // nothing of the refused upload is visible; pushes work again
    assert_eq!(
        a.get("/v2/_catalog").json()["repositories"],
        serde_json::json!(["up"])
    );
    b.push_image("up", "v2", b"after the outage");
}

#[test]
fn postgres_restarted_under_three_nodes_costs_503s_then_all_serve_again() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 3);
    let c: Vec<Client> = n.iter().map(Client::new).collect();
    let (_, manifest) = c[0].push_image("db", "v1", &bytes(31, 50_000));
    // an upload begun before the outage, its first chunk acknowledged
    let layer = bytes(32, 300_000);
    let loc = open_session(&c[1], "db");
    patch(&c[1], &loc, 0, &layer[..100_000]);

    pg.stop();
    for c in &c {
        for r in [
            c.get("/v2/db/manifests/v1"),
            c.head(&format!("/v2/db/blobs/{}", sha256(&layer))),
            c.put_manifest("db", "v2", common::OCI_MANIFEST, &manifest),
        ] {
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(r.header("retry-after").is_some());
        }
    }
    pg.start_again();
    // every node serves again, none restarted
    for c in &c {
        let status = common::wait_for_status(c, "/v2/db/manifests/v1", 200);
        assert_eq!(status, 200, "a node did not recover");
        assert_eq!(c.get("/v2/db/manifests/v1").body, manifest);
    }
    // the session survived the outage: finished through another node
    patch(&c[2], &loc, 100_000, &layer[100_000..]);
    let r = close(&c[0], &loc, &sha256(&layer));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c[1].get(&format!("/v2/db/blobs/{}", sha256(&layer))).body,
        layer
    );
    let r = c[2].put_manifest("db", "v2", common::OCI_MANIFEST, &manifest);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        c[0].get("/v2/db/tags/list").json()["tags"],
        serde_json::json!(["v1", "v2"])
    );
}

#[test]
fn one_garage_node_of_three_down_leaves_the_registry_serving() {
    let Some(pg) = Postgres::start() else { return };
    let Some(mut garage) = Garage::cluster(3) else {
        return;
    };
    let n = nodes(&pg, &garage, 3, 3);
    let c: Vec<Client> = n.iter().map(Client::new).collect();
    let layer = bytes(31, 2 << 20);
    c[0].push_image("ha", "v1", &layer);

    // every object is on all three Garage nodes; writes need two
    garage.kill(2);
    let more = bytes(32, 10 << 20);
    let (d, m) = c[0].push_image("ha", "v2", &more);
    let r = c[1].get("/v2/ha/manifests/v2");
    assert_eq!((r.status, &r.body), (200, &m));
    assert_eq!(r.header("docker-content-digest"), Some(d.as_str()));
    assert_eq!(
        c[1].get(&format!("/v2/ha/blobs/{}", sha256(&more))).body,
        more
    );
    assert_eq!(
        c[0].get(&format!("/v2/ha/blobs/{}", sha256(&layer))).body,
        layer
    );
    // the Berth node whose Garage node is gone answers 503 for bodies
    let r = c[2].get(&format!("/v2/ha/blobs/{}", sha256(&layer)));
    assert_eq!(r.status, 503, "{}", r.text());

    garage.restart(2);
    // the node rejoins its peers within about 30 s
    let mut body = Vec::new();
    for _ in 0..300 {
        let r = c[2].get(&format!("/v2/ha/blobs/{}", sha256(&more)));
        if r.status == 200 {
            body = r.body;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        body == more,
        "the restarted Garage node does not serve the blob"
    );
}

#[test]
fn redirect_sends_blob_gets_to_a_presigned_url() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let s = one_node(
        &pg,
        &garage,
        "redirect",
        &[("BERTH_STORAGE_S3_REDIRECT", "true")],
    );
    let c = Client::new(&s);
    let layer = bytes(41, 300_000);
    c.push_image("r", "v1", &layer);
    let d = sha256(&layer);
    let r = c.get(&format!("/v2/r/blobs/{d}"));
    assert_eq!(r.status, 307, "{}", r.text());
    let url = r.header("location").unwrap().to_string();
    assert!(url.starts_with(&garage.endpoint(0)), "{url}");
    // the object store serves the bytes itself, signed for this object
    let got = Client::from_base("").get(&url);
    assert_eq!(got.status, 200);
    assert!(got.body == layer, "the presigned URL serves other bytes");
    // HEAD, and blobs the repository does not hold, are answered here
    assert_eq!(c.head(&format!("/v2/r/blobs/{d}")).status, 200);
    assert_eq!(c.get(&format!("/v2/other/blobs/{d}")).status, 404);
}

#[test]
fn a_body_damaged_in_the_bucket_never_reaches_a_client() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let s = one_node(&pg, &garage, "damage", &[]);
    let c = Client::new(&s);
    let layer = bytes(51, 3 << 20);
    c.push_image("d", "v1", &layer);
    let d = sha256(&layer);
    // one byte of the second 1 MiB block flipped in the stored object
    let mut bad = layer.clone();
    bad[(1 << 20) + 17] ^= 0xff;
    garage.overwrite(&format!("damage/blobs/sha256/{}", &d[7..]), bad);
    // the stream stops at the block that fails: the client never gets
    // the whole body (ureq reports the cut as a short read or an error)
    let path = format!("/v2/d/blobs/{d}");
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.get(&path)));
    if let Ok(r) = got {
        assert!(
            r.body != layer && r.body.len() < layer.len(),
            "damaged bytes served whole"
        );
        assert!(
            !r.body.windows(8).any(|w| w == bad_window(&layer)),
            "the damaged block was sent"
        );
    }
    // and the blob is marked damaged: unknown until a push repairs it
    assert_eq!(c.head(&format!("/v2/d/blobs/{d}")).status, 404);
    c.push_blob("d", &layer);
    assert!(
        c.get(&format!("/v2/d/blobs/{d}")).body == layer,
        "a push did not repair it"
    );
}

/// The 8 bytes around the flipped byte as damaged (to find them sent).
fn bad_window(layer: &[u8]) -> [u8; 8] {
    let at = (1 << 20) + 17;
    let mut w: [u8; 8] = layer[at - 3..at + 5].try_into().unwrap();
    w[3] ^= 0xff;
    w
}

/// GC on one node while two others push, delete and push the same blobs
/// again (bodies that are garbage at the sweep and live again before the
/// delete): every image acknowledged at the end is whole on every node,
/// and what no repository holds (a deleted image's layer, an object no
/// record names) is gone from the bucket.
#[test]
fn gc_on_one_node_while_two_others_push_loses_nothing() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 3);
    let c: Vec<Client> = n.iter().map(Client::new).collect();
    let object = |d: &str| format!("cluster/blobs/sha256/{}", &d[7..]);

    // garbage: a deleted image's own layer, and an object with no record
    let gone = bytes(40, 1 << 20);
    let (gone_manifest, _) = c[0].push_image("gone/img", "v1", &gone);
    let gd = sha256(&gone);
    assert_eq!(
        c[0].delete(&format!("/v2/gone/img/manifests/{gone_manifest}"))
            .status,
        202
    );
    assert_eq!(c[0].delete(&format!("/v2/gone/img/blobs/{gd}")).status, 202);
    let stray = bytes(41, 300 << 10);
    garage.overwrite(&object(&sha256(&stray)), stray.clone());

    let done = std::sync::atomic::AtomicBool::new(false);
    let (runs, pushed) = std::thread::scope(|s| {
        let collector = s.spawn(|| {
            let mut runs = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c[0].req("POST", "/_berth/gc", &[], b"");
                assert_eq!(r.status, 200, "{}", r.text());
                runs += 1;
            }
            runs
        });
        let pushers: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|node| {
                let c = &c[node];
                s.spawn(move || {
                    let repo = format!("gc/n{node}");
                    let mut kept = Vec::new();
                    for i in 0..12u64 {
                        let layer = bytes(100 * node as u64 + i, (256 << 10) + i as usize);
                        let tag = format!("t{i}");
                        let (m, _) = c.push_image(&repo, &tag, &layer);
                        // garbage at once: unlinked, then pushed again
                        let ld = sha256(&layer);
                        assert_eq!(c.delete(&format!("/v2/{repo}/manifests/{m}")).status, 202);
                        assert_eq!(c.delete(&format!("/v2/{repo}/blobs/{ld}")).status, 202);
                        let (m, body) = c.push_image(&repo, &tag, &layer);
                        kept.push((repo.clone(), tag, m, body, layer));
                    }
                    kept
                })
            })
            .collect();
        let pushed: Vec<_> = pushers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (collector.join().unwrap(), pushed)
    });
    assert!(runs >= 2, "only {runs} collections ran during the pushes");

    // one more collection with nothing pushing, then all of it is whole
    let r = c[0].req("POST", "/_berth/gc", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    for (i, (repo, tag, m, body, layer)) in pushed.iter().enumerate() {
        let other = &c[i % 3];
        let r = other.get(&format!("/v2/{repo}/manifests/{tag}"));
        assert_eq!((r.status, &r.body), (200, body), "{repo}:{tag}");
        assert_eq!(r.header("docker-content-digest"), Some(m.as_str()));
        let r = other.get(&format!("/v2/{repo}/blobs/{}", sha256(layer)));
        assert_eq!(r.status, 200, "{repo}:{tag} layer: {}", r.text());
        assert!(r.body == *layer, "{repo}:{tag}: layer bytes differ");
    }
    assert_eq!(garage.count_objects(&object(&gd)), 0, "the deleted layer");
    assert_eq!(
        garage.count_objects(&object(&sha256(&stray))),
        0,
        "the stray"
    );
    assert_eq!(c[1].get(&format!("/v2/gone/img/blobs/{gd}")).status, 404);
    // and a push of the collected layer brings it back whole
    assert_eq!(c[2].push_blob("gone/img", &gone), gd);
    assert_eq!(c[1].get(&format!("/v2/gone/img/blobs/{gd}")).body, gone);
}

/// The narrow case above, forced in order with Berth's write lock held by
/// the test: a push installs a body no record names, a collection on
/// another node deletes it (it listed it as an orphan before the push's
/// commit), then the push commits. The push finds its body gone inside its
/// transaction and installs it again from the upload it kept.
#[test]
fn a_body_collected_between_its_install_and_its_commit_goes_in_again() {
    let Some((pg, garage)) = services() else {
        return;
    };
    let n = nodes(&pg, &garage, 1, 2);
    let c: Vec<Client> = n.iter().map(Client::new).collect();
    let blob = bytes(50, 512 << 10);
    let d = sha256(&blob);
    // its body is there already, as an orphan (no record names it)
    garage.overwrite(&format!("cluster/blobs/sha256/{}", &d[7..]), blob.clone());
    let loc = open_session(&c[1], "race/r");

    let first = pg.write_lock();
    first.acquired();
    std::thread::scope(|s| {
        // GC's sweep waits for the lock ...
        let gc = s.spawn(|| c[0].req("POST", "/_berth/gc", &[], b""));
        pg.wait_for_lock_waiters(1);
        // ... and the test queues behind it, so that after the sweep GC
        // lists the orphan and waits again, to delete it
        let second = pg.write_lock();
        pg.wait_for_lock_waiters(2);
        drop(first);
        second.acquired();
        pg.wait_for_lock_waiters(1);
        // the push installs the body and queues behind GC's delete
        let push = s.spawn(|| close_with(&c[1], &loc, &d, &blob));
        pg.wait_for_lock_waiters(2);
        drop(second);
        let r = gc.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["orphan_files_removed"], 1, "{}", r.text());
        let r = push.join().unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    });
    for node in &c {
        let r = node.get(&format!("/v2/race/r/blobs/{d}"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == blob, "the blob's bytes differ");
    }
}

/// PUT closing a session with its whole body.
fn close_with(c: &Client, loc: &str, digest: &str, body: &[u8]) -> common::Resp {
    let sep = if loc.contains('?') { '&' } else { '?' };
    c.req(
        "PUT",
        &format!("{loc}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        body,
    )
}
