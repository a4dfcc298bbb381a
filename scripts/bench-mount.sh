#!/usr/bin/env bash
# bench-mount.sh — write throughput through `kanshi disk mount` (FUSE file +
# loop device + ext4, every block journaled) against the same ext4 on a plain
# loop device over the image, side by side in one run.
#
# Run `scripts/bench-mount.sh --help` for usage. Needs root.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZE=1G          # image size
COUNT=256        # MiB written by dd
ROUNDS=3
FIO=auto         # auto: run the fio workload when fio is installed
FIO_RUNTIME=5
WORKDIR_PARENT="${TMPDIR:-/var/tmp}"
KANSHI="${KANSHI:-$REPO_ROOT/.build/release/kanshi}"

usage() {
    cat <<EOF
Usage: $PROG [options]

For every round, each config gets a fresh image (truncate + mkfs.ext4 -b 4096)
and runs the same workloads; configs alternate and their order rotates from
round to round, so machine noise hits both alike. Medians over the rounds.

Configs:
  kanshi   \$KANSHI disk mount --image IMG --journal DIR MNT
           (FUSE file, loop device --direct-io=on --sector-size 4096, ext4)
  nojournal  \$KANSHI disk mount --image IMG --no-journal MNT (the FUSE path alone)
  loop     losetup --direct-io=on --sector-size 4096 --find --show IMG; mount
           (the same stack without FUSE and without a journal)

Workloads:
  dd       dd if=SRC of=MNT/x bs=1M count=$COUNT oflag=direct conv=fsync
           (SRC: a file of random bytes, read from the page cache)
  fio      fio --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1
           --size=min(256M, SIZE/4) --runtime=$FIO_RUNTIME on a file in MNT (IOPS), then fsync

Options:
  --size SIZE      image size (default $SIZE)
  --count MIB      MiB written by dd (default $COUNT)
  --rounds N       rounds (default $ROUNDS)
  --fio yes|no     run the fio workload (default: if fio is installed)
  --fio-runtime S  seconds of the fio workload (default $FIO_RUNTIME)
  --workdir DIR    parent of the temporary directory (default \$TMPDIR or /var/tmp)
  -h, --help       this text
Environment:
  KANSHI=PATH      kanshi binary (default: <repo>/.build/release/kanshi)
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
note() { printf '%s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --size) SIZE=$2; shift 2 ;;
        --count) COUNT=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --fio) FIO=$2; shift 2 ;;
        --fio-runtime) FIO_RUNTIME=$2; shift 2 ;;
        --workdir) WORKDIR_PARENT=$2; shift 2 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (loop devices and mounts need it)"
[ -x "$KANSHI" ] || die "no kanshi binary at $KANSHI (swift build -c release, or set KANSHI=)"
for t in losetup mount umount mkfs.ext4 dd; do command -v $t >/dev/null || die "$t is not installed"; done
if [ "$FIO" = auto ]; then command -v fio >/dev/null && FIO=yes || FIO=no; fi
[ "$FIO" = no ] || command -v fio >/dev/null || die "fio is not installed (apt-get install fio)"

SIZE_BYTES=$(numfmt --from=iec "${SIZE%B}") || die "cannot parse --size $SIZE"
FIO_MIB=$(( SIZE_BYTES / 4 >> 20 )); [ "$FIO_MIB" -gt 256 ] && FIO_MIB=256
[ "$((COUNT << 20))" -lt "$((SIZE_BYTES * 3 / 4))" ] || die "--count $COUNT MiB does not fit a $SIZE image; give a larger --size"

WORK=$(mktemp -d "$WORKDIR_PARENT/kanshi-bench-mount.XXXXXX")
MNT=$WORK/mnt
mkdir -p "$MNT"
KPID="" LOOP=""

