#!/usr/bin/env bash
# `berth migrate` throughput: an embedded registry into S3 (Garage) +
# PostgreSQL and back, on this machine's loopback services.
#
#   benches/migrate.sh [IMAGES=8] [MIB_PER_LAYER=64] [SMALL=400]
#
# Pushes IMAGES images of one random (incompressible) layer of
# MIB_PER_LAYER MiB, and SMALL images of a 4 KiB layer (per-body cost),
# through a real `berth serve`, stops it, starts PostgreSQL and Garage
# (tests/services/up.sh), then times `berth migrate` there and back into a
# new data directory. Prints MB/s of body bytes (MB = 10^6) and bodies/s
# of each direction, wall clock of the whole command (every body hashed,
# every install durable, row counts checked).
set -euo pipefail
images=${1:-8} mib=${2:-64} small=${3:-400}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/berth
[ -x "$bin" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; "$root/tests/services/down.sh" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen 127.0.0.1:$port --data-dir "$work/src" >"$work/log" 2>&1 &
pid=$!
until curl -sf http://127.0.0.1:$port/healthz >/dev/null; do sleep 0.1; done
python3 - "$port" "$images" "$mib" "$small" <<'PY'
import hashlib, json, os, sys, urllib.request
port, images, mib, small = (int(a) for a in sys.argv[1:5])
def post(repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/{repo}/blobs/uploads/?digest={d}", data=data,
                                 method="POST", headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req).read()
    return {"digest": d, "size": len(data)}
def image(repo, tag, size):
    layer = post(repo, os.urandom(size))
    cfg = post(repo, json.dumps({"architecture": "amd64", "os": "linux", "tag": tag,
                                 "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}", data=m, method="PUT",
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(req).read()
for i in range(images):
    image("bench/big", f"t{i}", mib << 20)
for i in range(small):
    image("bench/small", f"t{i}", 4096)
PY
kill $pid; wait $pid 2>/dev/null || true
eval "$("$root/tests/services/up.sh")"
python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
env = {k: v for k, v in os.environ.items() if k.startswith(("BERTH_STORAGE_", "BERTH_METADATA_"))}
sections = {}
for k, v in env.items():
    for p, s in (("BERTH_STORAGE_S3_", "storage.s3"), ("BERTH_STORAGE_", "storage"), ("BERTH_METADATA_", "metadata")):
        if k.startswith(p):
            val = v if v.isdigit() else '"%s"' % v
            sections.setdefault(s, []).append(f"{k[len(p):].lower()} = {val}")
            break
def write(name, data_dir, with_services):
    text = f'data_dir = "{work}/{data_dir}"\n'
    if with_services:
        for s, lines in sorted(sections.items()):
            text += f"[{s}]\n" + "\n".join(lines) + "\n"
    open(os.path.join(work, name), "w").write(text)
write("s3.toml", "node", True)
write("home.toml", "home", False)
PY
echo "dataset: $images x $mib MiB + $small x 4 KiB images ($(du -sm "$work/src" | cut -f1) MiB on disk); $(nproc) cores"
printf '%-22s %9s %9s %9s %9s\n' direction seconds bodies MB/s bodies/s
run() { # name, migrate arguments...
  local name=$1; shift
  sync; local t0=$(date +%s.%N)
  # the services' BERTH_* settings are in the config files, not for the source
  # shellcheck disable=SC2046
  env $(env | grep -o '^BERTH_\(STORAGE\|METADATA\)_[A-Z0-9_]*' | sed 's/^/-u /') \
    "$bin" migrate "$@" >"$work/report.json"
  local t1=$(date +%s.%N)
  python3 - "$name" "$t0" "$t1" "$work/report.json" <<'PY'
import json, sys
name, t0, t1, rep = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4]))
s = t1 - t0
n = rep["bodies_copied"]
print(f"{name:<22} {s:>9.2f} {n:>9} {rep['bytes_copied'] / 1e6 / s:>9.0f} {n / s:>9.0f}")
PY
}
run "embedded -> S3 + PG" --data-dir "$work/src" --to-config "$work/s3.toml"
run "S3 + PG -> embedded" --config "$work/s3.toml" --to-config "$work/home.toml"
