#!/usr/bin/env bash
# Export and import throughput of a bundle, plain tar and tar.zst.
#
#   benches/bundle-throughput.sh [IMAGES=16] [MIB_PER_LAYER=64] [ROUNDS=3]
#
# Pushes IMAGES single-layer images of random (incompressible, like real
# gzip layers) data through a real `berth serve`, stops it, then times
# `berth export` and `berth import` into fresh data dirs, and prints MB/s
# (MB = 10^6 bytes of blob data carried, wall clock of the whole command,
# output fsynced). Each step runs ROUNDS times: on a VM whose memory the
# host backs lazily, the first touch of fresh page cache costs several times
# the steady state, so look at the best round as well as the first.
set -euo pipefail
images=${1:-16} mib=${2:-64} rounds=${3:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/berth
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen 127.0.0.1:$port --data-dir "$work/src" >"$work/log" 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:$port/healthz >/dev/null; do sleep 0.1; done
python3 - "$port" "$images" "$mib" <<'PY'
import hashlib, json, os, sys, urllib.request
port, images, mib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
base = f"http://127.0.0.1:{port}/v2/bench/app"
def post(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/blobs/uploads/?digest={d}", data=data, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).read()
    return {"digest": d, "size": len(data)}
for i in range(images):
    layer = post(os.urandom(mib << 20))
    cfg = post(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode()
    req = urllib.request.Request(f"{base}/manifests/t{i}", data=m, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(req).read()
PY
kill $pid; wait $pid 2>/dev/null || true
echo "dataset: $images images x $mib MiB ($(du -sm "$work/src" | cut -f1) MiB on disk); $(nproc) cores"
printf '%-24s %10s %10s %12s\n' step seconds MB/s bundle_MB
run() { # name, command...
  local name=$1; shift
  sync; local t0=$(date +%s.%N)
  "$@" >/dev/null
  local t1=$(date +%s.%N)
  python3 - "$name" "$t0" "$t1" "$work" <<'PY'
import os, sys
name, t0, t1, work = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
blob = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(work, "src", "blobs")) for f in fs)
f = os.path.join(work, "b.tar.zst" if "zst" in name else "b.tar")
size = os.path.getsize(f) / 1e6 if os.path.exists(f) else 0
print(f"{name:<24} {t1 - t0:>10.2f} {blob / 1e6 / (t1 - t0):>10.0f} {size:>12.1f}")
PY
}
for r in $(seq 1 "$rounds"); do
  rm -rf "$work/b.tar" "$work/b.tar.zst" "$work/d1" "$work/d2"
  run "export tar" "$bin" export --data-dir "$work/src" -o "$work/b.tar" -q
  run "import tar" "$bin" import --data-dir "$work/d1" "$work/b.tar" -q
  run "export tar.zst" "$bin" export --data-dir "$work/src" -o "$work/b.tar.zst" -q
  run "import tar.zst" "$bin" import --data-dir "$work/d2" "$work/b.tar.zst" -q
done
