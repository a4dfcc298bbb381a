#!/usr/bin/env bash
# Installs what Kanshi needs on a Debian 12 machine (idempotent; run as root).
# Swift itself is expected on PATH (Swift 6.x); everything else comes from apt.
set -euo pipefail

packages=(
    # peers and test tools (QEMU and qemu-utils come from bookworm-backports, below)
    nbdkit libnbd-bin python3-libnbd fio strace bc
    # kanshi disk mount: libfuse3 (linked), fusermount3, losetup/blkid/mount
    libfuse3-dev fuse3 util-linux mount
    # the test guest: busybox initramfs, ext4 tools, archive tools
    busybox-static e2fsprogs cpio gzip xz-utils zstd
    # C libraries the detectors link (XGBoost; libsvm)
    libxgboost-dev libsvm-dev
    # sector hashes for search
    libxxhash-dev
    # zlib for the workload corpus (PNG, zip, gzip) and gzip kernel images
    zlib1g-dev
    # the VM sensor's tests: 32-bit guest programs (gcc -m32)
    gcc-multilib
    # guest kernel images: LZ4, zstd and xz payloads; BTF oracles (pahole, bpftool)
    liblz4-dev libzstd-dev liblzma-dev lz4 dwarves bpftool
    # the server's index (SQLite through GRDB); openssl makes the TLS tests' certificate
    libsqlite3-dev openssl curl
    # the dashboard: Chart.js (vendored into the build by scripts/vendor-js.sh); its tests drive Chromium
    libjs-chart.js chromium
    # Volatility 3 (a venv from PyPI, below) checks the symbol tables kanshi writes
    python3-venv
    # kanshi fleet: Spark (pyspark from PyPI, below) runs on Java 17
    openjdk-17-jre-headless
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: these packages are missing: ${missing[*]}" >&2
        echo "setup: run this script as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# QEMU 10 from Debian's bookworm-backports: the VM sensor's plugin needs its TCG plugin API
# (version 4: reading guest registers and memory). Bookworm's own QEMU 7.2 cannot load it.
qemu_major() {
    dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null | sed -E 's/^[0-9]+://; s/[^0-9].*//'
}
if [ "$(qemu_major)" = "" ] || [ "$(qemu_major)" -lt 10 ] \
    || ! dpkg-query -W -f='${Status}' qemu-utils 2>/dev/null | grep -q "install ok installed"; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: QEMU 10 is missing: run this script as root (it adds bookworm-backports and installs qemu-system-x86 from it)" >&2
        exit 1
    fi
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: adding ${codename}-backports to apt's sources (for QEMU 10)"
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$codename" >/etc/apt/sources.list.d/kanshi-backports.sources
    fi
    echo "setup: installing qemu-system-x86 (QEMU 10) from ${codename}-backports"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -t "${codename}-backports" qemu-system-x86 qemu-utils >/dev/null
    [ "$(qemu_major)" -ge 10 ] || { echo "setup: qemu-system-x86 from ${codename}-backports is older than 10" >&2; exit 1; }
fi

bash "$(dirname "${BASH_SOURCE[0]}")/vendor-js.sh"

# Volatility 3 and jsonschema in a venv at .build/python (from PyPI): the guest kernel symbol
# table tests validate against Volatility's own ISF schema; .build/python/bin/vol is its CLI.
# Playwright drives Debian's Chromium in the dashboard's tests (no browser download).
# kanshi fleet writes Parquet with pyarrow and runs its jobs with pyspark (Spark 4.0, Java 17).
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.build/python"
python_pins=(volatility3==2.28.2 jsonschema==4.26.0 playwright==1.65.3 pyspark==4.0.1 pyarrow==22.0.0)
python_ready() {
    [ -x "$venv/bin/python3" ] || return 1
    local pin
    for pin in "${python_pins[@]}"; do
        [ "$("$venv/bin/python3" -m pip show "${pin%%==*}" 2>/dev/null | sed -n 's/^Version: //p')" = "${pin##*==}" ] || return 1
    done
}
if ! python_ready; then
    echo "setup: installing ${python_pins[*]} into $venv"
    [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${python_pins[@]}"
    python_ready || { echo "setup: $venv lacks ${python_pins[*]} after pip install" >&2; exit 1; }
fi

if ! command -v swift >/dev/null 2>&1; then
    for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        [ -x "$d/swift" ] && { echo "setup: swift is at $d; add it to PATH" >&2; exit 1; }
    done
    echo "setup: swift (6.x) is not on PATH; install a Swift toolchain from swift.org" >&2
    exit 1
fi
echo "setup: ready ($(swift --version 2>/dev/null | head -1))"
