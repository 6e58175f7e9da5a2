#!/usr/bin/env bash
# The services of a Berth cluster, on loopback: PostgreSQL (metadata) and
# Garage (blob bodies), each on free ports in a directory of its own; the
# BERTH_* settings of both are printed (eval them), so that any number of
# `berth serve` started with them are one registry.
# Usage: eval "$(tests/services/up.sh)"
# Stop: tests/services/down.sh (with those variables set)
set -euo pipefail
here=$(dirname "$0")
"$here/postgres.sh"
"$here/garage.sh"
