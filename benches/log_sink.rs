//! The log's writer (`berth::log_sink`): what a logged request pays to hand
//! over one access-log line of typical length, into a sink that discards
//! (so the figure is the hand-over, not the disk).

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn line(c: &mut Criterion) {
    let (w, guard) = berth::log_sink::batched(std::io::sink()).unwrap();
    let text = "2026-12-07T15:38:28.154696Z  INFO berth::http::access_log: request \
                method=PUT path=/v2/regbench/manifests/t123 status=201 bytes=527 \
                micros=812 user=- remote=127.0.0.1:50412\n";
    let mut g = c.benchmark_group("log_sink");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_line", |b| {
        b.iter(|| (&w).write_all(text.as_bytes()).unwrap())
    });
    g.finish();
    drop(guard);
}

criterion_group!(benches, line);
criterion_main!(benches);
