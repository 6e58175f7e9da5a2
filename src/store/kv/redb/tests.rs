//! Crash, failure and group-commit tests of the redb engine.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::*;

/// A scratch directory (removed when the returned guard drops) and its path.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// Commit `pairs` into `Meta` in one transaction.
fn commit_all(kv: &Redb, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
    let mut tx = Engine::write(kv).unwrap();
    for (k, v) in pairs {
        tx.insert(Table::Meta, k.as_bytes(), v).unwrap();
    }
    tx.commit()
}

fn put(kv: &Redb, k: &str, v: &[u8]) {
    commit_all(kv, &[(k, v)]).unwrap();
}

fn rows(kv: &Redb, prefix: &[u8]) -> Vec<Entry> {
    kv.read()
        .unwrap()
        .scan(Table::Meta, prefix, None, 100_000)
        .unwrap()
}

/// Writers committing together all return, each sees its own write, and
/// everything is there after the database is closed and opened again.
#[test]
fn grouped_commits_all_land() {
    let (_guard, dir) = scratch();
    let path = dir.join("meta.redb");
    {
        let kv = Redb::open(&path, 1 << 20).unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let kv = &kv;
                s.spawn(move || {
                    for i in 0..50 {
                        let k = format!("k/{t}/{i}");
                        put(kv, &k, b"v");
                        assert!(kv
                            .read()
                            .unwrap()
                            .contains(Table::Meta, k.as_bytes())
                            .unwrap());
                    }
                });
            }
        });
        let seq = kv.inner.log().log.seq();
        assert_eq!(seq, 400, "one record per commit (no checkpoint yet)");
        assert_eq!(kv.inner.durable().upto.0, seq, "all durable once returned");
    }
    // closing made a checkpoint and emptied the log
    assert_eq!(std::fs::metadata(dir.join("meta.redo")).unwrap().len(), 0);
    let kv = Redb::open(&path, 1 << 20).unwrap();
    assert_eq!(rows(&kv, b"k/").len(), 400);
    drop(kv);
}

/// A crash: the database file as the last checkpoint left it, and the
/// log cut anywhere. Opening gives exactly the commits whose records
/// are whole, in order (never a later one without an earlier one), and
/// removals replay too.
#[test]
fn a_crash_keeps_the_logged_commits() {
    let (_guard, dir) = scratch();
    let kv = Redb::open(&dir.join("meta.redb"), 1 << 20).unwrap();
    put(&kv, "gone", b"soon");
    // the database file as it stands now: only the durable open
    std::fs::copy(dir.join("meta.redb"), dir.join("base.redb")).unwrap();
    let mut ends = vec![kv.inner.log().log.end()];
    for i in 0..6 {
        put(&kv, &format!("k/{i}"), &vec![i as u8; 100 + 700 * i]);
        ends.push(kv.inner.log().log.end());
    }
    let mut tx = Engine::write(&kv).unwrap();
    assert!(tx.remove(Table::Meta, b"gone").unwrap());
    tx.commit().unwrap();
    ends.push(kv.inner.log().log.end());
    let log = std::fs::read(dir.join("meta.redo")).unwrap();
    assert_eq!(log.len() as u64, *ends.last().unwrap());
    drop(kv);

    let copy = dir.join("copy");
    let mut cuts: Vec<u64> = ends
        .iter()
        .flat_map(|&e| [e.saturating_sub(1), e, e + 7])
        .collect();
    cuts.retain(|&c| c <= log.len() as u64);
    for cut in cuts {
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(dir.join("base.redb"), copy.join("meta.redb")).unwrap();
        std::fs::write(copy.join("meta.redo"), &log[..cut as usize]).unwrap();
        let kv = Redb::open(&copy.join("meta.redb"), 1 << 20).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let got = rows(&kv, b"k/");
        let ks = whole.saturating_sub(1).min(6);
        assert_eq!(got.len(), ks, "cut at {cut}");
        for (i, (k, v)) in got.iter().enumerate() {
            assert_eq!(k, format!("k/{i}").as_bytes());
            assert_eq!(v.len(), 100 + 700 * i);
        }
        let gone = kv.read().unwrap().contains(Table::Meta, b"gone").unwrap();
        assert_eq!(gone, (1..8).contains(&whole), "cut at {cut}");
        // and it goes on from there, durably
        put(&kv, "after", b"x");
        drop(kv);
        let kv = Redb::open(&copy.join("meta.redb"), 1 << 20).unwrap();
        assert!(kv.read().unwrap().contains(Table::Meta, b"after").unwrap());
        assert_eq!(rows(&kv, b"k/").len(), ks);
    }
}

