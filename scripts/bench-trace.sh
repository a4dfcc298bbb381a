#!/usr/bin/env bash
# Overhead of `kanshi trace`, side by side in one run: a read/write
# micro-benchmark (N small read()/write() calls) and fio random and sequential
# file I/O (psync engine), each
#   native | kanshi trace (nothing protected) | kanshi trace (process managed)
#   | strace -f | strace --seccomp-bpf -f -e trace=<the calls kanshi stops a managed process on>
# Prints median wall times of ROUNDS runs and ratios to native.
#
#   scripts/bench-trace.sh [N] [ROUNDS]        (defaults: 500000 calls, 5 rounds)
#   KANSHI=.build/release/kanshi scripts/bench-trace.sh
#   WORKLOADS="seq rand" scripts/bench-trace.sh 0 7      (a subset: rw seq rand)
# Needs strace and fio (scripts/setup.sh), a C compiler, and ptrace (root).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500000}
ROUNDS=${2:-5}
KANSHI=${KANSHI:-.build/release/kanshi}
if [ ! -x "$KANSHI" ]; then
    echo "bench-trace: building $KANSHI (swift build -c release --product kanshi)" >&2
    swift build -c release --product kanshi >/dev/null
fi
for t in strace fio cc; do command -v $t >/dev/null || { echo "bench-trace: $t is missing (scripts/setup.sh installs it)" >&2; exit 1; }; done

work=$(mktemp -d /tmp/kanshi-bench-trace.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/rwbench" scripts/bench-trace/rwbench.c
echo "confidential" > "$work/secret"

# The calls kanshi stops a managed process on (base filter + writes); strace --seccomp-bpf traces the same.
CALLS=open,openat,openat2,creat,close,dup,dup2,dup3,fcntl,pipe,pipe2,socket,socketpair,connect,bind,accept,accept4,execve,execveat,rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,rmdir,truncate,ftruncate,sendfile,splice,tee,vmsplice,copy_file_range,sendto,sendmsg,sendmmsg,recvfrom,recvmsg,recvmmsg,mmap,write,pwrite64,writev,pwritev,pwritev2

run_mode() {  # mode, command...
    local mode=$1; shift
    case $mode in
        native) "$@" ;;
        kanshi) "$KANSHI" trace --quiet --log "$work/k.jsonl" -- "$@" ;;
        managed) rm -f "$work/m.jsonl.managed.json"
                 "$KANSHI" trace --quiet --protect "$work/secret" --log "$work/m.jsonl" -- sh -c 'read x < "$0"; exec "$@"' "$work/secret" "$@" ;;
        strace) strace -f -qq -o /dev/null "$@" ;;
        strace-seccomp) strace --seccomp-bpf -f -qq -o /dev/null -e trace=$CALLS "$@" ;;
    esac
}

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

MODES="native kanshi managed strace strace-seccomp"

bench() {  # name, command...  (rounds interleave the modes so background load hits them alike)
    local name=$1; shift
    declare -A times=()
    for _ in $(seq "$ROUNDS"); do
        for mode in $MODES; do
            rm -f "$work"/data*
            local t0; t0=$(now)
            run_mode $mode "$@" >/dev/null 2>&1 || { echo "bench-trace: $name under $mode failed" >&2; exit 1; }
            times[$mode]+="$(( $(now) - t0 )) "
        done
    done
    local native
    native=$(printf "%s\n" ${times[native]} | median)
    printf "%-20s %-15s %10s %8s\n" "$name" mode "median s" "x native"
    for mode in $MODES; do
        local m; m=$(printf "%s\n" ${times[$mode]} | median)
        printf "%-20s %-15s %10.3f %8.2f\n" "" "$mode" "$(echo "$m / 1000000000" | bc -l)" "$(echo "$m / $native" | bc -l)"
    done
}

echo "kanshi trace benchmark: N=$N read/write calls, $ROUNDS rounds, $(nproc) cores, $(uname -r)"
WORKLOADS=${WORKLOADS:-"rw seq rand"}
[[ " $WORKLOADS " == *" rw "* ]] && bench "read/write x$N" "$work/rwbench" "$work/data-rw" "$N"
[[ " $WORKLOADS " == *" seq "* ]] && bench "fio seq 4k" fio --name=seq --filename="$work/data-fio" --rw=readwrite --bs=4k --size=64m --ioengine=psync --thread --minimal
[[ " $WORKLOADS " == *" rand "* ]] && bench "fio rand 4k" fio --name=rand --filename="$work/data-fio" --rw=randrw --bs=4k --size=64m --ioengine=psync --thread --minimal
grep -q '"managed"' "$work/m.jsonl" && echo "(managed runs: the workload was managed: $(grep -c '"ev":"managed"' "$work/m.jsonl") managed events in the last log)"
