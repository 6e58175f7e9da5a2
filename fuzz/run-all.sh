#!/usr/bin/env bash
# Run every cargo-fuzz target for SECONDS each (default 600), one after the
# other on one core, and print executions and coverage per target.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# Needs `cargo install cargo-fuzz`; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build with the sanitizer flags. New inputs go to a scratch
# corpus (work/corpus/<target>) so the committed seeds in corpus/ stay
# small; `cargo fuzz cmin` can fold the useful ones back in.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(digest reference manifest_json platform range htpasswd bundle)
mkdir -p work
for t in "${targets[@]}"; do
  mkdir -p "work/corpus/$t"
  log="work/$t.log"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || {
    echo "$t: FAILED (see fuzz/$log)"
    continue
  }
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
  ft=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'ft: [0-9]*' || true)
  corp=$(ls "work/corpus/$t" | wc -l)
  echo "$t: ${secs}s, $execs executions, $cov, $ft, no crash; corpus $corp inputs"
done
