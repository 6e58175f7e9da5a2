#!/usr/bin/env bash
# Berth with its embedded metadata (redb) and with the metadata in
# PostgreSQL 15, side by side in one run (../shared/bench/regbench.py), and
# CNCF Distribution 2.8.2 (filesystem driver) beside them for scale.
#
#   benches/metadata-engines.sh [ROUNDS=2] [extra regbench arguments...]
#
# Needs: PostgreSQL (Debian postgresql), docker-registry, wrk, hey. The
# PostgreSQL cluster is started by tests/services/postgres.sh with its
# default durability (fsync on, synchronous_commit on): a 201 from either
# Berth is durable. Results: benches/metadata-engines.json and the table.
set -euo pipefail
rounds=${1:-2}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
regbench=${REGBENCH:-$root/../shared/bench/regbench.py}
bin=$root/target/release/berth
(cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
chmod 755 "$work" # the postgres user reaches its cluster inside
pg_ctl=$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
stop_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$pg_ctl" -D "$work/pg/cluster" -m fast -w stop; else "$pg_ctl" -D "$work/pg/cluster" -m fast -w stop; fi >/dev/null 2>&1 || true
}
trap 'kill $dpid $epid $ppid 2>/dev/null || true; wait 2>/dev/null || true; stop_pg; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgenv=$("$root/tests/services/postgres.sh" "$work/pg")
eval "$pgenv"
dport=$(free_port)
eport=$(free_port)
pport=$(free_port)
mkdir -p "$work/dist" "$work/embedded" "$work/postgres"
cat >"$work/dist.yml" <<YML
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
YML
docker-registry serve "$work/dist.yml" >"$work/dist.log" 2>&1 &
dpid=$!
env -u BERTH_METADATA_ENGINE -u BERTH_METADATA_URL -u BERTH_METADATA_PASSWORD_FILE \
  "$bin" serve --listen "127.0.0.1:$eport" --data-dir "$work/embedded" >"$work/embedded.log" 2>&1 &
epid=$!
"$bin" serve --listen "127.0.0.1:$pport" --data-dir "$work/postgres" >"$work/postgres.log" 2>&1 &
ppid=$!
for p in $dport $eport $pport; do
  until curl -so /dev/null "http://127.0.0.1:$p/v2/"; do sleep 0.1; done
done
[ -e "$work/postgres/metadata-in-postgres" ] || { echo "the PostgreSQL-backed berth is not on PostgreSQL" >&2; exit 1; }
python3 "$regbench" --rounds "$rounds" --out "$root/benches/metadata-engines.json" \
  --target "distribution=http://127.0.0.1:$dport,pid=$dpid,storage=$work/dist" \
  --target "berth-redb=http://127.0.0.1:$eport,pid=$epid,storage=$work/embedded" \
  --target "berth-postgres=http://127.0.0.1:$pport,pid=$ppid,storage=$work/postgres" "$@"
