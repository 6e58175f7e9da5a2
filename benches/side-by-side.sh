#!/usr/bin/env bash
# Berth and CNCF Distribution 2.8.2 measured side by side, in one run, with
# ../shared/bench/regbench.py (issue #9).
#
#   benches/side-by-side.sh [ROUNDS=2] [extra regbench arguments...]
#
# Needs: Debian's `docker-registry` (Distribution 2.8.2), `wrk` and `hey` on
# PATH (regbench uses them for the small-request phases), a release build.
# Both servers start on fresh data dirs under one temp dir with their default
# durability: Berth fsyncs every blob and makes its commit durable (redo log
# fdatasync, see store/kv.rs) before a 201;
# Distribution's filesystem driver writes without fsync.
# Results: benches/side-by-side.json and the table regbench prints.
set -euo pipefail
rounds=${1:-2}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=${REGBENCH:-$root/../shared/bench/regbench.py}
bin=$root/target/release/berth
(cd "$root" && cargo build --release --quiet)
for tool in docker-registry wrk hey; do
  command -v "$tool" >/dev/null || { echo "side-by-side: $tool not on PATH (apt-get install docker-registry wrk hey)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill $dpid $bpid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport=$(free_port)
bport=$(free_port)
mkdir -p "$work/dist" "$work/berth"
cat >"$work/dist.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/dist
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dport
EOF
docker-registry serve "$work/dist.yml" >"$work/dist.log" 2>&1 &
dpid=$!
"$bin" serve --listen "127.0.0.1:$bport" --data-dir "$work/berth" >"$work/berth.log" 2>&1 &
bpid=$!
for p in $dport $bport; do
  until curl -so /dev/null "http://127.0.0.1:$p/v2/"; do sleep 0.1; done
done
python3 "$regbench" --rounds "$rounds" --out "$root/benches/side-by-side.json" \
  --target "distribution=http://127.0.0.1:$dport,pid=$dpid,storage=$work/dist" \
  --target "berth=http://127.0.0.1:$bport,pid=$bpid,storage=$work/berth" "$@"
# how Berth checked the blocks it served: hashed (read from the disk, or not
# vouched for) or sent from memory unhashed (verify.trust_cached_secs)
curl -s "http://127.0.0.1:$bport/metrics" | grep '^berth_blob_read_blocks_total' || true
