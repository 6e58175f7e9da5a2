//! Operator endpoints: /healthz, /readyz, and /metrics in the Prometheus
//! text format, parsed by a Prometheus parser, with counters that move.

mod common;

use common::{Client, Server};

fn scrape(c: &Client) -> prometheus_parse::Scrape {
    let r = c.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let lines = r
        .text()
        .lines()
        .map(|l| Ok(l.to_string()))
        .collect::<Vec<_>>();
    prometheus_parse::Scrape::parse(lines.into_iter()).expect("valid Prometheus text format")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn health_and_readiness() {
    let s = Server::start();
    let c = Client::new(&s);
    assert_eq!(c.get("/healthz").status, 200);
    assert_eq!(c.get("/readyz").status, 200);
}

#[test]
fn metrics_parse_and_move() {
    let s = Server::start();
    let c = Client::new(&s);
    let before = scrape(&c);
    for s in &before.samples {
        assert!(s.metric.starts_with("berth_"), "{}", s.metric);
    }
    let get = |sc: &prometheus_parse::Scrape| {
        value(
            sc,
            "berth_http_requests_total",
            &[("route", "manifests"), ("method", "GET"), ("status", "200")],
        )
    };
    assert_eq!(get(&before), 0.0);
    c.push_image("m/a", "v1", b"layer one");
    c.push_blob("m/b", b"layer one"); // the same bytes in a second repository
    for _ in 0..3 {
        assert_eq!(c.get("/v2/m/a/manifests/v1").status, 200);
    }
    assert_eq!(c.get("/v2/m/a/manifests/nope").status, 404);
    let after = scrape(&c);
    assert_eq!(get(&after), 3.0);
    assert_eq!(
        value(
            &after,
            "berth_http_requests_total",
            &[("route", "manifests"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(value(&after, "berth_store_blobs", &[]), 2.0);
    assert_eq!(value(&after, "berth_store_repositories", &[]), 2.0);
    assert_eq!(
        value(&after, "berth_store_dedupe_saved_bytes", &[]),
        "layer one".len() as f64
    );
    assert!(
        value(
            &after,
            "berth_http_request_duration_seconds_count",
            &[("route", "manifests")]
        ) >= 4.0
    );
    assert!(value(&after, "berth_store_db_bytes", &[]) > 0.0);
}

#[test]
fn online_gc_reclaims_and_counts() {
    let s = Server::start();
    let c = Client::new(&s);
    let d = c.push_blob("g", &common::bytes(5, 1 << 20));
    assert_eq!(c.delete(&format!("/v2/g/blobs/{d}")).status, 202);
    let dry = c.req("POST", "/_berth/gc?dry_run=true", &[], b"").json();
    assert_eq!(dry["blobs_removed"], 1);
    let r = c.req("POST", "/_berth/gc", &[], b"").json();
    assert_eq!(r["bytes_reclaimed"], 1 << 20);
    let m = scrape(&c);
    assert_eq!(value(&m, "berth_gc_runs_total", &[]), 1.0);
    assert_eq!(
        value(&m, "berth_gc_reclaimed_bytes_total", &[]),
        (1u64 << 20) as f64
    );
    assert_eq!(value(&m, "berth_store_blobs", &[]), 0.0);
}

/// The request log: pushes are logged, reads only with `log.access = true`.
#[test]
fn reads_are_logged_only_when_asked() {
    for access in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("stderr.log");
        let s = Server::start_logged(&format!("[log]\naccess = {access}\n"), &log_path);
        let c = Client::new(&s);
        let digest = c.push_blob("logged/repo", b"some bytes");
        assert_eq!(
            c.get(&format!("/v2/logged/repo/blobs/{digest}")).status,
            200
        );
        // Log lines are written by a background thread: give it a moment.
        let mut log = String::new();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            log = std::fs::read_to_string(&log_path).unwrap();
            if log.contains("method=POST") && (!access || log.contains("method=GET")) {
                break;
            }
        }
        assert!(log.contains("method=POST"), "push not logged:\n{log}");
        assert_eq!(
            log.contains("method=GET"),
            access,
            "access = {access}:\n{log}"
        );
    }
}

/// Client-controlled text reaches the log escaped: a user name, path or
/// user agent with a newline or an escape sequence cannot forge a line or
/// send terminal codes, in the text format and in JSON. (Header values
/// cannot carry ESC or newlines past the HTTP parser, but a tab, and any
/// byte in a Basic credential's base64, can.)
#[test]
fn client_fields_in_log_lines_are_escaped() {
    use base64::Engine;
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("htpasswd");
        std::fs::write(&pw, format!("ops:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
        let log_path = dir.path().join("stderr.log");
        let s = Server::start_logged(
            &format!(
                "[log]\nformat = \"{format}\"\naccess = true\n[auth]\nhtpasswd = \"{}\"\n",
                pw.display()
            ),
            &log_path,
        );
        let evil_user = "mallory\nINFO forged line\u{1b}[31m";
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{evil_user}:x"));
        let r = common::request_from(
            "127.0.0.1",
            s.port,
            "GET",
            "/v2/",
            &[
                ("Authorization", &format!("Basic {basic}")),
                ("User-Agent", "ua\tx"),
            ],
            b"",
        );
        assert_eq!(r.status, 401);
        let ok = base64::engine::general_purpose::STANDARD.encode("ops:pw");
        let r = common::request_from(
            "127.0.0.1",
            s.port,
            "GET",
            "/v2/_catalog",
            &[
                ("Authorization", &format!("Basic {ok}")),
                ("User-Agent", "agent\tx"),
            ],
            b"",
        );
        assert_eq!(r.status, 200);
        let mut log = Vec::new();
        for _ in 0..50 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            log = std::fs::read(&log_path).unwrap();
            if String::from_utf8_lossy(&log).contains("login_failed")
                && String::from_utf8_lossy(&log).contains("_catalog")
            {
                break;
            }
        }
        let text = String::from_utf8_lossy(&log);
        assert!(text.contains("login_failed"), "{format}:\n{text}");
        assert!(
            text.contains("agent"),
            "user agent not logged ({format}):\n{text}"
        );
        assert!(
            !log.contains(&0x1b),
            "raw escape byte in the {format} log:\n{text}"
        );
        assert!(
            !text.contains("agent\tx"),
            "raw tab from a header in the {format} log:\n{text}"
        );
        assert!(
            !text
                .lines()
                .any(|l| l.trim_start().starts_with("INFO forged")),
            "forged line in the {format} log:\n{text}"
        );
        if format == "json" {
            for l in text.lines().filter(|l| !l.is_empty()) {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"));
            }
        }
    }
}

/// `metrics.listen`: metrics and health on their own listener; the main
/// one answers 404 for /metrics.
#[test]
fn metrics_on_a_separate_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Server::start_with_env(&[("BERTH_METRICS_LISTEN", &format!("127.0.0.1:{port}"))]);
    let c = Client::new(&s);
    assert_eq!(c.get("/metrics").status, 404);
    assert_eq!(c.get("/v2/").status, 200);
    let ops = Client::from_base(&format!("http://127.0.0.1:{port}"));
    for _ in 0..50 {
        if common::request_from("127.0.0.1", port, "GET", "/healthz", &[], b"").status == 200 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = ops.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("berth_http_requests_total"));
    assert_eq!(ops.get("/healthz").status, 200);
    assert_eq!(ops.get("/readyz").status, 200);
    assert_eq!(
        ops.get("/v2/").status,
        404,
        "the registry is not on the metrics listener"
    );
}
