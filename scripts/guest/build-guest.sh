#!/usr/bin/env bash
# Build the Kanshi test guest: a Debian cloud kernel plus a busybox initramfs
# whose /init (scripts/guest/init) mounts the NBD-backed disk and runs a job.
# See --help. Run scripts/guest/run-guest.sh to boot it.
set -euo pipefail

prog=${0##*/}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
init_src="$here/init"

# Modules the guest needs: virtio PCI transport, virtio block, ext4, virtio network.
# Whatever of these is built into the kernel is skipped; the rest are put in
# the initramfs with their dependencies, in load order.
NEEDED_MODULES=(virtio_pci virtio_blk ext4 virtio_net)
META_PACKAGE=${KANSHI_KERNEL_PACKAGE:-linux-image-cloud-amd64}

usage() {
    cat <<EOF
Usage: $prog [--force] [--kernel-deb FILE] OUTDIR

Builds into OUTDIR:
  vmlinuz              kernel of the Debian package that $META_PACKAGE
                       depends on (fetched with apt-get download, not installed)
  System.map           that package's boot/System.map-* (Debian's is a one-line
                       placeholder; --system-map puts the real one there)
  config               that package's boot/config-* (the kernel's .config)
  initramfs.cpio.gz    busybox (busybox-static), virtio/ext4 modules, /init
  kernel-version       kernel release, package and version
  modules              the modules in the initramfs, in load order
Returns at once if OUTDIR already holds a complete build of the same inputs
(kernel package version, busybox binary, init, this script).

Options:
  --add-binary FILE    also put FILE in the initramfs as /bin/NAME, with the
                       shared libraries it needs (from ldd), e.g. kanshi itself
                       so workloads run in the guest (may be repeated)
  --kernel-deb FILE    use this linux-image-*.deb instead of asking apt
  --kernel-package P   the package whose kernel to use (default
                       linux-image-cloud-amd64; or KANSHI_KERNEL_PACKAGE)
  --system-map         if System.map is Debian's placeholder, replace it with
                       the real one from the kernel's -dbg package (a ~280 MB
                       download, once; only System.map is kept)
  --force              rebuild even if OUTDIR is up to date
  -h, --help           this text

Needs: apt-get, dpkg-deb, cpio, gzip, busybox-static (installed with apt-get
when missing and running as root).
EOF
}

die() { echo "$prog: error: $*" >&2; exit 1; }
note() { echo "$prog: $*" >&2; }

force=0
want_system_map=0
kernel_deb=
outdir=
add_binaries=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --force) force=1; shift ;;
        --system-map) want_system_map=1; shift ;;
        --kernel-deb)
            [ $# -ge 2 ] || die "--kernel-deb needs a file"
            kernel_deb=$2; shift 2 ;;
        --kernel-deb=*) kernel_deb=${1#*=}; shift ;;
        --kernel-package)
            [ $# -ge 2 ] || die "--kernel-package needs a package name"
            META_PACKAGE=$2; shift 2 ;;
        --add-binary)
            [ $# -ge 2 ] || die "--add-binary needs a file"
            [ -x "$2" ] || die "--add-binary: $2 is not an executable file"
            add_binaries+=("$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"); shift 2 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *)
            [ -z "$outdir" ] || die "only one OUTDIR may be given (see --help)"
            outdir=$1; shift ;;
    esac
done
[ -n "$outdir" ] || { usage >&2; exit 2; }
[ -r "$init_src" ] || die "guest init script not found at $init_src"
if [ -n "$kernel_deb" ]; then
    [ -r "$kernel_deb" ] || die "kernel package not found: $kernel_deb"
    kernel_deb=$(cd "$(dirname "$kernel_deb")" && pwd)/$(basename "$kernel_deb")
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

need_cmd() { # need_cmd COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    die "'$1' not found; install it with: apt-get install -y $2"
}

apt_install() { # apt_install PACKAGE...
    is_root || die "missing package(s): $*; install with: sudo apt-get install -y $*"
    note "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
        || die "apt-get install $* failed (try 'apt-get update' first)"
}

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

need_cmd dpkg-deb dpkg
need_cmd dpkg-query dpkg
need_cmd sha256sum coreutils
need_cmd gzip gzip
need_cmd flock util-linux
[ -n "$kernel_deb" ] || { need_cmd apt-get apt; need_cmd apt-cache apt; }

