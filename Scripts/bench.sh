#!/usr/bin/env bash
# Benchmarks: a release build, data generated here, every figure next to its reference measured in the same run.
#   Scripts/bench.sh [--quick] [--json FILE]
# --quick runs every case at a small size (CI runs it so the harness cannot rot); no figure is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
# The references: sqlite3 (B1), PostgreSQL 15 with pgbench (B2); /usr/bin/time reads peak RSS.
ensure_packages postgresql time

quick=""
json=""
while (($#)); do
    case "$1" in
        --quick) quick="--quick" ;;
        --json) json="$2"; shift ;;
        *) echo "usage: Scripts/bench.sh [--quick] [--json FILE]" >&2; exit 2 ;;
    esac
    shift
done

swift build -c release --product timeline-bench >&2
swift build -c release --product timelined >&2
swift build -c release --product timeline >&2
bin=$(swift build -c release --show-bin-path)
# The build leaves hundreds of MiB of dirty pages; written back during the first figures, they made B1's fsyncs
# (one per commit) wait behind them: 0.19 of the reference right after the build, 0.28-0.32 alone (2026-11-29).
sync
work=$(mktemp -d "${TMPDIR:-/tmp}/timeline-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
# 500 watchers and 64 writers need more descriptors than the usual soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "whole-process benchmarks (real timelined and timeline processes over TLS on loopback; references in the same run):"
mkdir -p "$work/whole"
"$bin/timeline-bench" $quick --whole "$bin" "$work/whole" ${json:+--json "$work/whole.json"}
echo
echo "store benchmarks (in-process, files in $work):"
BENCH_DIR="$work" "$bin/timeline-bench" $quick ${json:+--json "$work/store.json"}
echo
echo "replication benchmarks (real timelined processes over TLS on loopback):"
mkdir -p "$work/replication"
"$bin/timeline-bench" $quick --replication "$bin/timelined" "$work/replication" ${json:+--json "$work/replication.json"}
echo
echo "PostgreSQL store benchmarks (real timelined nodes on a private PostgreSQL; pgbench and the SQLite store beside them):"
mkdir -p "$work/postgres"
"$bin/timeline-bench" $quick --postgres "$bin" "$work/postgres" ${json:+--json "$work/postgres.json"}
echo
echo "picture benchmarks (the HTML export of a large timeline in headless Chromium):"
mkdir -p "$work/picture"
"$bin/timeline-bench" $quick --picture "$work/picture" ${json:+--json "$work/picture.json"}
echo
echo "micro-benchmarks (package-benchmark, in-process; medians per operation, each next to its reference):"
# The plugin builds the suite in release mode; TIMELINE_BENCH_QUICK shortens every benchmark.
mkdir -p "$work/micro"
(cd Benchmarks && ${quick:+env TIMELINE_BENCH_QUICK=1} swift package benchmark --no-progress --quiet \
    --format histogramPercentiles --path "$work/micro" >&2)
python3 Scripts/lib/microbench.py "$work/micro" ${json:+--json "$work/micro.json"}
if [ -n "$json" ]; then
    python3 -c 'import json,sys; print(json.dumps(sum((json.load(open(f)) for f in sys.argv[1:]), []), indent=1))' \
        "$work/whole.json" "$work/store.json" "$work/replication.json" "$work/postgres.json" "$work/picture.json" \
        "$work/micro.json" \
        > "$json"
fi
