#!/usr/bin/env bash
# Sets up a fresh Debian machine (as root) and runs every test, real peers included.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
bash scripts/setup.sh
# The peers are installed above: a missing one must fail the run, not skip.
export KANSHI_REQUIRE_PEERS=1
swift build --build-tests
swift test
