#!/usr/bin/env bash
# Start a one-node Garage (S3-compatible object store) on free loopback
# ports, with a bucket `berth` and a key allowed on it, for a Berth with
# `[storage] blobs = "s3"`; print its settings as BERTH_* environment lines
# (eval them). Stop it with  kill "$(cat "$BERTH_GARAGE_DIR/pid")"
# Usage: eval "$(tests/services/garage.sh [DIR])"
set -euo pipefail
dir=${1:-$(mktemp -d /tmp/berth-garage.XXXXXX)}
garage=$(command -v garage || echo "$HOME/.cargo/bin/garage")
[ -x "$garage" ] || { echo "garage not found: cargo install garage --locked" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rpc=$(free_port); s3=$(free_port)
mkdir -p "$dir"
cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
TOML
g() { "$garage" -c "$dir/garage.toml" "$@"; }
RUST_LOG=warn setsid "$garage" -c "$dir/garage.toml" server >"$dir/log" 2>&1 </dev/null &
echo $! >"$dir/pid"
for _ in $(seq 1 100); do g status >/dev/null 2>&1 && break; sleep 0.1; done
id=$(g node id -q | cut -d@ -f1)
g layout assign -z dc1 -c 1G "$id" >/dev/null
g layout apply --version 1 >/dev/null
g bucket create berth >/dev/null
key=$(g key create berth-key)
g bucket allow --read --write --owner berth --key berth-key >/dev/null
echo "$key" | sed -n 's/^Secret key: *//p' >"$dir/s3.secret"
key_id=$(echo "$key" | sed -n 's/^Key ID: *//p')
# the layout reaches the S3 API a moment after `apply`
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$s3/" && break; sleep 0.1
done
cat <<VARS
export BERTH_GARAGE_DIR=$dir
export BERTH_STORAGE_BLOBS=s3
export BERTH_STORAGE_S3_ENDPOINT=http://127.0.0.1:$s3
export BERTH_STORAGE_S3_BUCKET=berth
export BERTH_STORAGE_S3_REGION=garage
export BERTH_STORAGE_S3_ACCESS_KEY_ID=$key_id
export BERTH_STORAGE_S3_SECRET_ACCESS_KEY_FILE=$dir/s3.secret
VARS
