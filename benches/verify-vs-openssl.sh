#!/usr/bin/env bash
# Offline `berth verify` throughput against the machine's sha256 limit, in one run.
#
#   benches/verify-vs-openssl.sh [BLOBS=64] [MIB_PER_BLOB=34] [ROUNDS=3]
#
# Builds a store of BLOBS random blobs through a real `berth serve`, stops it,
# then alternates `openssl speed -evp sha256` (single core and -multi N) with
# `berth verify` (full digest) and `berth verify --fast` (recorded block
# hashes) so all see the same machine state, and prints the ratio
# verify / (single-core openssl x threads) that issue #5 asks about and
# fast / full that issue #23 asks about. `openssl speed` hashes one
# cache-resident buffer; the dgst column is openssl itself hashing the
# store's files (`openssl dgst`, one process per core), the reference for
# data at rest that has to come out of the page cache.
set -euo pipefail
blobs=${1:-64} mib=${2:-34} rounds=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/berth
(cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen 127.0.0.1:$port --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:$port/healthz >/dev/null; do sleep 0.1; done
head -c $((mib << 20)) /dev/urandom >"$work/body"
for i in $(seq 1 "$blobs"); do
  { printf '%08d' "$i"; cat "$work/body"; } >"$work/blob"
  d=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)
  curl -sf -o /dev/null -X POST --data-binary @"$work/blob" \
    -H 'Content-Type: application/octet-stream' \
    "http://127.0.0.1:$port/v2/bench/blobs/uploads/?digest=$d"
done
kill $pid; wait $pid 2>/dev/null || true
threads=$(nproc)
echo "store: $blobs blobs x $mib MiB; threads: $threads"
total=$(( blobs * ((mib << 20) + 8) ))
find "$work/data/blobs" -type f -size +1M >"$work/files"
split -n "l/$threads" "$work/files" "$work/part."
dgst() {
  local s e
  s=$(date +%s.%N)
  for p in "$work"/part.*; do xargs openssl dgst -sha256 <"$p" >/dev/null & done
  wait
  e=$(date +%s.%N)
  python3 -c "print($total / 1e9 / ($e - $s))"
}
printf '%-6s %14s %14s %14s %8s %14s %14s %10s\n' round openssl_1core openssl_multi verify_GB/s ratio dgst_files_GB/s fast_GB/s fast/full
for r in $(seq 1 "$rounds"); do
  one=$(openssl speed -evp sha256 -bytes 1048576 -seconds 3 2>/dev/null | tail -1 | awk '{print $2}' | tr -d k)
  multi=$(openssl speed -multi "$threads" -evp sha256 -bytes 1048576 -seconds 3 2>/dev/null | tail -1 | awk '{print $2}' | tr -d k)
  v=$("$bin" verify --data-dir "$work/data" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["gb_per_s"])')
  files=$(dgst)
  fast=$("$bin" verify --fast --data-dir "$work/data" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["blobs_by_blocks"] == r["blobs_checked"], r; print(r["gb_per_s"])')
  python3 - "$r" "$one" "$multi" "$v" "$threads" "$files" "$fast" <<'PY'
import sys
r, one, multi, v, t = sys.argv[1], float(sys.argv[2]) / 1e6, float(sys.argv[3]) / 1e6, float(sys.argv[4]), int(sys.argv[5])
files, fast = float(sys.argv[6]), float(sys.argv[7])
print(f"{r:<6} {one:>14.3f} {multi:>14.3f} {v:>14.3f} {v / (one * t):>8.3f} {files:>14.3f} {fast:>14.3f} {fast / v:>10.2f}")
PY
done | tee "$work/rows"
# This VM's figures move by +-10 % from one second to the next: the median of
# the rounds is the figure to quote.
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
echo "median over $rounds rounds: verify/openssl $(awk '{print $5}' "$work/rows" | median)," \
  "full $(awk '{print $4}' "$work/rows" | median) GB/s, fast $(awk '{print $7}' "$work/rows" | median) GB/s," \
  "openssl dgst $(awk '{print $6}' "$work/rows" | median) GB/s, fast/full $(awk '{print $8}' "$work/rows" | median)"
