#!/usr/bin/env bash
# The test command: installs what a fresh Debian machine lacks (only when missing), builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
ensure_packages
swift build --build-tests
swift test --skip-build "$@"