cleanup() {
    if [ -n "$KPID" ] && kill -0 "$KPID" 2>/dev/null; then
        kill -INT "$KPID"; wait "$KPID" 2>/dev/null || true
    fi
    mountpoint -q "$MNT" && umount "$MNT" || true
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note "bench-mount: source file of $COUNT MiB of random bytes"
head -c "$((COUNT << 20))" /dev/urandom > "$WORK/src"
cat "$WORK/src" > /dev/null

fresh_image() {
    rm -rf "$WORK/img" "$WORK/j"
    truncate -s "$SIZE" "$WORK/img"
    mkfs.ext4 -q -F -b 4096 "$WORK/img"
}

mount_kanshi() { start_kanshi --journal "$WORK/j"; }
mount_nojournal() { start_kanshi --no-journal; }
unmount_nojournal() { unmount_kanshi; }

start_kanshi() {
    "$KANSHI" disk mount --image "$WORK/img" "$@" "$MNT" > "$WORK/kanshi.log" 2>&1 &
    KPID=$!
    for _ in $(seq 1 300); do
        grep -q "kanshi: mounted" "$WORK/kanshi.log" && return 0
        kill -0 "$KPID" 2>/dev/null || die "kanshi disk mount failed: $(cat "$WORK/kanshi.log")"
        sleep 0.1
    done
    die "kanshi disk mount did not mount within 30 s"
}

unmount_kanshi() {
    kill -INT "$KPID"
    wait "$KPID" || die "kanshi disk mount exited $?: $(cat "$WORK/kanshi.log")"
    KPID=""
}

mount_loop() {
    LOOP=$(losetup --direct-io=on --sector-size 4096 --find --show "$WORK/img")
    mount -t ext4 "$LOOP" "$MNT"
}

unmount_loop() {
    umount "$MNT"
    losetup -d "$LOOP"
    LOOP=""
}

# dd: prints MiB/s.
run_dd() {
    local out bytes secs
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    cat "$WORK/src" > /dev/null
    out=$(LC_ALL=C dd if="$WORK/src" of="$MNT/x" bs=1M count="$COUNT" oflag=direct conv=fsync 2>&1 | tail -1)
    bytes=$(awk '{print $1}' <<<"$out")
    secs=$(awk -F', ' '{split($3, a, " "); print a[1]}' <<<"$out")
    awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f\n", b / 1048576 / s }'
}

# fio 4 KiB random writes at queue depth 16: prints IOPS.
run_fio() {
    fio --name=randwrite --filename="$MNT/fio" --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio \
        --direct=1 --size="${FIO_MIB}M" --runtime="$FIO_RUNTIME" --time_based --end_fsync=1 --group_reporting \
        --output-format=json 2>/dev/null \
        | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["jobs"][0]["write"]["iops"])'
}

median() { sort -n | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A RESULTS
CONFIGS=(kanshi nojournal loop)
for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order from round to round.
    shift_by=$(( (round - 1) % ${#CONFIGS[@]} ))
    order=("${CONFIGS[@]:$shift_by}" "${CONFIGS[@]:0:$shift_by}")
    for c in "${order[@]}"; do
        fresh_image
        "mount_$c"
        r=$(run_dd)
        RESULTS[$c,dd]+="$r "
        line="round $round  $c  dd ${r} MiB/s"
        if [ "$FIO" = yes ]; then
            f=$(run_fio)
            RESULTS[$c,fio]+="$f "
            line+="  fio ${f} IOPS"
        fi
        "unmount_$c"
        [ "$c" = kanshi ] && line+="  journal $(du -sm "$WORK/j" | cut -f1) MiB"
        note "bench-mount: $line"
    done
done

printf '\n%-44s %14s %14s %14s %8s %8s\n' "workload (medians of $ROUNDS)" "kanshi mount" "no journal" "plain loop" "k/loop" "nj/loop"
for w in dd fio; do
    [ "$w" = fio ] && [ "$FIO" != yes ] && continue
    k=$(tr ' ' '\n' <<<"${RESULTS[kanshi,$w]}" | grep . | median)
    n=$(tr ' ' '\n' <<<"${RESULTS[nojournal,$w]}" | grep . | median)
    l=$(tr ' ' '\n' <<<"${RESULTS[loop,$w]}" | grep . | median)
    rk=$(awk -v k="$k" -v l="$l" 'BEGIN { printf "%.2f", k / l }')
    rn=$(awk -v k="$n" -v l="$l" 'BEGIN { printf "%.2f", k / l }')
    if [ "$w" = dd ]; then
        printf '%-44s %9s MiB/s %9s MiB/s %9s MiB/s %7sx %7sx\n' "dd bs=1M count=$COUNT oflag=direct conv=fsync" "$k" "$n" "$l" "$rk" "$rn"
    else
        printf '%-44s %10s IOPS %10s IOPS %10s IOPS %7sx %7sx\n' "fio randwrite 4k QD16 libaio direct ${FIO_RUNTIME}s" "$k" "$n" "$l" "$rk" "$rn"
    fi
done
