#!/usr/bin/env bash
# Remakes the demo's shipped detector, models/sandbox-detector.json, from the
# sandbox's own recordings: every workload of `kanshi workload` (five
# ransomware styles, seven benign look-alikes) run RUNS times in the guest
# with seeds 100.. (the demo uses seed 1, so it never sees a training run),
# recorded by the journaling NBD server (no VM sensor: the demo runs without
# it) and exported in the RanSAP layout;
# then a random forest on the extended window features, and a grouped
# cross-validation of the same settings for the record (models/README.md).
#
# Usage: scripts/train-detector.sh [--runs N] [--out DIR]   (default 3, .build/detector-dataset)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

runs=3 out=.build/detector-dataset
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "train-detector: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

swift build -c release --product kanshi 2>&1 | tail -1
kanshi=$PWD/.build/release/kanshi
if [ ! -d "$out/kanshi-sandbox" ]; then
    "$kanshi" dataset record --out "$out" --runs "$runs" --discard-journals --no-behaviour --log-level warning
fi
settings=(--dataset "$out" --classifier rf --features extended --no-stacked --rule-threshold 0.5)
"$kanshi" train "${settings[@]}" --model models/sandbox-detector.json
"$kanshi" cross-validate "${settings[@]}" --folds 3
