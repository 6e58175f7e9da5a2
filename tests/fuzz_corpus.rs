//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same entry points the cargo-fuzz targets use, so CI re-checks every input
//! a fuzzer ever kept, without a nightly toolchain.

#[test]
fn replay_fuzz_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (name, target) in berth::fuzzing::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            target(&std::fs::read(&path).unwrap());
            total += 1;
        }
    }
    assert!(total >= 6, "no corpus found");
    eprintln!("replayed {total} corpus inputs");
}
