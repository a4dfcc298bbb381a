#!/usr/bin/env bash
# Remakes a detector the demo ships, from the sandbox's own recordings: every workload
# of `kanshi workload` (five ransomware styles, nine benign look-alikes) run RUNS times
# in the guest with seeds 100.. (the demo uses seed 1, so it never sees a training run),
# exported in the RanSAP layout; then the model, and a grouped cross-validation of the
# same settings for the record (models/README.md).
#
#   (default)  models/sandbox-detector.json, the disk detector: recorded by the journaling
#              NBD server without the VM sensor (the disk-only demo runs without it); a random
#              forest on the extended block-window features. 3 runs, .build/detector-dataset.
#   --process  models/process-detector.json, the process detector: recorded with the VM
#              sensor's behaviour log beside each run (the calls the demo watches); a random
#              forest on the per-process-tree windows, alert threshold 0.6. 6 runs,
#              .build/process-dataset.
#
# Usage: scripts/train-detector.sh [--process] [--runs N] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

process=no runs= out=
while [ $# -gt 0 ]; do
    case "$1" in
        --process) process=yes; shift ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "train-detector: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

swift build -c release --product kanshi 2>&1 | tail -1
kanshi=$PWD/.build/release/kanshi
if [ "$process" = yes ]; then
    swift build -c release --product kanshi-vmi 2>&1 | tail -1   # the VM sensor's QEMU plugin
    runs=${runs:-6} out=${out:-.build/process-dataset}
    if [ ! -d "$out/kanshi-sandbox" ]; then
        "$kanshi" dataset record --out "$out" --runs "$runs" --discard-journals --log-level warning
    fi
    "$kanshi" behaviour train --dataset "$out" --threshold 0.6 --model models/process-detector.json
    "$kanshi" behaviour cross-validate --dataset "$out" --threshold 0.6 --folds 3
else
    runs=${runs:-3} out=${out:-.build/detector-dataset}
    if [ ! -d "$out/kanshi-sandbox" ]; then
        "$kanshi" dataset record --out "$out" --runs "$runs" --discard-journals --no-behaviour --log-level warning
    fi
    settings=(--dataset "$out" --classifier rf --features extended --no-stacked --rule-threshold 0.5)
    "$kanshi" train "${settings[@]}" --model models/sandbox-detector.json
    "$kanshi" cross-validate "${settings[@]}" --folds 3
fi
