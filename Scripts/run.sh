#!/usr/bin/env bash
# The main job: builds release binaries, starts timelined on an embedded SQLite store with the sample timeline,
# runs a short client session against it over TLS, then keeps serving until Ctrl-C.
#   Scripts/run.sh [--once] [--fresh]
#   --once   stop the server after the session (for scripts and CI)
#   --fresh  start from a new data folder
# Environment: TIMELINE_DATA (default ./.timeline-data), TIMELINE_LISTEN (default 127.0.0.1:7447).
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
ensure_packages

once=0
fresh=0
for arg in "$@"; do
    case "$arg" in
        --once) once=1 ;;
        --fresh) fresh=1 ;;
        *) echo "usage: Scripts/run.sh [--once] [--fresh]" >&2; exit 2 ;;
    esac
done

data=${TIMELINE_DATA:-$PWD/.timeline-data}
listen=${TIMELINE_LISTEN:-127.0.0.1:7447}
[ "$fresh" = 1 ] && rm -rf "$data"

echo "== building release binaries (the first build takes a few minutes)"
swift build -c release --product timelined
swift build -c release --product timeline
bin=$(swift build -c release --show-bin-path)

log=$(mktemp "${TMPDIR:-/tmp}/timelined.XXXXXX")
"$bin/timelined" serve --data "$data" --listen "$listen" >"$log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
    grep -q "^listening on " "$log" && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
grep -q "^listening on " "$log" || { echo "timelined did not start" >&2; cat "$log" >&2; exit 1; }

address=$(sed -n 's/^listening on //p' "$log")
fingerprint=$(sed -n 's/^certificate SHA-256 fingerprint //p' "$log")
token=$(cat "$data/admin.token")
echo "== timelined is serving"
sed -n '1,/^listening on/p' "$log" | sed 's/^admin token.*/admin token: see '"${data//\//\\/}"'\/admin.token/'
cat <<INFO

Reach it by hand (type one request per line, e.g. "a1 AUTH <token>", "a2 LOG", "a3 QUIT"):
  openssl s_client -quiet -connect $address
The certificate is self-signed; its SHA-256 fingerprint is $fingerprint
(check it with: openssl s_client -connect $address </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256).
The admin token is in $data/admin.token; make tokens for people with:
  $bin/timelined token add ana --role annotator --data $data

INFO

echo "== an analyst's session with the timeline CLI (its own home, a replica of the server)"
client_home="$data/analyst-home"
rm -rf "$client_home"
token_file="$data/analyst.token"
# The token goes through a file only its owner reads, not the command line (where ps and shell history see it).
(umask 077 && "$bin/timelined" token add "analyst-$(date +%s)" --role editor --data "$data" >"$token_file")
run() { printf '$ timeline'; printf ' %q' "$@"; echo; TIMELINE_HOME="$client_home" "$bin/timeline" "$@" || echo "(exit $?)"; echo; }
run init --server "$address" --token-file "$token_file" --fingerprint "$fingerprint"
run log --since 2014-01-01 --until 2014-06-30
run show W9PNEPG
run annotate W9PNEPG "Working group meets twice a year; next in the U.S., summer 2014" --tag cyber --tag defense
run edit ZBYNZC1 --date "October 18 to 19, 2012" --add-tag corrected
run history ZBYNZC1
run log --tag cyber
run sync
run status --json

echo "== the same server by hand, through openssl s_client"
{ printf 'h1 AUTH %s\nh2 GET 019ECZQW00ZB\nh3 QUIT\n' "$token"; sleep 2; } \
    | timeout 20 openssl s_client -quiet -verify_quiet -connect "$address" 2>/dev/null | cut -c1-200 | sed 's/^/S: /'
echo
"$bin/timelined" verify --data "$data" | sed 's/^/verify: /'

if [ "$once" = 1 ]; then
    echo "== stopping the server (--once)"
    exit 0
fi
echo "== serving on $address until Ctrl-C"
wait "$server"
