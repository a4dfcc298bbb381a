#!/usr/bin/env bash
# The server under load, side by side in one run:
#   N sensors on loopback (kanshi bench ship: each writes block records into its own journal as
#   fast as its shipper lets it, and ships them) for S seconds, while this script kills the server
#   with -9 and restarts it twice; then: every journal the server holds verifies, every sensor's
#   local journal equals what the server acknowledged (kanshi server verify --journal), MB/s
#   ingested beside writing the same bytes to local disk, and the server's memory over time.
#
# Usage: scripts/bench-server.sh [--sensors N] [--seconds S] [--kanshi PATH] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

kanshi=${KANSHI:-$PWD/.build/release/kanshi}
sensors=32
seconds=120
keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --kanshi) kanshi=$2; shift 2 ;;
        --sensors) sensors=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "bench-server: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ ! -x "$kanshi" ]; then
    echo "bench-server: building kanshi (release)" >&2
    swift build -c release --product kanshi >/dev/null
    kanshi=$PWD/.build/release/kanshi
fi

work=${keep:-$(mktemp -d "${TMPDIR:-/tmp}/kanshi-bench-server.XXXXXX")}
mkdir -p "$work"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
    [ -z "$keep" ] && rm -rf "$work"
}
trap cleanup EXIT

data="$work/srv"
: > "$work/tokens"
for i in $(seq 1 "$sensors"); do "$kanshi" server token add "s$i" --data "$data" >> "$work/tokens"; done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

start_server() {
    "$kanshi" server --data "$data" --listen "127.0.0.1:$port" >> "$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do grep -q "server at" "$work/server.log" 2>/dev/null && break; sleep 0.1; done
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

start_server
echo "== $sensors sensors ship for $seconds s to the server on port $port; it is killed with -9 at 1/3 and 2/3 of the run and restarted"
"$kanshi" bench ship --server "http://127.0.0.1:$port" --tokens "$work/tokens" --dir "$work" --seconds "$seconds" --json > "$work/bench.json" &
bench_pid=$!

: > "$work/rss.txt"
incarnation=1
t0=$(date +%s)
kills=0
while kill -0 "$bench_pid" 2>/dev/null; do
    now=$(( $(date +%s) - t0 ))
    echo "$incarnation $now $(rss_mib "$server_pid")" >> "$work/rss.txt"
    if { [ $kills -eq 0 ] && [ $now -ge $(( seconds / 3 )) ]; } || { [ $kills -eq 1 ] && [ $now -ge $(( 2 * seconds / 3 )) ]; }; then
        kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
        kills=$(( kills + 1 ))
        echo "   $now s: server killed with -9 ($kills), restarting"
        sleep 1
        start_server
        incarnation=$(( incarnation + 1 ))
    fi
    sleep 2
done
wait "$bench_pid" && bench_ok=1 || bench_ok=0
kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true
server_pid=""

python3 - "$work/bench.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"== ingested {r['acknowledgedBytes'] / 1e6:.0f} MB from {r['sensors']} sensors in {r['seconds']:.1f} s: "
      f"{r['ingestMBps']:.1f} MB/s; the same bytes to local disk: {r['localDiskMBps']:.1f} MB/s; ratio {r['ratio']:.2f}")
print(f"   unacknowledged at the end: {r['unacknowledgedBytes']} bytes; failed attempts while the server was down: {r['failedAttempts']}; "
      f"chunks the server already had: {r['chunksResent']}; sensors held back by back-pressure: {r['heldBack']} time(s)")
EOF

echo "== every stored journal verifies, and equals the sensor's own up to what was acknowledged"
"$kanshi" server verify --data "$data" --json > "$work/verify.json" && verify_ok=1 || verify_ok=0
python3 -c "import json,sys; f=json.load(open(sys.argv[1])); print(f'   {sum(x[\"ok\"] for x in f)} of {len(f)} recordings verify; {sum(x[\"bytes\"] for x in f)/1e6:.0f} MB stored')" "$work/verify.json"
mismatch=0
for i in $(seq 1 "$sensors"); do
    "$kanshi" server verify --data "$data" --recording "s$i/bench" --journal "$work/sensors/sensor-$i.journal" > /dev/null || { echo "   s$i: DIFFERS"; mismatch=$(( mismatch + 1 )); }
done
echo "   local journals that differ from what the server acknowledged: $mismatch"

echo "== server memory (VmRSS, MiB) per incarnation: first / median / last sample after 10 s"
python3 - "$work/rss.txt" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and l.split()[2] != "?"]
by = {}
for inc, t, rss in rows: by.setdefault(inc, []).append((int(t), float(rss)))
for inc, xs in sorted(by.items()):
    xs = [x for x in xs if x[0] - xs[0][0] >= 10] or xs
    v = [r for _, r in xs]
    print(f"   incarnation {inc}: {v[0]:.1f} / {statistics.median(v):.1f} / {v[-1]:.1f} ({len(v)} samples, {xs[0][0]}-{xs[-1][0]} s)")
EOF
[ $bench_ok -eq 1 ] && [ $verify_ok -eq 1 ] && [ $mismatch -eq 0 ] || { echo "bench-server: FAILED (see $work with --keep)"; exit 1; }
