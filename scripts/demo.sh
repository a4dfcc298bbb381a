#!/usr/bin/env bash
# Kanshi's main job on its embedded default, end to end (the README's quick
# start): set up, build, then `kanshi demo` — a ransomware workload runs in a
# QEMU guest whose disk goes through Kanshi's journaling NBD server, the live
# detector catches it, the disk is rolled back and every victim file checked;
# then a benign workload, which must raise no alert. Finally the runs'
# journals are verified (checksums, sequence, SHA-256 chain).
#
# Usage: scripts/demo.sh [kanshi demo options]   (run as root on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "setting up (apt packages, once)"
bash scripts/setup.sh

step "building kanshi (release)"
swift build -c release --product kanshi 2>&1 | tail -1
swift build -c release --product kanshi-vmi 2>&1 | tail -1   # the VM sensor's QEMU plugin
kanshi=$PWD/.build/release/kanshi

"$kanshi" demo --log-level warning "$@"

step "the runs' journals (checksums, sequence, SHA-256 chain)"
for j in .build/sandbox/runs/demo-*.img.journal; do
    "$kanshi" journal verify "$j"
done