missing=()
pkg_installed busybox-static || missing+=(busybox-static)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi
busybox=$(dpkg-query -L busybox-static | grep -E '/bin/busybox$' | head -n 1 || true)
[ -n "$busybox" ] && [ -x "$busybox" ] \
    || die "busybox-static is installed but its /bin/busybox is missing; reinstall with: apt-get install --reinstall -y busybox-static"

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

# Only one build per OUTDIR at a time.
exec 9>"$outdir/.lock"
flock 9

# --- resolve the kernel package -------------------------------------------
kpkg=
kver=
resolve_kernel() {
    # One apt-cache call (each costs ~1 s here): the meta package's candidate
    # and its "Depends: linux-image-X (= VERSION)".
    local deps
    deps=$(apt-cache show --no-all-versions "$META_PACKAGE" 2>/dev/null \
        | sed -n 's/^Depends: *//p' | head -n 1 || true)
    kpkg=$(tr ',|' '\n\n' <<<"$deps" | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -n 1 || true)
    [ -n "$kpkg" ] || return 1
    kver=$(tr ',|' '\n\n' <<<"$deps" \
        | sed -n "s/^ *$kpkg *(= *\([^ )]*\)).*/\1/p" | head -n 1 || true)
    if [ -z "$kver" ]; then
        kver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null \
            | sed -n 's/^Version: *//p' | head -n 1 || true)
    fi
    [ -n "$kver" ]
}

# apt's answer only changes with its package lists or configuration; a
# digest of their names, sizes and mtimes lets a cached build skip apt-cache.
apt_state() {
    local L=/var/lib/apt/lists/ E=/etc/apt/
    eval "$(apt-config shell L Dir::State::lists/d E Dir::Etc/d 2>/dev/null || true)"
    {
        echo "${APT_CONFIG:-}"
        find "$L" "$E" -maxdepth 2 -type f \
            \( -name '*Packages*' -o -name '*Release' -o -name 'sources.list*' \
               -o -name '*.sources' -o -path '*preferences*' \) \
            -printf '%p %s %T@\n' 2>/dev/null || true
    } | LC_ALL=C sort | sha256sum | cut -d' ' -f1
}

stamp_file="$outdir/.build-stamp"
have_complete_build() {
    [ -s "$outdir/vmlinuz" ] && [ -s "$outdir/initramfs.cpio.gz" ] && [ -s "$stamp_file" ] \
        && [ -s "$outdir/System.map" ] && [ -s "$outdir/config" ]
}

if [ -n "$kernel_deb" ]; then
    kpkg=$(dpkg-deb -f "$kernel_deb" Package)
    kver=$(dpkg-deb -f "$kernel_deb" Version)
    kernel_key="deb:$(sha256sum <"$kernel_deb" | cut -d' ' -f1)"
else
    apt_key="$(apt_state) $META_PACKAGE"
    resolved_file="$outdir/.apt-resolved"
    if [ "$force" -eq 0 ] && [ -s "$resolved_file" ] \
        && [ "$(head -n 1 "$resolved_file")" = "$apt_key" ]; then
        { read -r _; read -r kpkg kver; } <"$resolved_file"
    elif ! resolve_kernel; then
        if have_complete_build && [ "$force" -eq 0 ]; then
            note "apt does not know $META_PACKAGE (no package lists?); keeping the existing build in $outdir"
            exit 0
        fi
        is_root || die "apt cannot resolve $META_PACKAGE; run 'sudo apt-get update' and retry"
        note "apt cannot resolve $META_PACKAGE; running apt-get update"
        apt-get update -q >&2 || die "apt-get update failed"
        resolve_kernel || die "no kernel package: apt cannot resolve $META_PACKAGE even after apt-get update; the guest needs Debian's cloud kernel: check that bookworm's main suite is in /etc/apt/sources.list and that 'apt-cache show linux-image-cloud-amd64' works, or give --kernel-deb FILE with a downloaded linux-image-*.deb"
    fi
    kernel_key="apt:$kpkg=$kver"
fi

fingerprint=$(
    {
        echo "kernel $kernel_key"
        echo "busybox $(sha256sum <"$busybox" | cut -d' ' -f1)"
        echo "init $(sha256sum <"$init_src" | cut -d' ' -f1)"
        echo "builder $(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)"
        echo "modules ${NEEDED_MODULES[*]}"
        for b in "${add_binaries[@]}"; do echo "binary $b $(sha256sum <"$b" | cut -d' ' -f1)"; done
    } | sha256sum | cut -d' ' -f1
)

