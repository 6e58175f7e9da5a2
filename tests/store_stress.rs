//! Metadata under stress: 8 threads run 10^6 mixed operations (tag
//! compare-and-swap, inserts, prefix scans) through the key-value layer with
//! durable commits, batched 50 operations to a transaction. Counts must be
//! consistent afterwards, and a watchdog fails the run if no operation
//! completes for 60 s. `BERTH_STRESS_RUNS` sets the number of runs (default
//! 20), `BERTH_STRESS_OPS` the operations per run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::store::kv::{key, prefix, Kv, Reader, Table};

const THREADS: u64 = 8;
const BATCH: u64 = 50;
const COUNTERS: u64 = 16;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn counter(kv: &impl Reader, k: u64) -> u64 {
    kv.get(Table::Tags, &key(&["ctr", &k.to_string()]))
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
        .unwrap_or(0)
}

fn run_once(run: u64, ops: u64) -> (f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(Kv::open(&dir.path().join("meta.redb"), 16 << 20).unwrap());
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (progress, done) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            let mut last = (0, Instant::now());
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let p = progress.load(Ordering::Relaxed);
                if p != last.0 {
                    last = (p, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(60) {
                    eprintln!("stress run {run}: no progress for 60 s at {p} operations: stalled");
                    std::process::abort();
                }
            }
        })
    };
    let start = Instant::now();
    let per_thread = ops / THREADS;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (kv, progress) = (kv.clone(), progress.clone());
            std::thread::spawn(move || {
                let mut increments = vec![0u64; COUNTERS as usize];
                let (mut inserted, mut commits, mut op) = (0u64, 0u64, 0u64);
                let mine = prefix(&["w", &t.to_string()]);
                while op < per_thread {
                    let mut tx = kv.write().unwrap();
                    let mut pending_inserts = 0;
                    let mut pending_incs = Vec::new();
                    for _ in 0..BATCH.min(per_thread - op) {
                        let x = op.wrapping_mul(2654435761).wrapping_add(t);
                        match x % 3 {
                            // compare-and-swap a shared counter: read, check, write
                            0 => {
                                let k = x % COUNTERS;
                                let ck = key(&["ctr", &k.to_string()]);
                                let cur = counter(&tx, k);
                                let again = counter(&tx, k);
                                assert_eq!(cur, again, "value changed inside a transaction");
                                tx.insert(Table::Tags, &ck, (cur + 1).to_string().as_bytes())
                                    .unwrap();
                                pending_incs.push(k);
                            }
                            1 => {
                                let n = inserted + pending_inserts;
                                tx.insert(
                                    Table::Blobs,
                                    &key(&["w", &t.to_string(), &format!("{n:012}")]),
                                    &[7u8; 64],
                                )
                                .unwrap();
                                pending_inserts += 1;
                            }
                            // a scan inside the transaction sees its own writes:
                            // the last (up to) 10 keys exist and none beyond
                            _ => {
                                let n = inserted + pending_inserts;
                                let from = n.saturating_sub(10);
                                let after = (from > 0).then(|| {
                                    key(&["w", &t.to_string(), &format!("{:012}", from - 1)])
                                });
                                let got = tx
                                    .scan(Table::Blobs, &mine, after.as_deref(), usize::MAX)
                                    .unwrap();
                                assert_eq!(got.len() as u64, n - from);
                            }
                        }
                        op += 1;
                    }
                    tx.commit().unwrap();
                    commits += 1;
                    inserted += pending_inserts;
                    for k in pending_incs {
                        increments[k as usize] += 1;
                    }
                    progress.fetch_add(BATCH, Ordering::Relaxed);
                    // a snapshot read sees exactly what this thread committed
                    if commits % 500 == 0 {
                        let r = kv.read().unwrap();
                        assert_eq!(
                            r.scan(Table::Blobs, &mine, None, usize::MAX).unwrap().len() as u64,
                            inserted
                        );
                    }
                }
                (increments, inserted, commits)
            })
        })
        .collect();
    let mut totals = vec![0u64; COUNTERS as usize];
    let (mut inserted, mut commits) = (0, 0);
    for w in workers {
        let (inc, ins, c) = w.join().unwrap();
        for (t, i) in totals.iter_mut().zip(inc) {
            *t += i;
        }
        inserted += ins;
        commits += c;
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    let r = kv.read().unwrap();
    for (k, want) in totals.iter().enumerate() {
        assert_eq!(counter(&r, k as u64), *want, "counter {k} lost updates");
    }
    assert_eq!(
        r.scan(Table::Blobs, b"w\0", None, usize::MAX)
            .unwrap()
            .len() as u64,
        inserted
    );
    (commits as f64 / secs, commits)
}

#[test]
fn metadata_stress_consistent_and_no_stall() {
    let runs = env("BERTH_STRESS_RUNS", 20);
    let ops = env("BERTH_STRESS_OPS", 1_000_000);
    for run in 0..runs {
        let (rate, commits) = run_once(run, ops);
        eprintln!(
            "stress run {run}: {ops} operations, {commits} durable commits, {rate:.0} commits/s"
        );
    }
}
