#!/usr/bin/env bash
# The test suite under a sanitizer, in its own build folder; the timelined processes the tests start are
# built with it too, and stop at their first report.
#   Scripts/sanitize.sh [thread|address] [swift test options, e.g. --filter ServerTests]   (default thread)
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
source Scripts/lib/postgres.sh
ensure_packages

sanitizer=${1:-thread}
shift || true
case "$sanitizer" in
    thread | address) ;;
    *) echo "usage: Scripts/sanitize.sh [thread|address] [swift test options]" >&2; exit 2 ;;
esac
scratch=.build-$sanitizer
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=0 ${ASAN_OPTIONS:-}"
swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch" >&2
start_private_postgres
trap stop_private_postgres EXIT
swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" "$@"
echo "sanitize: swift test passed under --sanitize=$sanitizer $*"
