#!/usr/bin/env bash
# Remakes the demo's shipped process detector, models/process-detector.json, from the
# sandbox's own recordings with the VM sensor on: every workload of `kanshi workload`
# (five ransomware styles, nine benign look-alikes) run RUNS times in the guest with seeds
# 100.. (the demo uses seed 1), each run's behaviour log (the calls the behaviour model needs,
# as the demo watches them) kept beside its block trace; then a random forest on the
# per-process-tree windows (alert threshold 0.6), and a grouped cross-validation for the
# record (models/README.md).
#
# Usage: scripts/train-process-detector.sh [--runs N] [--out DIR]   (default 6, .build/process-dataset)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

runs=6 out=.build/process-dataset
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "train-process-detector: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

swift build -c release --product kanshi 2>&1 | tail -1
swift build -c release --product kanshi-vmi 2>&1 | tail -1
kanshi=$PWD/.build/release/kanshi
if [ ! -d "$out/kanshi-sandbox" ]; then
    "$kanshi" dataset record --out "$out" --runs "$runs" --discard-journals --log-level warning
fi
"$kanshi" behaviour train --dataset "$out" --threshold 0.6 --model models/process-detector.json
"$kanshi" behaviour cross-validate --dataset "$out" --threshold 0.6 --folds 3