# Debian ships boot/System.map-* as a one-line pointer to the -dbg package.
system_map_is_placeholder() {
    [ "$(wc -l <"$outdir/System.map")" -lt 1000 ]
}

# Replaces a placeholder System.map with the real one from "$kpkg-dbg".
fetch_real_system_map() {
    [ "$want_system_map" -eq 1 ] && system_map_is_placeholder || return 0
    local krel dbgwork deb
    krel=$(sed -n 's/^release //p' "$outdir/kernel-version")
    [ -n "$krel" ] || die "$outdir/kernel-version names no release"
    dbgwork=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-guest-dbg.XXXXXX")
    note "downloading $kpkg-dbg $kver for the real System.map"
    (cd "$dbgwork" && apt-get download -q -o APT::Sandbox::User=root "$kpkg-dbg=$kver" >&2) \
        || { rm -rf "$dbgwork"; die "apt-get download $kpkg-dbg=$kver failed (network? try 'apt-get update')"; }
    deb=$(ls "$dbgwork"/*.deb 2>/dev/null | head -n 1 || true)
    # tar stops after the first match, so dpkg-deb may die of SIGPIPE: judge by the output.
    { dpkg-deb --fsys-tarfile "$deb" | tar -xO --occurrence=1 "./usr/lib/debug/boot/System.map-$krel"; } \
        >"$dbgwork/System.map" 2>/dev/null || true
    if [ "$(wc -l <"$dbgwork/System.map")" -lt 1000 ]; then
        rm -rf "$dbgwork"
        die "$kpkg-dbg $kver has no usr/lib/debug/boot/System.map-$krel"
    fi
    mv -f "$dbgwork/System.map" "$outdir/System.map"
    rm -rf "$dbgwork"
    note "System.map: $(wc -l <"$outdir/System.map") symbols from $kpkg-dbg"
}

if [ "$force" -eq 0 ] && have_complete_build && [ "$(cat "$stamp_file")" = "$fingerprint" ]; then
    fetch_real_system_map
    note "up to date: $outdir ($kpkg $kver)"
    exit 0
fi

# --- build ------------------------------------------------------------------
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/kanshi-guest-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -z "$kernel_deb" ]; then
    note "downloading $kpkg $kver"
    (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kver" >&2) \
        || die "apt-get download $kpkg=$kver failed (network? try 'apt-get update')"
    kernel_deb=$(ls "$work"/*.deb 2>/dev/null | head -n 1 || true)
    [ -n "$kernel_deb" ] || die "apt-get download produced no .deb"
fi

note "extracting $(basename "$kernel_deb")"
dpkg-deb -x "$kernel_deb" "$work/kernel" || die "dpkg-deb -x $kernel_deb failed"

vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $kernel_deb"
krel=${vmlinuz##*/vmlinuz-}
moddir=
for d in "$work/kernel/lib/modules/$krel" "$work/kernel/usr/lib/modules/$krel"; do
    [ -d "$d" ] && moddir=$d && break
done
[ -n "$moddir" ] || die "no lib/modules/$krel in $kernel_deb"

# Module name as the kernel sees it: basename without .ko[.xz|.zst|.gz],
# with '-' folded to '_'.
modname() {
    local b=${1##*/}
    b=${b%.ko*}
    echo "${b//-/_}"
}

declare -A builtin=() modpath=()
if [ -r "$moddir/modules.builtin" ]; then
    while read -r p; do
        if [ -n "$p" ]; then builtin[$(modname "$p")]=1; fi
    done <"$moddir/modules.builtin"
else
    note "warning: $krel has no modules.builtin; assuming every needed module is loadable"
fi
while IFS= read -r -d '' f; do
    modpath[$(modname "$f")]=${f#"$moddir"/}
done < <(find "$moddir" -type f \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz' \) -print0)

root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,mnt,tmp,run,etc/kanshi,lib/modules/"$krel"}

# Decompressed copy of module $1 in the initramfs; prints its path there.
stage_module() {
    local name=$1 src=${modpath[$1]} dst
    dst="$root/lib/modules/$krel/$name.ko"
    if [ ! -e "$dst" ]; then
        case "$src" in
            *.ko) cp "$moddir/$src" "$dst" ;;
            *.ko.xz) need_cmd xz xz-utils; xz -dc "$moddir/$src" >"$dst" ;;
            *.ko.zst) need_cmd zstd zstd; zstd -q -dc "$moddir/$src" >"$dst" ;;
            *.ko.gz) gzip -dc "$moddir/$src" >"$dst" ;;
        esac
    fi
    echo "$dst"
}

