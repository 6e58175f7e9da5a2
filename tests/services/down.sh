#!/usr/bin/env bash
# Stop what tests/services/up.sh started (its variables set) and remove
# their directories.
set -uo pipefail
if [ -n "${BERTH_GARAGE_DIR:-}" ] && [ -f "$BERTH_GARAGE_DIR/pid" ]; then
  kill "$(cat "$BERTH_GARAGE_DIR/pid")" 2>/dev/null
  rm -rf "$BERTH_GARAGE_DIR"
fi
if [ -n "${BERTH_PG_DIR:-}" ]; then
  pg_ctl=$(readlink -f "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$pg_ctl" -D "$BERTH_PG_DIR/cluster" -m fast -w stop >/dev/null
  else
    "$pg_ctl" -D "$BERTH_PG_DIR/cluster" -m fast -w stop >/dev/null
  fi
  rm -rf "$BERTH_PG_DIR"
fi
