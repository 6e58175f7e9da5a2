#!/usr/bin/env bash
# Start a PostgreSQL 15 cluster of its own on a free loopback port, for a
# Berth with `[metadata] engine = "postgres"`, and print its settings as
# BERTH_* environment lines (eval them). Stop it with
#   pg_ctl -D "$BERTH_PG_DIR/cluster" -m fast stop   (as the postgres user)
# Usage: eval "$(tests/services/postgres.sh [DIR])"
set -euo pipefail
dir=${1:-$(mktemp -d /tmp/berth-pg.XXXXXX)}
bin=$(dirname "$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir"
echo "pg-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')" > "$dir/password"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
as_owner "$bin/initdb" -D "$dir/cluster" -U berth --auth=scram-sha-256 \
  --pwfile="$dir/password" -E UTF8 >"$dir/initdb.log"
as_owner "$bin/pg_ctl" -D "$dir/cluster" -l "$dir/log" -w \
  -o "-p $port -c listen_addresses=127.0.0.1 -c max_connections=200 -k $dir" start >/dev/null
PGPASSWORD=$(cat "$dir/password") "$bin/createdb" -h 127.0.0.1 -p "$port" -U berth berth
cat <<VARS
export BERTH_PG_DIR=$dir
export BERTH_METADATA_ENGINE=postgres
export BERTH_METADATA_URL=postgres://berth@127.0.0.1:$port/berth
export BERTH_METADATA_PASSWORD_FILE=$dir/password
VARS
