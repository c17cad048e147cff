#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with AddressSanitizer) of the line decoder, the request parser, the JSON
# parser, the edit decoder and the date parser: Sources/timeline-fuzz.
#   Scripts/fuzz.sh [--seconds N] [--jobs N]      (default 300 s on one core; CI runs --seconds 60)
# The seed corpus is every client line of Protocol/transcripts plus Tests/FuzzInputs (inputs that once broke
# something, replayed by the tests); the corpus grows in .build-fuzz/corpus between runs. A finding is saved to
# .build-fuzz/findings/ and the script exits 1: copy it into Tests/FuzzInputs/ with the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/lib/deps.sh
ensure_packages

seconds=300
jobs=1
while (($#)); do
    case "$1" in
        --seconds) seconds="$2"; shift ;;
        --jobs) jobs="$2"; shift ;;
        *) echo "usage: Scripts/fuzz.sh [--seconds N] [--jobs N]" >&2; exit 2 ;;
    esac
    shift
done

scratch=.build-fuzz
swift build -c release --product timeline-fuzz --scratch-path "$scratch" \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING >&2
fuzzer="$(swift build -c release --scratch-path "$scratch" --show-bin-path)/timeline-fuzz"

corpus="$scratch/corpus"
seeds="$scratch/seeds"
findings="$scratch/findings"
rm -rf "$seeds"
mkdir -p "$corpus" "$seeds" "$findings"
n=0
for transcript in Protocol/transcripts/*.txt; do
    # Each client line alone, and each transcript's client side as one stream.
    sed -n 's/^C: //p' "$transcript" > "$seeds/stream-$(basename "$transcript")"
    while IFS= read -r line; do
        n=$((n + 1))
        printf '%s\n' "$line" > "$seeds/line-$n"
    done < "$seeds/stream-$(basename "$transcript")"
done
cp Tests/FuzzInputs/* "$seeds/" 2>/dev/null || true
echo "fuzzing for ${seconds}s on $jobs job(s); $(ls "$seeds" | wc -l) seed inputs, $(ls "$corpus" | wc -l) in the corpus"

log="$scratch/fuzz.log"
status=0
parallel=()
((jobs > 1)) && parallel=(-jobs="$jobs" -workers="$jobs")
ASAN_OPTIONS=detect_leaks=0 "$fuzzer" "$corpus" "$seeds" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "${parallel[@]}" -artifact_prefix="$findings/" \
    > "$log" 2>&1 || status=$?
logs=("$log")
((jobs > 1)) && logs=(fuzz-*.log)
execs=$(grep -h "^stat::number_of_executed_units" "${logs[@]}" | awk '{s += $2} END {print s + 0}')
cov=$(grep -hoE "cov: [0-9]+" "${logs[@]}" | awk '{print $2}' | sort -n | tail -1)
rm -f fuzz-*.log
found=$(ls "$findings" | wc -l)
echo "fuzz: $execs inputs tried in ${seconds}s, coverage $cov edges, corpus $(ls "$corpus" | wc -l), findings $found"
if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    echo "fuzz: FINDING (exit $status); inputs in $findings, log in $log" >&2
    tail -40 "$log" >&2
    exit 1
fi
