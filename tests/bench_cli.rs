//! `berth bench ingest`: blobs go through the real push path (session,
//! digest check, fsyncs, commit) in a scratch store that is removed after.

use std::process::Command;

use serde_json::Value;

fn ingest(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["bench", "ingest", "--json", "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn ingest_reports_each_phase_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = ingest(
        dir.path(),
        &["--sizes", "1,2", "--streams", "1,3", "--max-blobs", "6"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = r["results"].as_array().unwrap();
    let phases: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|p| {
            assert!(p["mb_per_s"].as_f64().unwrap() > 0.0, "{p}");
            (
                p["size_mib"].as_u64().unwrap(),
                p["streams"].as_u64().unwrap(),
                p["blobs"].as_u64().unwrap(),
            )
        })
        .collect();
    // 6 blobs at most per phase, whole per stream
    assert_eq!(phases, vec![(1, 1, 6), (1, 3, 6), (2, 1, 6), (2, 3, 6)]);
    assert!(r["flush_ms_median"].as_f64().unwrap() > 0.0);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "scratch store left behind: {left:?}");
}

#[test]
fn ingest_refuses_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ingest(dir.path(), &["--sizes", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sizes"));
}
