#!/usr/bin/env bash
# The test command: installs what a fresh Debian machine lacks (only when missing), builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
source Scripts/lib/postgres.sh
ensure_packages
swift build --build-tests
# The PostgreSQL store's tests run against a private cluster, started here and stopped however the tests end.
start_private_postgres
trap stop_private_postgres EXIT
swift test --skip-build "$@"
