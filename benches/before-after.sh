#!/usr/bin/env bash
# The embedded default of an earlier commit and of this checkout, side by
# side in one run (../shared/bench/regbench.py): the regression check of a
# change. The earlier commit is built in a worktree with a target dir of
# its own (kept in $BEFORE_DIR, default /tmp/berth-before, for next time).
#
#   benches/before-after.sh REV [ROUNDS=1] [extra regbench arguments...]
#
# Needs: wrk, hey. Results: benches/before-after.json and the table.
set -euo pipefail
rev=${1:?usage: benches/before-after.sh REV [ROUNDS] [regbench args]}
rounds=${2:-1}
shift 2 || shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=${REGBENCH:-$root/../shared/bench/regbench.py}
before=${BEFORE_DIR:-/tmp/berth-before}
if [ ! -d "$before/src" ]; then
  git -C "$root" worktree add -f "$before" "$rev" >/dev/null
else
  git -C "$before" checkout -q --detach "$rev"
fi
(cd "$before" && cargo build --release --quiet)
(cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'kill $apid $bpid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
aport=$(free_port)
bport=$(free_port)
mkdir -p "$work/before" "$work/after"
"$before/target/release/berth" serve --listen "127.0.0.1:$aport" --data-dir "$work/before" >"$work/before.log" 2>&1 &
apid=$!
"$root/target/release/berth" serve --listen "127.0.0.1:$bport" --data-dir "$work/after" >"$work/after.log" 2>&1 &
bpid=$!
for p in $aport $bport; do
  for _ in $(seq 1 100); do curl -so /dev/null "http://127.0.0.1:$p/v2/" && break; sleep 0.1; done
done
python3 "$regbench" --rounds "$rounds" --out "$root/benches/before-after.json" \
  --target "before-$(git -C "$before" rev-parse --short HEAD)=http://127.0.0.1:$aport,pid=$apid,storage=$work/before" \
  --target "after=http://127.0.0.1:$bport,pid=$bpid,storage=$work/after" "$@"