/// A failed fdatasync: the commit waiting on it fails, writes are
/// refused for a moment and then resume. The reopen that follows keeps
/// the database and the log in step: commits acknowledged after it
/// survive a crash (no gap in the log's sequence hides them), and so do
/// those before it.
#[test]
fn a_failed_fdatasync_keeps_the_log_in_step() {
    let (_guard, dir) = scratch();
    let path = dir.join("meta.redb");
    let kv = Redb::open(&path, 1 << 20).unwrap();
    commit_all(&kv, &[("k/a", b"1"), ("x", b"1")]).unwrap();
    kv.inner.fail_sync.store(true, Ordering::SeqCst);
    let failed = commit_all(&kv, &[("k/b", b"2"), ("x", b"2")]);
    assert!(failed.is_err(), "a commit whose fdatasync failed");
    assert!(matches!(kv.write().err(), Some(StoreError::Unavailable(_))));
    // The failed commit may stay (redb's close on reopen persists it)
    // or not, but whole: never its new key with the old x.
    let whole = |kv: &Redb| {
        let r = kv.read().unwrap();
        let b = r.contains(Table::Meta, b"k/b").unwrap();
        let x = r.get(Table::Meta, b"x").unwrap().unwrap();
        assert_eq!(x, if b { b"2" } else { b"1" }, "k/b there: {b}");
    };
    // reads go on (through a reopen); skip the second's wait
    whole(&kv);
    assert!(kv.read().unwrap().contains(Table::Meta, b"k/a").unwrap());
    *kv.inner.failed_at.lock().unwrap() = None;
    put(&kv, "k/c", b"3");
    put(&kv, "k/d", b"4");
    assert!(kv.inner.log().log.end() > 0, "logged, not checkpointed");
    // crash now: the database file as it is durable, the log as written
    let crash = dir.join("crash");
    std::fs::create_dir_all(&crash).unwrap();
    std::fs::copy(&path, crash.join("meta.redb")).unwrap();
    std::fs::copy(dir.join("meta.redo"), crash.join("meta.redo")).unwrap();
    drop(kv);
    for p in [path, crash.join("meta.redb")] {
        let kv = Redb::open(&p, 1 << 20).unwrap();
        for k in ["k/a", "k/c", "k/d"] {
            let there = kv.read().unwrap().contains(Table::Meta, k.as_bytes());
            assert!(there.unwrap(), "{k} in {}", p.display());
        }
        whole(&kv);
    }
}

/// A transaction too big to log commits to redb directly, which is a
/// checkpoint: the log is emptied and records are not replayed twice.
#[test]
fn a_big_transaction_is_a_checkpoint() {
    let (_guard, dir) = scratch();
    let path = dir.join("meta.redb");
    let kv = Redb::open(&path, 1 << 20).unwrap();
    put(&kv, "small", b"1");
    assert!(kv.inner.log().log.end() > 0);
    let mut tx = Engine::write(&kv).unwrap();
    for i in 0..40 {
        tx.insert(Table::Blobs, format!("big/{i}").as_bytes(), &[7; 32 << 10])
            .unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(kv.inner.log().log.end(), 0);
    let base = std::fs::read(&path).unwrap();
    put(&kv, "small", b"2");
    let log = std::fs::read(dir.join("meta.redo")).unwrap();
    drop(kv);
    // crash right after the second small commit
    std::fs::write(&path, base).unwrap();
    std::fs::write(dir.join("meta.redo"), log).unwrap();
    let kv = Redb::open(&path, 1 << 20).unwrap();
    let r = kv.read().unwrap();
    assert_eq!(
        r.get(Table::Meta, b"small").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(r.scan(Table::Blobs, b"big/", None, 100).unwrap().len(), 40);
    drop(r);
    drop(kv);
}
