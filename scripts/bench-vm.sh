#!/usr/bin/env bash
# The VM sensor's cost, side by side in one run: guest micro-benchmarks
# (getppid, open+read+close, 64-byte writes; scripts/bench-vm/vmbench.c) and
# fio in the guest, each
#   plain    QEMU 10, TCG, no sensor              (kanshi sandbox run)
#   sensor   the VM sensor: every call hooked; the calls the behaviour model
#            needs decoded, identified and logged by kanshi (sandbox run --trace)
#   sensor-all  every call decoded, identified and logged (--trace --all-calls)
#   strace   strace -f inside the guest on the same program
#   gdbstub  one QEMU gdbstub hardware breakpoint on the same call (getppid
#            only: at ~5 ms a hit, fewer calls), gdb continuing at each hit
# Rounds are interleaved; medians are printed with ratios to plain and the
# cost per hooked call.
#
# Usage: scripts/bench-vm.sh [--rounds R] [--calls N] [--fio-seconds S] [--kanshi PATH]
#                            [--variants "plain sensor ..."]   (default: all five)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

rounds=3 calls=200000 fio_seconds=5 gdb_calls=400
variants=(plain sensor sensor-all strace gdbstub)
kanshi=${KANSHI:-$PWD/.build/release/kanshi}
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --fio-seconds) fio_seconds=$2; shift 2 ;;
        --gdb-calls) gdb_calls=$2; shift 2 ;;
        --kanshi) kanshi=$2; shift 2 ;;
        --variants) read -r -a variants <<<"$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench-vm: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

for t in qemu-system-x86_64 strace fio gdb cc mkfs.ext4 python3; do
    command -v "$t" >/dev/null || { echo "bench-vm: $t is missing (scripts/setup.sh, apt-get install gdb fio)" >&2; exit 1; }
done
if [ ! -x "$kanshi" ] || [ ! -e "$(dirname "$kanshi")/libkanshi-vmi.so" ]; then
    echo "bench-vm: building kanshi and its QEMU plugin (release)" >&2
    swift build -c release --product kanshi >/dev/null && swift build -c release --product kanshi-vmi >/dev/null
    kanshi=$PWD/.build/release/kanshi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-bench-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT
guest=$PWD/.build/guest-bench
bash scripts/guest/build-guest.sh --add-binary "$(command -v strace)" --add-binary "$(command -v fio)" "$guest" >&2
cc -static -O2 -o "$work/vmbench" scripts/bench-vm/vmbench.c

disk=$work/disk.img
fresh_disk() { rm -f "$disk"; truncate -s 256M "$disk"; mkfs.ext4 -q -F -b 4096 "$disk"; }

job_for() {  # $1 = prefix before each program ("" or "strace -f -qq -o /dev/null"); $2 = calls
    local n=${2:-$calls}
    cat <<EOF
$1 vmbench getppid $n
$1 vmbench openclose $((n / 4))
$1 vmbench write64 $n
$1 fio --name=bench --filename=/mnt/fio.dat --size=64M --bs=4k --rw=randrw --ioengine=psync --direct=1 --runtime=$fio_seconds --time_based --minimal | awk -F';' '{print "fio-iops", \$8 + \$49}'
EOF
}

run_variant() {  # $1 = variant; prints "name value" lines
    fresh_disk
    local args=(sandbox run --log-level error --disk "$disk" --guest "$guest" --add "$work/vmbench" --timeout 1200)
    case "$1" in
        plain) "$kanshi" "${args[@]}" -- "$(job_for '')" ;;
        sensor) "$kanshi" "${args[@]}" --trace "$work/trace.jsonl" --quiet -- "$(job_for '')" ;;
        sensor-all) "$kanshi" "${args[@]}" --trace "$work/trace.jsonl" --all-calls --quiet -- "$(job_for '')" ;;
        # strace stops twice per call (hundreds of microseconds each under TCG): fewer calls.
        strace) "$kanshi" "${args[@]}" -- "$(job_for 'strace -f -qq -o /dev/null' $((calls / 20)))" ;;
        gdbstub)
            local port=$((20000 + RANDOM % 20000))
            # No KASLR here, so gdb can name the handler's address from the kernel's own symbols.
            local addr
            addr=$("$kanshi" sandbox kernel --guest "$guest" __x64_sys_getppid)
            printf 'set pagination off\ntarget remote 127.0.0.1:%s\nhbreak *%s\ncommands 1\nsilent\ncontinue\nend\ncontinue\n' "$port" "$addr" >"$work/gdb.cmd"
            ( sleep 2; gdb -batch -nx -x "$work/gdb.cmd" >/dev/null 2>&1 ) &
            local g=$!
            "$kanshi" "${args[@]}" --kernel-arg nokaslr --qemu-arg -gdb --qemu-arg "tcp:127.0.0.1:$port" -- \
                "sleep 4; vmbench getppid $gdb_calls"
            kill "$g" 2>/dev/null || true
            ;;
    esac 2>/dev/null | awk '/^vmbench /{print $2, $4} /^fio-iops/{print "fio", $2}'
}

declare -A results
for r in $(seq 1 "$rounds"); do
    for v in "${variants[@]}"; do
        echo "bench-vm: round $r/$rounds: $v" >&2
        while read -r name value; do
            results[$v.$name]+="$value "
        done < <(run_variant "$v" | tee -a "$work/raw.txt" | tee >(sed "s/^/bench-vm:   $v /" >&2))
    done
done

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
m() { echo "${results[$1]:-}" | median; }

printf '\n%-20s' "ns per call"; for v in "${variants[@]}"; do printf ' %12s' "$v"; done
printf '   %s\n' "ratios to plain: sensor, sensor-all, strace, gdbstub"
for w in getppid openclose write64; do
    p=$(m plain.$w)
    printf '%-20s' "$w"
    for v in "${variants[@]}"; do printf ' %12s' "$(m "$v.$w")"; done
    printf '   '
    for v in sensor sensor-all strace gdbstub; do
        awk -v p="$p" -v x="$(m "$v.$w")" 'BEGIN { if (x == "nan") printf "%8s", "-"; else printf "%8.2fx", x / p }'
    done
    printf '\n'
done
p=$(m plain.fio)
printf '%-20s' "fio 4k randrw IOPS"
for v in "${variants[@]}"; do printf ' %12s' "$(m "$v.fio")"; done
printf '   '
for v in sensor sensor-all strace gdbstub; do
    awk -v p="$p" -v x="$(m "$v.fio")" 'BEGIN { if (x == "nan") printf "%8s", "-"; else printf "%8.2fx", p / x }'
done
printf '   (time per I/O)\n'
awk -v p="$(m plain.getppid)" -v s="$(m sensor.getppid)" -v a="$(m sensor-all.getppid)" -v t="$(m strace.getppid)" -v g="$(m gdbstub.getppid)" 'BEGIN {
    printf "\nper hooked getppid: sensor %.3f us, sensor-all %.3f us, strace in the guest %.1f us, gdbstub breakpoint %.0f us\n", (s-p)/1000, (a-p)/1000, (t-p)/1000, (g-p)/1000
    ha = (a - p) / 1000
    if (ha > 0) printf "sensor-all per hook: %.0fx cheaper than a gdbstub breakpoint, %.0fx cheaper than strace in the guest\n", (g-p)/1000/ha, (t-p)/1000/ha
}'
