#!/usr/bin/env bash
# Benchmarks: a release build, data generated here, every figure next to its reference measured in the same run.
#   Scripts/bench.sh [--quick] [--json FILE]
# --quick runs every case at a small size (CI runs it so the harness cannot rot); no figure is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
ensure_packages

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
work=$(mktemp -d "${TMPDIR:-/tmp}/timeline-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "store benchmarks (in-process, files in $work):"
BENCH_DIR="$work" .build/release/timeline-bench $quick ${json:+--json "$json"}
