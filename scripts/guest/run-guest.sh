#!/usr/bin/env bash
# Boot the Kanshi test guest (built by build-guest.sh) under QEMU/TCG with its
# disk on an NBD export reached over a Unix socket, run a job script in it and
# exit with the job's status. See --help.
set -euo pipefail

prog=${0##*/}

usage() {
    cat <<EOF
Usage: $prog --guest-dir DIR --nbd-socket PATH --job FILE
                    [--timeout SECONDS] [--memory MiB] [--export NAME]

Boots qemu-system-x86_64 (-accel tcg) with the kernel and initramfs in DIR
(from scripts/guest/build-guest.sh DIR). The guest mounts the NBD export at
PATH (an ext4 file system) on /mnt, runs FILE there with 'sh', prints
"KANSHI-GUEST-EXIT <status>" once /mnt is unmounted again, and powers off.
The job reaches the guest on a second, read-only virtio disk.
The guest console streams to stdout; this script's own messages go to stderr.

Options:
  --guest-dir DIR      output directory of build-guest.sh
  --nbd-socket PATH    Unix socket of the NBD server exporting the disk
  --export NAME        NBD export name (default: the server's default export)
  --job FILE           shell script to run in the guest (cwd /mnt)
  --timeout SECONDS    kill QEMU after this long, boot included (default 120)
  --memory MiB         guest memory (default 512)
  -h, --help           this text

Exit status: the job's exit status; 124 if the timeout hit (QEMU killed);
125 if QEMU ended without the guest reporting an exit status (boot failure,
disk not mountable, unmount failed, QEMU could not connect, ...); 2 if it
could not start (bad usage, no socket at PATH, guest not built, no QEMU).
A job that itself exits 2, 124 or 125 is told apart only by the messages on
stderr. Environment: QEMU (default qemu-system-x86_64).
EOF
}

die() { echo "$prog: error: $*" >&2; exit 2; }
note() { echo "$prog: $*" >&2; }

guest_dir=
nbd_socket=
export_name=
job=
timeout=120
memory=512

while [ $# -gt 0 ]; do
    opt=$1
    case "$opt" in
        -h|--help) usage; exit 0 ;;
        --*=*) set -- "${opt%%=*}" "${opt#*=}" "${@:2}"; continue ;;
        --guest-dir|--nbd-socket|--job|--timeout|--memory|--export)
            [ $# -ge 2 ] || die "$opt needs a value (see --help)"
            case "$opt" in
                --guest-dir) guest_dir=$2 ;;
                --nbd-socket) nbd_socket=$2 ;;
                --job) job=$2 ;;
                --timeout) timeout=$2 ;;
                --memory) memory=$2 ;;
                --export) export_name=$2 ;;
            esac
            shift 2 ;;
        *) die "unknown argument: $opt (see --help)" ;;
    esac
done

[ -n "$guest_dir" ] || die "--guest-dir is required (see --help)"
[ -n "$nbd_socket" ] || die "--nbd-socket is required (see --help)"
[ -n "$job" ] || die "--job is required (see --help)"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds, not '$timeout'"
[[ "$memory" =~ ^[1-9][0-9]*$ ]] || die "--memory must be a positive number of MiB, not '$memory'"
for f in vmlinuz initramfs.cpio.gz; do
    [ -s "$guest_dir/$f" ] || die "$guest_dir/$f missing; build the guest first: scripts/guest/build-guest.sh $guest_dir"
done
if [ ! -f "$job" ] || [ ! -r "$job" ]; then die "job script not readable: $job"; fi
[ -S "$nbd_socket" ] || die "no Unix socket at $nbd_socket (is the NBD server running?)"
case "$nbd_socket$export_name" in
    *[\&\?\#\ ]*) die "the socket path and export name must not contain '&', '?', '#' or spaces" ;;
esac

QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null 2>&1 \
    || die "$QEMU not found; install it with: apt-get install -y qemu-system-x86"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found; install it with: apt-get install -y coreutils"

nbd_socket=$(cd "$(dirname "$nbd_socket")" && pwd)/$(basename "$nbd_socket")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-guest-run.XXXXXX")
qpid=
rpid=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill -TERM "$qpid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$qpid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$qpid" 2>/dev/null || true
    fi
    [ -z "$qpid" ] || wait "$qpid" 2>/dev/null || true
    # The console reader ends by itself once QEMU closed the FIFO.
    [ -z "$rpid" ] || wait "$rpid" 2>/dev/null || true
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- job disk: 512-byte header sector, then the script, zero padded ----------
len=$(wc -c <"$job")
sum=$(sha256sum <"$job" | cut -d' ' -f1)
{
    printf 'KANSHI-JOB 1 %s %s\n' "$len" "$sum"
} >"$tmp/job.img"
truncate -s 512 "$tmp/job.img"
cat "$job" >>"$tmp/job.img"
truncate -s $((512 + (len + 511) / 512 * 512)) "$tmp/job.img"

nbd_uri="nbd+unix:///$export_name?socket=$nbd_socket"
cmdline="console=ttyS0 quiet loglevel=3 panic=-1"

qemu_args=(
    -accel tcg
    -machine pc
    -m "$memory"
    -smp 1
    -nodefaults
    -monitor none
    -serial stdio
    -no-reboot
    -display none
    -kernel "$guest_dir/vmlinuz"
    -initrd "$guest_dir/initramfs.cpio.gz"
    -append "$cmdline"
    -drive "file=$nbd_uri,format=raw,if=none,id=kdisk,cache=none"
    -device virtio-blk-pci,drive=kdisk,serial=kanshi-disk
    -drive "file=$tmp/job.img,format=raw,if=none,id=kjob,readonly=on"
    -device virtio-blk-pci,drive=kjob,serial=kanshi-job
)

# Console: QEMU -> FIFO -> tee (log, kept even if our stdout goes away) ->
# strip the serial line's CRs -> stdout.
mkfifo "$tmp/console"
tee -p -a "$tmp/console.log" <"$tmp/console" | sed -u 's/\r$//' &
rpid=$!

# If this script is SIGKILLed (no trap runs), the kernel still ends QEMU.
launcher=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
    launcher=(setpriv --pdeathsig KILL --)
fi

start=$SECONDS
"${launcher[@]}" "$QEMU" "${qemu_args[@]}" </dev/null >"$tmp/console" 2>&1 &
qpid=$!

deadline=$((start + timeout))
timed_out=0
while kill -0 "$qpid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        timed_out=1
        break
    fi
    sleep 0.2
done

if [ "$timed_out" -eq 1 ]; then
    note "timeout: guest still running after ${timeout}s; killing QEMU"
    kill -TERM "$qpid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$qpid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL "$qpid" 2>/dev/null || true
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$rpid" || true
rpid=

if [ "$timed_out" -eq 1 ]; then
    exit 124
fi

log=$(tr -d '\r' <"$tmp/console.log")
if fail_line=$(grep -a -o 'KANSHI-GUEST-FAIL .*' <<<"$log" | tail -n 1) && [ -n "$fail_line" ]; then
    note "guest reported: ${fail_line#KANSHI-GUEST-FAIL }"
fi
status=$(grep -a -o 'KANSHI-GUEST-EXIT [0-9]\+' <<<"$log" | tail -n 1 | cut -d' ' -f2 || true)
if [ -z "$status" ]; then
    note "QEMU exited (status $qrc) after $((SECONDS - start))s without a KANSHI-GUEST-EXIT line"
    exit 125
fi
note "job exited with status $status (guest ran $((SECONDS - start))s)"
exit "$status"
