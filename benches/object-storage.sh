#!/usr/bin/env bash
# Berth on S3 (Garage) + PostgreSQL and CNCF Distribution 2.8.2 on its S3
# driver, both pointed at the same one-node Garage bucket (different
# prefixes), side by side in one run (../shared/bench/regbench.py); then
# what one push costs Berth's services (benches/push-cost.py).
#
#   benches/object-storage.sh [ROUNDS=1] [extra regbench arguments...]
#
# Needs: garage (cargo install garage --locked), PostgreSQL, docker-registry,
# wrk, hey. Blob redirects are off on both: every byte goes through the
# registry. Garage runs with its defaults (no fsync of data or metadata,
# for both registries alike). This machine's AWS_CA_BUNDLE makes the Go AWS
# SDK in Distribution panic: it starts without it.
# Results: benches/object-storage.json and the tables.
set -euo pipefail
rounds=${1:-1}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=${REGBENCH:-$root/../shared/bench/regbench.py}
bin=$root/target/release/berth
(cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
chmod 755 "$work" # the postgres user reaches its cluster inside
cleanup() {
  kill $dpid $bpid 2>/dev/null || true
  wait 2>/dev/null || true
  # the servers' logs outlive the run: a failed request is explained there
  for l in berth dist; do
    [ -f "$work/$l.log" ] && cp "$work/$l.log" "${TMPDIR:-/tmp}/object-storage-$l.log"
  done
  echo "object-storage: logs in ${TMPDIR:-/tmp}/object-storage-{berth,dist}.log" >&2
  BERTH_PG_DIR=$work/pg BERTH_GARAGE_DIR=$work/garage "$root/tests/services/down.sh" || true
  rm -rf "$work"
}
dpid=; bpid=
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
eval "$("$root/tests/services/postgres.sh" "$work/pg")"
eval "$("$root/tests/services/garage.sh" "$work/garage")"
dport=$(free_port)
bport=$(free_port)
cat >"$work/dist.yml" <<YML
version: 0.1
log:
  level: error
storage:
  s3:
    accesskey: $BERTH_STORAGE_S3_ACCESS_KEY_ID
    secretkey: $(cat "$BERTH_STORAGE_S3_SECRET_ACCESS_KEY_FILE")
    region: garage
    regionendpoint: $BERTH_STORAGE_S3_ENDPOINT
    bucket: $BERTH_STORAGE_S3_BUCKET
    rootdirectory: /distribution
    secure: false
    v4auth: true
  redirect:
    disable: true
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dport
YML
env -u AWS_CA_BUNDLE docker-registry serve "$work/dist.yml" >"$work/dist.log" 2>&1 &
dpid=$!
mkdir -p "$work/berth"
BERTH_STORAGE_S3_PREFIX=berth "$bin" serve --listen "127.0.0.1:$bport" --data-dir "$work/berth" >"$work/berth.log" 2>&1 &
bpid=$!
for p in $dport $bport; do
  for _ in $(seq 1 100); do curl -so /dev/null "http://127.0.0.1:$p/v2/" && break; sleep 0.1; done
done
python3 "$regbench" --rounds "$rounds" --out "$root/benches/object-storage.json" \
  --sizes 32,256 --concurrency 1,8 --small man_put,man_get --skip dataset,up_chunk \
  --target "distribution-s3=http://127.0.0.1:$dport,pid=$dpid" \
  --target "berth-s3-postgres=http://127.0.0.1:$bport,pid=$bpid" "$@"
pgport=${BERTH_METADATA_URL##*:}
pgport=${pgport%%/*}
psql="$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")")/psql"
export PGPASSWORD=$(cat "$BERTH_METADATA_PASSWORD_FILE")
for mode in "" --chunked; do
  python3 "$root/benches/push-cost.py" --url "http://127.0.0.1:$bport" $mode \
    --psql "$psql -h 127.0.0.1 -p $pgport -U berth -d berth"
done
