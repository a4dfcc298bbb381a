#!/usr/bin/env bash
# The memory sensor's speed, side by side in one run (scripts/bench-memory.py):
#   full acquisition of a guest's RAM: kanshi sandbox dump vs QEMU's own
#     dump-guest-memory and pmemsave (QMP), into /dev/shm by default
#   page capture: a guest process rewriting MiB/s of its memory, run plain and
#     watched (sandbox run --memory-watch, 1 s scans): the guest's slowdown
#
# Usage: scripts/bench-memory.sh [--rounds R] [--memory MIB] [--target DIR] [--phases "dump capture"]
#                                [--churn-mibps N] [--churn-seconds S] [--kanshi PATH] [--compact]
#   --compact: compact memory (root) before each dump, untimed, for every method alike: with a
#   target on a tmpfs mounted huge=always the dumps then get huge pages without waiting for them
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

kanshi=${KANSHI:-$PWD/.build/release/kanshi}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kanshi) kanshi=$2; shift 2 ;;
        --rounds|--memory|--target|--phases|--churn-mibps|--churn-seconds|--churn-buffer|--interval|--methods)
            args+=("$1" "$2"); shift 2 ;;
        --compact) args+=("$1"); shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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
trap 'rm -rf "$work"' EXIT
guest=$PWD/.build/guest
bash scripts/guest/build-guest.sh "$guest" >&2
# The dump phase's guest fills 3/4 of its RAM with data (so no method meets only zero pages), then waits.
cat >"$work/fill.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
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
cc -static -O2 -o "$work/churn" scripts/bench-memory/churn.c
BENCH_WORK=$work python3 scripts/bench-memory.py --kanshi "$kanshi" --guest "$guest" --fill "$work/fill" --churn "$work/churn" "${args[@]}"
