#!/usr/bin/env bash
# Faults and abuse against real processes: SIGKILL during writes (server, client pull/push, office catch-up),
# SIGTERM under load, a filling disk, 1,000 idle TLS connections with slow-loris peers, a WATCH that never reads,
# two nodes on one PostgreSQL (a node killed, PostgreSQL restarted, under load).
#   Scripts/chaos.sh [--quick] [--json FILE] [SCENARIO ...]     (scenarios: crash sigterm client replica
#                                                                 diskfull flood watch postgres; default all)
# Needs root for the disk-full case (it mounts a small tmpfs). CHAOS_SEED=N repeats a run's random choices.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
source Scripts/lib/postgres.sh
ensure_packages python3
swift build -c release --product timelined >&2
swift build -c release --product timeline >&2
bin=$(swift build -c release --show-bin-path)
# 1,000 connections need more descriptors than the usual 1,024 soft limit, on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
seed=${CHAOS_SEED:-$RANDOM}
echo "chaos: seed $seed, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
# The PostgreSQL scenario's own cluster: it stops and starts it.
start_private_postgres
trap stop_private_postgres EXIT
CHAOS_SEED=$seed python3 Scripts/lib/chaos.py --bin "$bin" "$@"