# modinfo field $2 (e.g. depends, softdep) of the staged module file $1.
modinfo_field() {
    tr '\0' '\n' <"$1" | sed -n "s/^$2=//p"
}

declare -A visiting=() done_mod=()
load_order=()
add_module() { # depth-first, dependencies first
    local name=${1//-/_} ko dep deps soft pre
    [ -n "${builtin[$name]:-}" ] && return 0
    [ -n "${done_mod[$name]:-}" ] && return 0
    [ -n "${visiting[$name]:-}" ] && die "module dependency cycle at $name"
    [ -n "${modpath[$name]:-}" ] || die "kernel $krel has no module '$name' and does not build it in"
    visiting[$name]=1
    ko=$(stage_module "$name")
    deps=$(modinfo_field "$ko" depends | tr ',' ' ')
    # softdep "pre:" modules are loaded first when they exist as modules.
    pre=
    while read -r soft; do
        [ -n "$soft" ] || continue
        soft=${soft#pre: }
        soft=${soft%%post:*}
        pre="$pre $soft"
    done < <(modinfo_field "$ko" softdep | grep '^pre:' || true)
    for dep in $deps; do add_module "$dep"; done
    for dep in $pre; do
        dep=${dep//-/_}
        if [ -z "${builtin[$dep]:-}" ] && [ -n "${modpath[$dep]:-}" ]; then add_module "$dep"; fi
    done
    unset "visiting[$name]"
    done_mod[$name]=1
    load_order+=("$name")
}
for m in "${NEEDED_MODULES[@]}"; do add_module "$m"; done

: >"$root/etc/kanshi/modules"
for m in "${load_order[@]}"; do
    echo "$krel/$m.ko" >>"$root/etc/kanshi/modules"
done
builtins_used=()
for m in "${NEEDED_MODULES[@]}"; do
    if [ -n "${builtin[$m]:-}" ]; then builtins_used+=("$m"); fi
done

# busybox and its applet links
cp "$busybox" "$root/bin/busybox"
chmod 755 "$root/bin/busybox"
while read -r applet; do
    [ -n "$applet" ] || continue
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
[ -e "$root/bin/sh" ] || ln -s /bin/busybox "$root/bin/sh"

# Extra binaries and the shared libraries they load (glibc's loader included).
for b in "${add_binaries[@]}"; do
    install -m 755 "$b" "$root/bin/$(basename "$b")"
    while read -r lib; do
        [ -n "$lib" ] && [ -e "$lib" ] || continue
        mkdir -p "$root$(dirname "$lib")"
        [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
    done < <(ldd "$b" | grep -o '/[^ ]*' | sort -u)
done

install -m 755 "$init_src" "$root/init"
if is_root; then
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
fi

find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null -o -H newc --reproducible --quiet) \
    | gzip -9n >"$work/initramfs.cpio.gz"

cp "$vmlinuz" "$work/vmlinuz"
# The symbol map and .config are the oracles for reading the image itself.
[ -s "$work/kernel/boot/System.map-$krel" ] || die "no boot/System.map-$krel in $kernel_deb"
[ -s "$work/kernel/boot/config-$krel" ] || die "no boot/config-$krel in $kernel_deb"
cp "$work/kernel/boot/System.map-$krel" "$work/System.map"
cp "$work/kernel/boot/config-$krel" "$work/config"
{
    echo "release $krel"
    echo "package $kpkg"
    echo "version $kver"
} >"$work/kernel-version"
{
    for m in "${load_order[@]}"; do echo "$m"; done
    for m in "${builtins_used[@]}"; do echo "# built in: $m"; done
} >"$work/modules"

rm -f "$stamp_file"
for f in vmlinuz System.map config initramfs.cpio.gz kernel-version modules; do
    mv -f "$work/$f" "$outdir/$f"
done
echo "$fingerprint" >"$stamp_file"
if [ -n "${apt_key:-}" ]; then
    printf '%s\n%s %s\n' "$(apt_state) $META_PACKAGE" "$kpkg" "$kver" >"$outdir/.apt-resolved"
fi

fetch_real_system_map
note "built $outdir in $((SECONDS - started))s: kernel $krel ($kpkg $kver)," \
    "modules: ${load_order[*]:-none}; built in: ${builtins_used[*]:-none};" \
    "initramfs $(du -k "$outdir/initramfs.cpio.gz" | cut -f1) KiB"
