#!/usr/bin/env bash
# Vendors the dashboard's JavaScript library into the build: Chart.js (MIT) from Debian's
# libjs-chart.js, copied into Sources/KanshiServer/Dashboard/vendor/ (not committed; setup.sh runs
# this). The dashboard's own scripts are in Sources/KanshiServer/Dashboard/.
set -euo pipefail
cd "$(dirname "$0")/.."
src=/usr/share/javascript/chart.js/chart.min.js
dst=Sources/KanshiServer/Dashboard/vendor
if [ ! -f "$src" ]; then
    echo "vendor-js: $src is missing: apt-get install libjs-chart.js (setup.sh does)" >&2
    exit 1
fi
mkdir -p "$dst"
if ! cmp -s "$src" "$dst/chart.min.js"; then
    cp "$src" "$dst/chart.min.js"
    cp /usr/share/doc/libjs-chart.js/copyright "$dst/chart.js.copyright"
    echo "vendor-js: Chart.js $(head -c 200 "$src" | sed -n 's/.*Chart.js v\([0-9.]*\).*/\1/p') from libjs-chart.js into $dst"
fi
