#!/usr/bin/env bash
# The rules engine's speed, side by side in one run:
#   1. records behaviour logs: every workload of `kanshi workload` under `kanshi trace` on the host
#   2. kanshi bench rules: the built-in set on one core over those events repeated to --events
#      (engine only, events parsed beforehand), and memory as open sequences pile up
#   3. end to end on one log file (the recorded logs repeated --copies times): kanshi rules check
#      with the built-in set, with no rule (reading the log), and jq filtering one single-event
#      rule (credential-file-read) over the same file — medians of --rounds
#
# Usage: scripts/bench-rules.sh [--events N] [--rounds R] [--copies C] [--kanshi PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

kanshi=${KANSHI:-$PWD/.build/release/kanshi}
events=10000000
rounds=3
copies=30
while [ $# -gt 0 ]; do
    case "$1" in
        --kanshi) kanshi=$2; shift 2 ;;
        --events) events=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --copies) copies=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "bench-rules: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v jq >/dev/null || { echo "bench-rules: jq is missing (apt-get install jq)" >&2; exit 1; }
if [ ! -x "$kanshi" ]; then
    echo "bench-rules: building kanshi (release)" >&2
    swift build -c release --product kanshi >/dev/null
    kanshi=$PWD/.build/release/kanshi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-bench-rules.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$kanshi" corpus build --dir "$work/corpus" --seed 4 --size-mib 16 >/dev/null
logs=()
for w in $("$kanshi" workload list | awk '{print $1}'); do
    rm -rf "$work/run"; cp -a "$work/corpus" "$work/run"
    "$kanshi" trace --quiet --log "$work/$w.jsonl" -- "$kanshi" workload "$w" --dir "$work/run" --seed 2 --rate-mib 8 >/dev/null 2>&1 || true
    logs+=(--log "$work/$w.jsonl")
done
echo "== recorded: $(cat "$work"/*.jsonl | wc -l) events from $(( ${#logs[@]} / 2 )) workloads under kanshi trace"

echo "== engine (one core, events in memory)"
"$kanshi" bench rules "${logs[@]}" --events "$events" --rounds "$rounds"

echo "== end to end on one log file (read + rules), median of $rounds"
for i in $(seq 1 "$copies"); do cat "$work"/*.jsonl; done > "$work/big.log"
lines=$(wc -l < "$work/big.log")
printf -- "- rule: nothing\n  condition: ev = dropped and pid = -1\n" > "$work/none.yaml"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
jqfilter='select(.ev=="open" and .ret>=0 and ((.path=="/etc/shadow" or .path=="/etc/gshadow" or .path=="/etc/sudoers") or ((.path|test("/\\.ssh/id_")) and (.path|endswith(".pub")|not)) or (.path|test("/\\.ssh/.*_key$")) or (.path|endswith("/.aws/credentials")) or (.path|endswith("/.docker/config.json"))))'
all=(); none=(); jqs=()
for r in $(seq 1 "$rounds"); do
    all+=("$(timed "$kanshi" rules check --quiet --log "$work/big.log")")
    none+=("$(timed "$kanshi" rules check --quiet --rules "$work/none.yaml" --log "$work/big.log")")
    jqs+=("$(timed jq -c "$jqfilter" "$work/big.log")")
done
a=$(printf "%s\n" "${all[@]}" | median); n=$(printf "%s\n" "${none[@]}" | median); j=$(printf "%s\n" "${jqs[@]}" | median)
printf "%d events (%s)\n" "$lines" "$(du -h "$work/big.log" | cut -f1)"
printf "kanshi rules check, built-in set:             %.2f s  %.2f M events/s\n" "$a" "$(echo "$lines / $a / 1000000" | bc -l)"
printf "kanshi rules check, no rule (reading only):  %.2f s  %.2f M events/s\n" "$n" "$(echo "$lines / $n / 1000000" | bc -l)"
printf "jq, one single-event rule:                   %.2f s  %.2f M events/s\n" "$j" "$(echo "$lines / $j / 1000000" | bc -l)"
printf "kanshi (the built-in set) vs jq (one rule): %.2fx the speed\n" "$(echo "$j / $a" | bc -l)"

echo "== alert delay per workload (host, under kanshi trace; the first write under the corpus to the first alert)"
args=()
for f in "$work"/*.jsonl; do
    n=$(basename "$f" .jsonl)
    args+=("$n=$f")
done
python3 scripts/rules-delays.py "$kanshi" "$work/run" "${args[@]}"
