#!/usr/bin/env bash
# Kanshi's main job on its embedded default, end to end: a QEMU guest whose
# disk is served by `kanshi disk serve` writes, copies and deletes files; every
# block it reads and writes lands in a journal in a local directory, which is
# then verified and exported in the RanSAP layout.
#
# Usage: scripts/demo.sh [WORKDIR]     (default: ./demo; run as root on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${1:-$root/demo}
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "setting up (apt packages, once)"
bash scripts/setup.sh

step "building kanshi (release)"
swift build -c release --product kanshi 2>&1 | tail -1
kanshi=$root/.build/release/kanshi

step "building the test guest (Debian cloud kernel + busybox initramfs; cached)"
scripts/guest/build-guest.sh "$root/.build/guest" | tail -1

rm -rf "$work"
mkdir -p "$work"
truncate -s 128M "$work/disk.img"
mkfs.ext4 -q -F -b 4096 "$work/disk.img"

step "serving $work/disk.img with journal $work/journal"
"$kanshi" disk serve --image "$work/disk.img" --journal "$work/journal" --socket "$work/nbd.sock" \
    --log-level warning &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && break; sleep 0.1; done

cat > "$work/job.sh" <<'JOB'
set -e
echo "guest: writing documents"
mkdir -p /mnt/docs
i=0; while [ $i -lt 50 ]; do head -c $((1024 * (i + 1))) /dev/urandom | base64 > /mnt/docs/report$i.txt; i=$((i+1)); done
echo "guest: copying and deleting"
cp -r /mnt/docs /mnt/backup
rm /mnt/docs/report1*.txt
dd if=/dev/urandom of=/mnt/secret.bin bs=1M count=8 2>/dev/null
sync
ls /mnt | sed 's/^/guest:   /'
JOB

step "booting the guest (QEMU, TCG); its disk goes through Kanshi"
scripts/guest/run-guest.sh --guest-dir "$root/.build/guest" --nbd-socket "$work/nbd.sock" \
    --job "$work/job.sh" --timeout 300 | grep -E '^(guest:|KANSHI-GUEST-EXIT)' || true

kill -TERM $server
wait $server || true
trap - EXIT

step "journal"
"$kanshi" journal info "$work/journal"
step "verify (checksums, sequence, SHA-256 chain)"
"$kanshi" journal verify "$work/journal"
step "export (RanSAP layout)"
"$kanshi" journal export "$work/journal" --out "$work/ransap"
head -3 "$work/ransap/ata_write.csv"
echo
echo "Done. Journal: $work/journal   CSV: $work/ransap"
