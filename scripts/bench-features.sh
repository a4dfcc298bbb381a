#!/usr/bin/env bash
# Feature extraction speed: kanshi against numpy on the same dataset, same
# five features, in one run. Usage: scripts/bench-features.sh [DATASET_DIR] [ROUNDS]
# (default: unpacks ../shared/datasets/ransap-dev.tar.xz into a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
rounds=${2:-3}
data=${1:-}
if [ -z "$data" ]; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    echo "unpacking the RanSAP development split..." >&2
    tar -xJf ../shared/datasets/ransap-dev.tar.xz -C "$tmp"
    data=$tmp/dataset
fi
swift build -c release --product kanshi >&2
python3 -c 'import numpy' 2>/dev/null || { echo "bench-features: numpy is missing (pip install numpy)" >&2; exit 1; }
k=$(.build/release/kanshi bench features --dataset "$data" --rounds "$rounds" --json)
n=$(python3 scripts/bench-features.py "$data" --rounds "$rounds")
python3 - "$k" "$n" <<'PY'
import json, sys
k, n = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{k['runs']} runs, {k['records']:,} records (numpy: {n['records']:,}); windows kanshi {k['windows']:,}, numpy {n['windows']:,}")
print(f"{'':26} {'kanshi':>14} {'numpy':>14} {'ratio':>7}")
for key, name in (("parseAndFeaturesRecordsPerSecond", "CSV parsing + features"), ("featuresRecordsPerSecond", "features only")):
    print(f"{name:26} {k[key]/1e6:10.2f} M/s {n[key]/1e6:10.2f} M/s {k[key]/n[key]:6.1f}x")
PY
