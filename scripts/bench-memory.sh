#!/usr/bin/env bash
# The memory sensor's full acquisition, side by side in one run: a sandbox
# guest of --memory MiB (default 1024) runs a program that fills most of its
# RAM, then kanshi sandbox dump, QEMU's dump-guest-memory and QEMU's pmemsave
# each copy the guest's RAM, in interleaved rounds (scripts/bench-memory.py).
#
# Usage: scripts/bench-memory.sh [--rounds R] [--memory MIB] [--target DIR] [--kanshi PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

rounds=5 memory=1024 target=/dev/shm
kanshi=${KANSHI:-$PWD/.build/release/kanshi}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --memory) memory=$2; shift 2 ;;
        --target) target=$2; shift 2 ;;
        --kanshi) kanshi=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "bench-memory: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for t in qemu-system-x86_64 cc mkfs.ext4 python3; do
    command -v "$t" >/dev/null || { echo "bench-memory: $t is missing (scripts/setup.sh)" >&2; exit 1; }
done
if [ ! -x "$kanshi" ]; then
    echo "bench-memory: building kanshi (release)" >&2
    swift build -c release --product kanshi >/dev/null
    kanshi=$PWD/.build/release/kanshi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-bench-memory.XXXXXX")
sandbox_pid=
cleanup() {
    [ -n "$sandbox_pid" ] && kill -INT "$sandbox_pid" 2>/dev/null && wait "$sandbox_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
guest=$PWD/.build/guest
bash scripts/guest/build-guest.sh "$guest" >&2
# The guest fills 3/4 of its RAM with data (so no method meets only zero pages), then waits.
cat >"$work/fill.c" <<'EOF'
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    size_t n = (size_t)atol(argv[1]) << 20;
    unsigned char *p = malloc(n);
    if (!p) return 1;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 2654435761u >> 13);
    printf("FILLED %zu\n", n); fflush(stdout);
    pause();
    return 0;
}
EOF
cc -static -O2 -o "$work/fill" "$work/fill.c"
truncate -s 64M "$work/disk.img"
mkfs.ext4 -q -F "$work/disk.img"
"$kanshi" sandbox run --log-level warning --disk "$work/disk.img" --guest "$guest" --memory "$memory" --timeout 3600 \
    --add "$work/fill" -- "fill $((memory * 3 / 4))" >"$work/run.out" 2>&1 &
sandbox_pid=$!
for _ in $(seq 600); do
    grep -q '^FILLED' "$work/run.out" && break
    kill -0 "$sandbox_pid" 2>/dev/null || { cat "$work/run.out" >&2; echo "bench-memory: the sandbox ended early" >&2; exit 1; }
    sleep 0.5
done
grep -q '^FILLED' "$work/run.out" || { echo "bench-memory: the guest did not fill its RAM" >&2; exit 1; }
ram=$(sed -n "s/.*the guest's RAM is shared at \([^ ]*\).*/\1/p" "$work/run.out" | head -1)
[ -n "$ram" ] || { echo "bench-memory: the sandbox did not share its RAM" >&2; cat "$work/run.out" >&2; exit 1; }
python3 scripts/bench-memory.py --kanshi "$kanshi" --ram "$ram" --rounds "$rounds" --target "$target"
