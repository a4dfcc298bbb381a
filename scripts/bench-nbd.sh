#!/usr/bin/env bash
# bench-nbd.sh — benchmark Kanshi's NBD server against other NBD servers
# side by side with fio's nbd engine (libnbd client, no kernel nbd device).
#
# Run `scripts/bench-nbd.sh --help` for usage.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

# ----------------------------------------------------------------- defaults --
RUNTIME=10          # seconds measured per fio job
RAMP=1              # seconds of fio ramp_time (not measured) per job
SIZE=1G             # image size
ROUNDS=3
JSON_OUT=""
WORKDIR_PARENT="${TMPDIR:-/var/tmp}"
QUICK=0
QEMU_MODES=""       # e.g. "writeback" or "none,writeback" -> adds qemu-nbd configs
CONFIGS=""          # explicit config list (overrides the default set)
WORKLOADS=""        # explicit workload list
BASELINE=nbdkit
START_TIMEOUT=10
STOP_TIMEOUT=30
FSYNC=0             # fio fsync=N: NBD FLUSH after every N writes (0 = never)
STAND_IN=0
set_runtime=0 set_ramp=0 set_size=0 set_rounds=0

KANSHI="${KANSHI:-$REPO_ROOT/.build/release/kanshi}"
KANSHI_SERVE_CMD="${KANSHI_SERVE_CMD:-}"

ALL_WORKLOADS="randwrite-4k-qd1 randwrite-4k-qd16 seqwrite-1m-qd4 randread-4k-qd1 randread-4k-qd16"

usage() {
    cat <<EOF
Usage: $PROG [options]

Benchmark NBD servers side by side with fio's nbd engine
(--ioengine=nbd --uri=nbd+unix:///?socket=SOCK). Each server config gets a
fresh copy of the same pre-filled random image (and a fresh journal dir) for
every round, runs all workloads in one server lifetime, and is stopped with
SIGTERM afterwards. Configs are interleaved within each round, and the order
rotates from round to round, so machine noise hits every config alike.
Results are medians over the rounds.

Workloads (run in this order against one server process):
  randwrite-4k-qd1    4 KiB random writes,     iodepth 1
  randwrite-4k-qd16   4 KiB random writes,     iodepth 16
  seqwrite-1m-qd4     1 MiB sequential writes, iodepth 4
  randread-4k-qd1     4 KiB random reads,      iodepth 1
  randread-4k-qd16    4 KiB random reads,      iodepth 16
The reads come after the writes on purpose: in journal mode they must read
through what the journal holds by then.

Server configs:
  kanshi-journal      \$KANSHI disk serve --image IMG --journal DIR --socket SOCK
  kanshi-nojournal    \$KANSHI disk serve --image IMG --no-journal --socket SOCK
  nbdkit              nbdkit --foreground --unix SOCK file IMG
  qemu-nbd-MODE       qemu-nbd --persistent --socket SOCK --format raw --cache=MODE IMG
                      (only with --qemu-nbd or --configs; MODE = writeback, none, ...)
Default set: kanshi-journal,kanshi-nojournal,nbdkit (+ qemu-nbd-MODE per --qemu-nbd).

Options:
  --runtime SEC      measured seconds per fio job (default $RUNTIME)
  --ramp SEC         fio ramp_time per job, not measured (default $RAMP)
  --size SIZE        image size, IEC suffixes ok: 64M, 1G (default $SIZE)
  --rounds N         repetitions of the whole matrix (default $ROUNDS)
  --json FILE        write raw per-run results and medians as JSON to FILE
  --workdir DIR      parent dir for the temporary images/journals/sockets
                     (default \$TMPDIR or /var/tmp; a private subdir is made
                     there and removed on exit)
  --quick            smoke test: --runtime 2 --ramp 0 --rounds 1 --size 64M
                     (explicitly given options still win)
  --qemu-nbd MODES   also run qemu-nbd with these cache modes, comma separated
                     (e.g. writeback or none,writeback)
  --configs LIST     run exactly these configs, comma separated (see above)
  --workloads LIST   run only these workloads, comma separated
  --baseline NAME    config the ratios are computed against (default nbdkit)
  --fsync N          have fio send an NBD FLUSH after every N writes
                     (default 0 = never; fio's nbd engine never sets FUA)
  --start-timeout S  seconds a server gets to create its socket (default $START_TIMEOUT)
  --stop-timeout S   seconds a server gets to exit after SIGTERM (default $STOP_TIMEOUT)
  --stand-in         development mode while Kanshi's server does not exist:
                     kanshi-journal runs qemu-nbd on a qcow2 overlay kept in the
                     journal dir (a real growing side file), kanshi-nojournal runs
                     qemu-nbd --cache=writeback on the raw image
  -h, --help         this text

Environment:
  KANSHI=PATH        kanshi binary (default: <repo>/.build/release/kanshi)
  KANSHI_SERVE_CMD   command template run instead of the kanshi binary for both
                     kanshi configs; placeholders {image} {socket} {journal}
                     {journal_args} (= "--journal DIR" or "--no-journal"), e.g.
                     KANSHI_SERVE_CMD='qemu-nbd --persistent --socket {socket} -f raw {image}'

Memory: VmRSS/VmHWM of the server PID from /proc/PID/status. Before each
workload the peak is reset (echo 5 > /proc/PID/clear_refs), so "peak" is the
peak during that workload; "rss" is VmRSS right after it.
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
note() { printf '%s\n' "$*" >&2; }

need_arg() { [ $# -ge 2 ] && [ -n "$2" ] || die "option $1 needs a value"; }

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runtime) need_arg "$@"; RUNTIME=$2; set_runtime=1; shift 2 ;;
        --ramp) need_arg "$@"; RAMP=$2; set_ramp=1; shift 2 ;;
        --size) need_arg "$@"; SIZE=$2; set_size=1; shift 2 ;;
        --rounds) need_arg "$@"; ROUNDS=$2; set_rounds=1; shift 2 ;;
        --json) need_arg "$@"; JSON_OUT=$2; shift 2 ;;
        --workdir) need_arg "$@"; WORKDIR_PARENT=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --qemu-nbd) need_arg "$@"; QEMU_MODES=$2; shift 2 ;;
        --configs) need_arg "$@"; CONFIGS=$2; shift 2 ;;
        --workloads) need_arg "$@"; WORKLOADS=$2; shift 2 ;;
        --baseline) need_arg "$@"; BASELINE=$2; shift 2 ;;
        --fsync) need_arg "$@"; FSYNC=$2; shift 2 ;;
        --start-timeout) need_arg "$@"; START_TIMEOUT=$2; shift 2 ;;
        --stop-timeout) need_arg "$@"; STOP_TIMEOUT=$2; shift 2 ;;
        --stand-in) STAND_IN=1; shift ;;
        --runtime=*|--ramp=*|--size=*|--rounds=*|--json=*|--workdir=*|--qemu-nbd=*|--configs=*|--workloads=*|--baseline=*|--fsync=*|--start-timeout=*|--stop-timeout=*)
            opt=${1%%=*}; val=${1#*=}; shift; set -- "$opt" "$val" "$@" ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    [ "$set_runtime" = 1 ] || RUNTIME=2
    [ "$set_ramp" = 1 ] || RAMP=0
    [ "$set_rounds" = 1 ] || ROUNDS=1
    [ "$set_size" = 1 ] || SIZE=64M
fi

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
is_num() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }
is_uint "$RUNTIME" && [ "$RUNTIME" -ge 1 ] || die "--runtime must be a whole number of seconds >= 1"
is_num "$RAMP" || die "--ramp must be a number of seconds"
is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] || die "--rounds must be >= 1"
is_uint "$FSYNC" || die "--fsync must be a whole number"
is_num "$START_TIMEOUT" || die "--start-timeout must be a number"
is_num "$STOP_TIMEOUT" || die "--stop-timeout must be a number"
SIZE_BYTES=$(numfmt --from=iec "${SIZE%B}" 2>/dev/null) || die "cannot parse --size '$SIZE'"
[ $((SIZE_BYTES % 1048576)) -eq 0 ] && [ "$SIZE_BYTES" -ge 16777216 ] \
    || die "--size must be a multiple of 1 MiB and at least 16M (got $SIZE)"
SIZE_MIB=$((SIZE_BYTES / 1048576))

# ---------------------------------------------------------- configs/workloads --
if [ -z "$CONFIGS" ]; then
    CONFIGS="kanshi-journal,kanshi-nojournal,nbdkit"
    if [ -n "$QEMU_MODES" ]; then
        IFS=, read -r -a _modes <<<"$QEMU_MODES"
        for m in "${_modes[@]}"; do CONFIGS+=",qemu-nbd-$m"; done
    fi
fi
IFS=, read -r -a CONFIG_LIST <<<"$CONFIGS"
[ ${#CONFIG_LIST[@]} -ge 1 ] || die "no configs selected"
if [ -n "$WORKLOADS" ]; then
    IFS=, read -r -a WORKLOAD_LIST <<<"$WORKLOADS"
else
    read -r -a WORKLOAD_LIST <<<"$ALL_WORKLOADS"
fi

config_label() {
    case "$1" in
        kanshi-journal) echo "kanshi(journal)" ;;
        kanshi-nojournal) echo "kanshi(no journal)" ;;
        nbdkit) echo "nbdkit" ;;
        qemu-nbd-*) echo "qemu-nbd(${1#qemu-nbd-})" ;;
        *) return 1 ;;
    esac
}
config_has_journal() { [ "$1" = kanshi-journal ]; }
is_kanshi_config() { case "$1" in kanshi-*) return 0 ;; *) return 1 ;; esac; }

# workload id -> "rw bs iodepth label"
workload_spec() {
    case "$1" in
        randwrite-4k-qd1)  echo "randwrite 4k 1 4k randwrite qd1" ;;
        randwrite-4k-qd16) echo "randwrite 4k 16 4k randwrite qd16" ;;
        seqwrite-1m-qd4)   echo "write 1m 4 1M seqwrite qd4" ;;
        randread-4k-qd1)   echo "randread 4k 1 4k randread qd1" ;;
        randread-4k-qd16)  echo "randread 4k 16 4k randread qd16" ;;
        *) return 1 ;;
    esac
}

need_kanshi=0 need_nbdkit=0 need_qemu=0
for c in "${CONFIG_LIST[@]}"; do
    config_label "$c" >/dev/null || die "unknown config '$c' (kanshi-journal, kanshi-nojournal, nbdkit, qemu-nbd-MODE)"
    case "$c" in
        kanshi-*) need_kanshi=1 ;;
        nbdkit) need_nbdkit=1 ;;
        qemu-nbd-*) need_qemu=1
            case "${c#qemu-nbd-}" in
                none|writeback|writethrough|directsync|unsafe) ;;
                *) die "unknown qemu-nbd cache mode in '$c' (none, writeback, writethrough, directsync, unsafe)" ;;
            esac ;;
    esac
done
for w in "${WORKLOAD_LIST[@]}"; do
    workload_spec "$w" >/dev/null || die "unknown workload '$w' (one of: $ALL_WORKLOADS)"
done
BASELINE_OK=0
for c in "${CONFIG_LIST[@]}"; do [ "$c" = "$BASELINE" ] && BASELINE_OK=1; done
[ "$BASELINE_OK" = 1 ] || { note "note: baseline '$BASELINE' is not among the configs; no ratios will be shown"; }

# --------------------------------------------------------------- tool checks --
have() { command -v "$1" >/dev/null 2>&1; }
have fio || die "fio not found (apt-get install fio)"
have python3 || die "python3 not found"
fio --enghelp=nbd 2>/dev/null | grep -q '^uri' \
    || die "this fio ($(fio --version 2>/dev/null)) has no 'nbd' ioengine (needs fio built with libnbd)"
[ "$need_nbdkit" = 0 ] || have nbdkit || die "nbdkit not found (apt-get install nbdkit)"
if [ "$need_kanshi" = 1 ] && [ "$STAND_IN" = 1 ]; then need_qemu=1; fi
if [ "$need_qemu" = 1 ]; then
    have qemu-nbd || die "qemu-nbd not found (apt-get install qemu-utils)"
    have qemu-img || die "qemu-img not found (apt-get install qemu-utils)"
fi
if [ "$need_kanshi" = 1 ] && [ "$STAND_IN" = 0 ] && [ -z "$KANSHI_SERVE_CMD" ]; then
    [ -x "$KANSHI" ] || die "kanshi binary not found or not executable at '$KANSHI'.
  Build it (swift build -c release), point KANSHI=... at it, use --stand-in /
  KANSHI_SERVE_CMD=... for a stand-in, or leave kanshi out with e.g. --configs nbdkit,qemu-nbd-writeback"
fi

# ------------------------------------------------------------------ workdir --
mkdir -p "$WORKDIR_PARENT" || die "cannot create --workdir $WORKDIR_PARENT"
WORK=$(mktemp -d "$WORKDIR_PARENT/bench-nbd.XXXXXX") || die "cannot create temp dir in $WORKDIR_PARENT"
WORK=$(cd "$WORK" && pwd)   # absolute: it ends up in the nbd URI and server args
SERVER_PID="" SERVER_LABEL="" FIO_PID="" HELPER_PID=""
CLEANED=0

kill_and_reap() { # pid timeout_s  — TERM, wait, then KILL
    local pid=$1 t=$2 i=0 n
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    n=$(awk -v t="$t" 'BEGIN{printf "%d", t*10}')
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt "$n" ]; do
        # a reaped-but-not-waited child still answers kill -0 as a zombie
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
        sleep 0.1; i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
        note "  pid $pid did not exit within ${t}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    [ "$CLEANED" = 1 ] && return 0
    CLEANED=1
    trap - INT TERM HUP
    if [ -n "$FIO_PID" ]; then kill_and_reap "$FIO_PID" 5; FIO_PID=""; fi
    if [ -n "$HELPER_PID" ]; then kill_and_reap "$HELPER_PID" 5; HELPER_PID=""; fi
    if [ -n "$SERVER_PID" ]; then
        note "cleanup: stopping $SERVER_LABEL (pid $SERVER_PID)"
        kill_and_reap "$SERVER_PID" 10; SERVER_PID=""
    fi
    rm -rf -- "$WORK"
}
on_signal() { note ""; note "$PROG: interrupted by SIG$1, cleaning up"; exit "$2"; }
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

longest=""
for c in "${CONFIG_LIST[@]}"; do [ ${#c} -gt ${#longest} ] && longest=$c; done
sock_probe="$WORK/r$ROUNDS-$longest/nbd.sock"
[ ${#sock_probe} -lt 108 ] || die "socket path would be ${#sock_probe} bytes, over the 107-byte unix socket limit: use a shorter --workdir"
avail_kib=$(df -Pk "$WORK" | awk 'NR==2{print $4}')
need_kib=$(( (SIZE_BYTES * 2 + 1073741824) / 1024 ))
[ "$avail_kib" -ge "$need_kib" ] || die "not enough space in $WORKDIR_PARENT: $((avail_kib/1024)) MiB free, need ~$((need_kib/1024)) MiB (base image + one copy + 1 GiB slack)"
# The journal records every write (and each read); one server run's journal
# can reach several GiB (about 1 GiB in 6 s of writes was seen at 64M/2s).
# Only one journal exists at a time. Rough bound: 1 GiB per second of writes.
case ",$CONFIGS," in *,kanshi-journal,*)
    n_w=0; for w in "${WORKLOAD_LIST[@]}"; do case "$w" in *write*) n_w=$((n_w + 1)) ;; esac; done
    j_kib=$(( n_w * (RUNTIME + ${RAMP%.*} + 1) * 1048576 ))
    if [ "$avail_kib" -lt $((need_kib + j_kib)) ]; then
        note "WARNING: $((avail_kib / 1048576)) GiB free in $WORKDIR_PARENT; the journal of one run may need up to ~$((j_kib / 1048576)) GiB"
    fi ;;
esac

# ------------------------------------------------------------ python helper --
HELPER="$WORK/bench_helper.py"
cat >"$HELPER" <<'PYEOF'
import json, statistics, sys, os, time

def load_fio(path):
    # fio's nbd engine prints "fio: connected to NBD server" to stdout; we use
    # --output=FILE (which keeps it out), but skip any leading noise anyway.
    with open(path) as f:
        txt = f.read()
    i = txt.find("{")
    if i < 0:
        raise SystemExit("no JSON in fio output %s" % path)
    return json.loads(txt[i:])

def pct(d, key):
    p = (d.get("clat_ns") or {}).get("percentile") or {}
    v = p.get(key)
    return v / 1000.0 if v is not None else None

def cmd_record(a):
    # a: fio_json round order config label workload rw rss_kib hwm_kib hwm_reset
    #    journal_bytes cpu_ticks clk_tck loadavg
    (fio_json, rnd, order, config, label, workload, rw, rss, hwm, hwm_reset,
     jbytes, cpu_ticks, clk_tck, loadavg) = a
    d = load_fio(fio_json)
    job = d["jobs"][0]
    dirn = "read" if "read" in rw else "write"
    s = job[dirn]
    if job.get("error", 0):
        raise SystemExit("fio reported error %s" % job["error"])
    if not s.get("total_ios"):
        raise SystemExit("fio did no I/O")
    rec = {
        "type": "workload", "round": int(rnd), "order": int(order),
        "config": config, "label": label, "workload": workload,
        "iops": s["iops"], "mib_s": s["bw_bytes"] / 1048576.0,
        "bw_bytes": s["bw_bytes"], "total_ios": s["total_ios"],
        "runtime_ms": s["runtime"],
        "lat_mean_us": s["lat_ns"]["mean"] / 1000.0,
        "clat_p50_us": pct(s, "50.000000"), "clat_p99_us": pct(s, "99.000000"),
        "clat_p999_us": pct(s, "99.900000"),
        "sync_ios": (job.get("sync") or {}).get("total_ios", 0),
        "fio_options": job.get("job options", {}),
        "rss_kib": int(rss) if rss else None,
        "peak_kib": int(hwm) if hwm else None,
        "peak_is_per_workload": hwm_reset == "1",
        "journal_bytes": int(jbytes) if jbytes else None,
        "server_cpu_s": int(cpu_ticks) / float(clk_tck) if cpu_ticks else None,
        "loadavg_before": loadavg,
    }
    print(json.dumps(rec))
    j = "" if rec["journal_bytes"] is None else "  journal %.1f MiB" % (rec["journal_bytes"] / 1048576)
    m = ""
    if rec["rss_kib"]:
        m = "  rss %.1f MiB  peak %.1f MiB" % (rec["rss_kib"] / 1024, (rec["peak_kib"] or 0) / 1024)
    cpu = "" if rec["server_cpu_s"] is None else "  srv-cpu %.1fs" % rec["server_cpu_s"]
    sys.stderr.write("    %-18s %10.0f IOPS %9.1f MiB/s  p99 %8.0f us%s%s%s\n" % (
        workload, rec["iops"], rec["mib_s"], rec["clat_p99_us"] or 0, m, j, cpu))

def cmd_server(a):
    (rnd, order, config, label, idle_rss, startup_hwm, exit_status, jfinal,
     start_s, pid_comm) = a
    print(json.dumps({
        "type": "server", "round": int(rnd), "order": int(order), "config": config,
        "label": label,
        "idle_rss_kib": int(idle_rss) if idle_rss else None,
        "startup_peak_kib": int(startup_hwm) if startup_hwm else None,
        "exit_status": int(exit_status) if exit_status not in ("", None) else None,
        "journal_final_bytes": int(jfinal) if jfinal else None,
        "socket_ready_s": float(start_s), "process": pid_comm,
    }))

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)

def table(header, rows, aligns=None):
    cols = len(header)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(cols)]
    out = []
    for n, r in enumerate([header] + rows):
        cells = []
        for i in range(cols):
            s = str(r[i])
            cells.append(s.ljust(widths[i]) if i == 0 else s.rjust(widths[i]))
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)

def cmd_report(a):
    records_path, meta_path, json_out = a
    meta = json.load(open(meta_path))
    recs = [json.loads(l) for l in open(records_path) if l.strip()]
    wl = [r for r in recs if r["type"] == "workload"]
    sv = [r for r in recs if r["type"] == "server"]
    configs = meta["configs"]; labels = meta["labels"]; workloads = meta["workloads"]
    wlabels = meta["workload_labels"]; baseline = meta["baseline"]
    journal_cfgs = [c for c in configs if c in meta["journal_configs"]]

    medians = {}
    for c in configs:
        medians[c] = {}
        for w in workloads:
            rs = [r for r in wl if r["config"] == c and r["workload"] == w]
            if not rs:
                continue
            iops = [r["iops"] for r in rs]
            m = {k: med([r[k] for r in rs]) for k in
                 ("iops", "mib_s", "lat_mean_us", "clat_p50_us", "clat_p99_us",
                  "clat_p999_us", "rss_kib", "peak_kib", "journal_bytes", "server_cpu_s")}
            m["rounds"] = len(rs)
            m["iops_min"] = min(iops); m["iops_max"] = max(iops)
            m["iops_spread_pct"] = (100.0 * (max(iops) - min(iops)) / m["iops"]) if m["iops"] else None
            medians[c][w] = m
        runs = [s for s in sv if s["config"] == c]
        growth, whole_peak = [], []
        for s in runs:
            rs = sorted([r for r in wl if r["config"] == c and r["round"] == s["round"]],
                        key=lambda r: workloads.index(r["workload"]))
            if len(rs) >= 2 and rs[0]["rss_kib"] and rs[-1]["rss_kib"]:
                growth.append(rs[-1]["rss_kib"] - rs[0]["rss_kib"])
            peaks = [r["peak_kib"] for r in rs if r["peak_kib"]] + \
                    ([s["startup_peak_kib"]] if s["startup_peak_kib"] else [])
            if peaks:
                whole_peak.append(max(peaks))
        medians[c]["_server"] = {
            "idle_rss_kib": med([s["idle_rss_kib"] for s in runs]),
            "rss_growth_first_to_last_kib": med(growth),
            "rss_growth_per_round_kib": growth,
            "peak_whole_run_kib": med(whole_peak),
            "journal_final_bytes": med([s["journal_final_bytes"] for s in runs]),
            "socket_ready_s": med([s["socket_ready_s"] for s in runs]),
            "exit_status": [s["exit_status"] for s in runs],
        }

    ratios = {}
    if baseline in configs:
        for c in configs:
            if c == baseline:
                continue
            ratios[c] = {}
            for w in workloads:
                a_, b_ = medians[c].get(w), medians[baseline].get(w)
                if a_ and b_ and b_["iops"]:
                    per_round = {}
                    for r in wl:
                        if r["config"] == c and r["workload"] == w:
                            base = [x for x in wl if x["config"] == baseline and
                                    x["workload"] == w and x["round"] == r["round"]]
                            if base and base[0]["iops"]:
                                per_round[r["round"]] = r["iops"] / base[0]["iops"]
                    ratios[c][w] = {"iops": a_["iops"] / b_["iops"],
                                    "mib_s": a_["mib_s"] / b_["mib_s"] if b_["mib_s"] else None,
                                    "iops_per_round": per_round,
                                    "iops_per_round_min": min(per_round.values()) if per_round else None,
                                    "iops_per_round_max": max(per_round.values()) if per_round else None}

    P = print
    P("")
    P("=" * 78)
    P("NBD benchmark: fio %s, ioengine=nbd over a unix socket, 1 job, time_based" % meta["fio_version"])
    P("  %d round(s), %s s measured + %s s ramp per job, image %s (random data, fresh copy per server run)"
      % (meta["rounds"], meta["runtime"], meta["ramp"], meta["size"]))
    P("  writes: %s" % (("fio sends an NBD FLUSH after every write" if meta["fsync"] == 1 else
                         "fio sends an NBD FLUSH after every %d writes" % meta["fsync"]) if meta["fsync"]
                        else "no FLUSH/FUA from the client (what reaches disk is up to the server)"))
    P("  config order rotates each round: %s" % " | ".join(
        ",".join(labels[c] for c in o) for o in meta["orders"][:3]) + (" ..." if len(meta["orders"]) > 3 else ""))
    P("  host: %s, %s CPUs, kernel %s; loadavg at start %s, at end %s"
      % (meta["host"], meta["nproc"], meta["kernel"], meta["loadavg_start"], meta.get("loadavg_end", "?")))
    for c in configs:
        P("  %-22s %s" % (labels[c] + ":", meta["commands"][c]))
    P("")

    ratio_cfgs = [c for c in configs if c in ratios]
    hdr = ["workload", "metric"] + [labels[c] for c in configs] + \
          ["%s/%s" % (labels[c], labels[baseline]) for c in ratio_cfgs]
    rows = []
    for w in workloads:
        r1 = [wlabels[w], "IOPS"]; r2 = ["", "MiB/s"]; r3 = ["", "spread"]; r4 = ["", "p99 us"]
        for c in configs:
            m = medians[c].get(w)
            r1.append(fmt(m and m["iops"], ".0f")); r2.append(fmt(m and m["mib_s"], ".1f"))
            r3.append(fmt(m and m["iops_spread_pct"], ".0f") + ("%" if m and m["iops_spread_pct"] is not None else ""))
            r4.append(fmt(m and m["clat_p99_us"], ".0f"))
        for c in ratio_cfgs:
            x = ratios[c].get(w)
            r1.append(fmt(x and x["iops"], ".2f") + ("x" if x else "")); r2.append(""); r4.append("")
            r3.append("%.2f..%.2f" % (x["iops_per_round_min"], x["iops_per_round_max"])
                      if x and x["iops_per_round_min"] is not None else "")
        rows += [r1, r2]
        if meta["rounds"] > 1:
            rows.append(r3)
        rows.append(r4)
    P("Throughput: median over %d round(s)%s" % (meta["rounds"],
      "; spread = (max-min)/median of IOPS across rounds, and for ratios the range of\n"
      "the per-round ratios (each config vs the baseline in the same round)" if meta["rounds"] > 1 else ""))
    if ratios:
        P("ratios are of median IOPS (same as MiB/s at a fixed block size); >1 means faster than %s" % labels.get(baseline, baseline))
    P(table(hdr, rows))
    P("")

    def mib(k):
        if k is None:
            return None
        v = k / 1024.0
        return 0.0 if abs(v) < 0.05 else v
    hdr = ["server memory, MiB"] + [labels[c] for c in configs]
    rows = [["idle after start: rss"] + [fmt(mib(medians[c]["_server"]["idle_rss_kib"]), ".1f") for c in configs]]
    for w in workloads:
        row = [wlabels[w] + ": peak / rss"]
        for c in configs:
            m = medians[c].get(w)
            row.append("%s / %s" % (fmt(m and mib(m["peak_kib"]), ".1f"), fmt(m and mib(m["rss_kib"]), ".1f")))
        rows.append(row)
    rows.append(["rss growth, first->last workload"] + [
        fmt(mib(medians[c]["_server"]["rss_growth_first_to_last_kib"]), "+.1f") for c in configs])
    rows.append(["peak over the whole run (VmHWM)"] + [
        fmt(mib(medians[c]["_server"]["peak_whole_run_kib"]), ".1f") for c in configs])
    P("Memory of the server process: median over rounds. peak = VmHWM during that workload%s;"
      % ("" if meta["hwm_reset"] else " (clear_refs reset unavailable: cumulative peak)"))
    P("rss = VmRSS right after it.")
    P(table(hdr, rows))
    if journal_cfgs:
        P("")
        hdr = ["journal size, MiB (du)"] + [labels[c] for c in journal_cfgs]
        rows = []
        for w in workloads:
            rows.append(["after " + wlabels[w]] + [
                fmt(medians[c].get(w) and medians[c][w]["journal_bytes"] and medians[c][w]["journal_bytes"] / 1048576, ".1f")
                for c in journal_cfgs])
        rows.append(["after server shutdown"] + [
            fmt(medians[c]["_server"]["journal_final_bytes"] and medians[c]["_server"]["journal_final_bytes"] / 1048576, ".1f")
            for c in journal_cfgs])
        P(table(hdr, rows))
    bad = [(s["label"], s["round"], s["exit_status"]) for s in sv
           if s["exit_status"] not in (0, 143, 130, None)]
    if bad:
        P("")
        for l, r, e in bad:
            P("WARNING: %s (round %d) exited with status %s after SIGTERM" % (l, r, e))
    P("")

    if json_out:
        out = {"meta": meta, "medians": medians, "ratios_vs_baseline": ratios,
               "raw": {"workload_runs": wl, "server_runs": sv}}
        with open(json_out, "w") as f:
            json.dump(out, f, indent=2, sort_keys=False)
        P("JSON written to %s" % json_out)

def cmd_meta(a):
    import platform, socket
    e = os.environ
    def kv(name):
        return dict(l.split("\t", 1) for l in e[name].splitlines() if "\t" in l)
    configs = e["B_CONFIGS"].split(",")
    print(json.dumps({
        "fio_version": e["B_FIO_VERSION"], "nbdkit_version": e["B_NBDKIT_VERSION"],
        "qemu_nbd_version": e["B_QEMU_VERSION"], "kanshi": e["B_KANSHI"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
        "kernel": platform.release(), "nproc": os.cpu_count(),
        "loadavg_start": e["B_LOADAVG_START"], "loadavg_end": e["B_LOADAVG_END"],
        "rounds": int(e["B_ROUNDS"]), "runtime": int(e["B_RUNTIME"]),
        "ramp": float(e["B_RAMP"]) if "." in e["B_RAMP"] else int(e["B_RAMP"]), "size": e["B_SIZE"], "size_bytes": int(e["B_SIZE_BYTES"]),
        "fsync": int(e["B_FSYNC"]), "hwm_reset": e["B_HWM_RESET"] == "1",
        "stand_in": e["B_STAND_IN"] == "1", "baseline": e["B_BASELINE"],
        "configs": configs, "journal_configs": ["kanshi-journal"],
        "labels": kv("B_LABELS"), "commands": kv("B_COMMANDS"),
        "workloads": e["B_WORKLOADS"].split(","), "workload_labels": kv("B_WLABELS"),
        "orders": [o.split(",") for o in e["B_ORDERS"].split(";")],
    }, indent=1))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"record": cmd_record, "server": cmd_server, "report": cmd_report, "meta": cmd_meta}[cmd](args)
PYEOF

# ------------------------------------------------------------- proc helpers --
proc_status_kib() { # pid field -> kB value or empty
    awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status" 2>/dev/null || true
}
proc_cpu_ticks() { # utime+stime of pid
    local s rest
    s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
    rest=${s##*) }
    # shellcheck disable=SC2086
    set -- $rest
    echo $(( ${12} + ${13} ))
}
proc_alive() { # running and not a zombie
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
journal_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }
CLK_TCK=$(getconf CLK_TCK)

show_server_stderr() {
    local log=$1
    note "---- $SERVER_LABEL stderr (last 40 lines) ----"
    if [ -s "$log.err" ]; then tail -n 40 "$log.err" >&2; else note "(empty)"; fi
    if [ -s "$log.out" ]; then
        note "---- $SERVER_LABEL stdout (last 10 lines) ----"; tail -n 10 "$log.out" >&2
    fi
    note "----"
}

# server_cmd config img jdir sock -> fills array SERVER_CMD
build_server_cmd() {
    local config=$1 img=$2 jdir=$3 sock=$4 jargs tmpl q
    SERVER_CMD=()
    case "$config" in
        kanshi-*)
            if [ "$config" = kanshi-journal ]; then jargs=(--journal "$jdir"); else jargs=(--no-journal); fi
            if [ -n "$KANSHI_SERVE_CMD" ]; then
                tmpl=$KANSHI_SERVE_CMD
                q=$(printf '%q' "$img"); tmpl=${tmpl//\{image\}/$q}
                q=$(printf '%q' "$sock"); tmpl=${tmpl//\{socket\}/$q}
                q=$(printf '%q' "$jdir"); tmpl=${tmpl//\{journal\}/$q}
                q=$(printf '%q ' "${jargs[@]}"); tmpl=${tmpl//\{journal_args\}/$q}
                SERVER_CMD=(bash -c "exec $tmpl")
            elif [ "$STAND_IN" = 1 ]; then
                if [ "$config" = kanshi-journal ]; then
                    # copy-on-write overlay in the journal dir: writes land there
                    # and reads go through it, so it grows like a journal would
                    qemu-img create -q -f qcow2 -b "$img" -F raw "$jdir/overlay.qcow2" \
                        || die "qemu-img create failed for the stand-in overlay"
                    SERVER_CMD=(qemu-nbd --persistent --socket "$sock" --format qcow2 --cache=writeback "$jdir/overlay.qcow2")
                else
                    SERVER_CMD=(qemu-nbd --persistent --socket "$sock" --format raw --cache=writeback "$img")
                fi
            else
                SERVER_CMD=("$KANSHI" disk serve --image "$img" "${jargs[@]}" --socket "$sock")
            fi ;;
        nbdkit)
            SERVER_CMD=(nbdkit --foreground --unix "$sock" file "$img") ;;
        qemu-nbd-*)
            # --persistent matters: fio's nbd engine connects twice per job
            # (a probe for the size, then the real connection); without it
            # qemu-nbd exits after the first client disconnects.
            SERVER_CMD=(qemu-nbd --persistent --socket "$sock" --format raw "--cache=${config#qemu-nbd-}" "$img") ;;
    esac
}

describe_cmd() { # config -> command line with placeholders, for the header
    local sc
    case "$1" in
        kanshi-*)
            if [ -n "$KANSHI_SERVE_CMD" ]; then sc="KANSHI_SERVE_CMD: $KANSHI_SERVE_CMD"
            elif [ "$STAND_IN" = 1 ]; then
                if [ "$1" = kanshi-journal ]; then sc="STAND-IN: qemu-nbd --persistent --socket SOCK --format qcow2 --cache=writeback JOURNAL/overlay.qcow2 (backing IMG)"
                else sc="STAND-IN: qemu-nbd --persistent --socket SOCK --format raw --cache=writeback IMG"; fi
            elif [ "$1" = kanshi-journal ]; then sc="$KANSHI disk serve --image IMG --journal DIR --socket SOCK"
            else sc="$KANSHI disk serve --image IMG --no-journal --socket SOCK"; fi ;;
        nbdkit) sc="nbdkit --foreground --unix SOCK file IMG" ;;
        qemu-nbd-*) sc="qemu-nbd --persistent --socket SOCK --format raw --cache=${1#qemu-nbd-} IMG" ;;
    esac
    echo "$sc"
}

# start_server config img jdir sock log -> SERVER_PID, SERVER_READY_S
start_server() {
    local config=$1 img=$2 jdir=$3 sock=$4 log=$5 t0 i=0 n status
    build_server_cmd "$config" "$img" "$jdir" "$sock"
    SERVER_LABEL=$(config_label "$config")
    rm -f -- "$sock"
    t0=$(date +%s.%N)
    # setsid: own session/process group, so Ctrl-C on the terminal does not
    # hit the server behind our back and the cleanup decides when it stops.
    # (setsid execs directly here because we are not a group leader, so $!
    # is the server's own pid.)
    setsid "${SERVER_CMD[@]}" </dev/null >"$log.out" 2>"$log.err" &
    SERVER_PID=$!
    n=$(awk -v t="$START_TIMEOUT" 'BEGIN{printf "%d", t*20}')
    while :; do
        if ! proc_alive "$SERVER_PID"; then
            status=0; wait "$SERVER_PID" 2>/dev/null || status=$?
            SERVER_PID=""
            note ""
            note "$PROG: error: $SERVER_LABEL exited early (status $status) before creating its socket"
            note "  command: ${SERVER_CMD[*]}"
            show_server_stderr "$log"
            exit 1
        fi
        [ -S "$sock" ] && break
        i=$((i + 1))
        if [ "$i" -ge "$n" ]; then
            note ""
            note "$PROG: error: $SERVER_LABEL did not create its socket $sock within ${START_TIMEOUT}s"
            note "  command: ${SERVER_CMD[*]}"
            kill_and_reap "$SERVER_PID" 5; SERVER_PID=""
            show_server_stderr "$log"
            exit 1
        fi
        sleep 0.05
    done
    SERVER_READY_S=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}')
}

# stop_server -> SERVER_EXIT
stop_server() {
    local pid=$SERVER_PID i=0 n
    SERVER_EXIT=""
    kill -TERM "$pid" 2>/dev/null || true
    n=$(awk -v t="$STOP_TIMEOUT" 'BEGIN{printf "%d", t*10}')
    while proc_alive "$pid" && [ "$i" -lt "$n" ]; do sleep 0.1; i=$((i + 1)); done
    if proc_alive "$pid"; then
        note "  WARNING: $SERVER_LABEL did not exit within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    SERVER_EXIT=0; wait "$pid" 2>/dev/null || SERVER_EXIT=$?
    SERVER_PID=""
}

# run_fio workload sock outjson errfile -> returns fio's rc
run_fio() {
    local w=$1 sock=$2 out=$3 err=$4 rw bs qd rc extra=()
    read -r rw bs qd _ <<<"$(workload_spec "$w")"
    [ "$FSYNC" -gt 0 ] && case "$rw" in *write*) extra+=(--fsync="$FSYNC") ;; esac
    fio --name="$w" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
        --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 \
        --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
        --randrepeat=1 "${extra[@]}" \
        --output-format=json --output="$out" </dev/null >"$err.stdout" 2>"$err" &
    FIO_PID=$!
    rc=0; wait "$FIO_PID" || rc=$?
    FIO_PID=""
    return "$rc"
}

# ----------------------------------------------------------------- run it --
RECORDS="$WORK/records.jsonl"; : >"$RECORDS"
META="$WORK/meta.json"
BASE="$WORK/base.img"

note "$PROG: workdir $WORK"
note "configs: ${CONFIG_LIST[*]}"
note "workloads: ${WORKLOAD_LIST[*]}"
note "rounds $ROUNDS, runtime ${RUNTIME}s + ramp ${RAMP}s per job, image $SIZE"
if [ "$need_kanshi" = 1 ]; then
    if [ -n "$KANSHI_SERVE_CMD" ]; then note "kanshi configs use KANSHI_SERVE_CMD stand-in: $KANSHI_SERVE_CMD"
    elif [ "$STAND_IN" = 1 ]; then note "kanshi configs use the qemu-nbd STAND-IN (--stand-in), not kanshi"
    else note "kanshi: $KANSHI"; fi
fi
est=$(( ROUNDS * ${#CONFIG_LIST[@]} * ${#WORKLOAD_LIST[@]} * (RUNTIME + ${RAMP%.*} + 1) ))
note "estimated time: ~$((est / 60)) min $((est % 60)) s plus image copies"

note "filling base image ($SIZE from /dev/urandom) ..."
dd if=/dev/urandom of="$BASE" bs=1M count="$SIZE_MIB" iflag=fullblock conv=fsync status=none &
HELPER_PID=$!; wait "$HELPER_PID"; HELPER_PID=""

LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
ORDERS=()
n_cfg=${#CONFIG_LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
    order=()
    for ((k = 0; k < n_cfg; k++)); do order+=("${CONFIG_LIST[$(((k + r - 1) % n_cfg))]}"); done
    ORDERS+=("$(IFS=,; echo "${order[*]}")")
    note ""
    note "=== round $r/$ROUNDS: ${order[*]}"
    pos=0
    for config in "${order[@]}"; do
        pos=$((pos + 1))
        label=$(config_label "$config")
        rdir="$WORK/r$r-$config"; mkdir -p "$rdir"
        img="$rdir/disk.img"; sock="$rdir/nbd.sock"; jdir="$rdir/journal"; log="$rdir/server"
        mkdir -p "$jdir"
        cp --reflink=never --sparse=never "$BASE" "$img" &
        HELPER_PID=$!; wait "$HELPER_PID"; HELPER_PID=""
        sync "$img"
        start_server "$config" "$img" "$jdir" "$sock" "$log"
        comm=$(cat "/proc/$SERVER_PID/comm" 2>/dev/null || echo "?")
        idle_rss=$(proc_status_kib "$SERVER_PID" VmRSS)
        startup_hwm=$(proc_status_kib "$SERVER_PID" VmHWM)
        note "  $label: pid $SERVER_PID ($comm), socket ready after ${SERVER_READY_S}s, rss $((${idle_rss:-0} / 1024)) MiB"
        for w in "${WORKLOAD_LIST[@]}"; do
            read -r rw _ _ _ <<<"$(workload_spec "$w")"
            hwm_reset=0
            if echo 5 >"/proc/$SERVER_PID/clear_refs" 2>/dev/null; then hwm_reset=1; fi
            HWM_RESET_ANY=${HWM_RESET_ANY:-$hwm_reset}
            cpu0=$(proc_cpu_ticks "$SERVER_PID")
            load=$(cut -d' ' -f1 /proc/loadavg)
            fio_out="$rdir/fio-$w.json"; fio_err="$rdir/fio-$w.err"
            fio_rc=0; run_fio "$w" "$sock" "$fio_out" "$fio_err" || fio_rc=$?
            if [ "$fio_rc" != 0 ]; then
                note ""
                note "$PROG: error: fio failed (exit status $fio_rc) for $label / $w"
                note "---- fio stderr ----"; tail -n 30 "$fio_err" >&2 || true
                [ -s "$fio_err.stdout" ] && tail -n 10 "$fio_err.stdout" >&2
                if ! proc_alive "$SERVER_PID"; then
                    st=0; wait "$SERVER_PID" 2>/dev/null || st=$?; SERVER_PID=""
                    note "$label is no longer running (exit status $st)."
                    note "(fio's nbd engine connects twice per job: a probe for the export size, then"
                    note " the connection that does the I/O. A server that exits after its first client"
                    note " disconnects fails exactly like this.)"
                fi
                show_server_stderr "$log"
                exit 1
            fi
            if ! proc_alive "$SERVER_PID"; then
                st=0; wait "$SERVER_PID" 2>/dev/null || st=$?; SERVER_PID=""
                note "$PROG: error: $label exited during $w (status $st)"
                show_server_stderr "$log"
                exit 1
            fi
            rss=$(proc_status_kib "$SERVER_PID" VmRSS)
            hwm=$(proc_status_kib "$SERVER_PID" VmHWM)
            cpu1=$(proc_cpu_ticks "$SERVER_PID")
            cpu=""; [ -n "$cpu0" ] && [ -n "$cpu1" ] && cpu=$((cpu1 - cpu0))
            jb=""; config_has_journal "$config" && jb=$(journal_bytes "$jdir")
            python3 "$HELPER" record "$fio_out" "$r" "$pos" "$config" "$label" "$w" "$rw" \
                "$rss" "$hwm" "$hwm_reset" "$jb" "$cpu" "$CLK_TCK" "$load" >>"$RECORDS" \
                || die "could not parse fio output $fio_out"
        done
        stop_server
        jfinal=""; config_has_journal "$config" && jfinal=$(journal_bytes "$jdir")
        case "$SERVER_EXIT" in
            0|143) ;;
            *) note "  WARNING: $label exited with status $SERVER_EXIT after SIGTERM"; show_server_stderr "$log" ;;
        esac
        python3 "$HELPER" server "$r" "$pos" "$config" "$label" "$idle_rss" "$startup_hwm" \
            "$SERVER_EXIT" "$jfinal" "$SERVER_READY_S" "$comm" >>"$RECORDS"
        rm -rf -- "$rdir"
    done
done
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report --
export B_FIO_VERSION B_NBDKIT_VERSION B_QEMU_VERSION B_LOADAVG_START B_LOADAVG_END \
    B_ROUNDS B_RUNTIME B_RAMP B_SIZE B_SIZE_BYTES B_FSYNC B_HWM_RESET B_STAND_IN \
    B_BASELINE B_CONFIGS B_WORKLOADS B_ORDERS B_LABELS B_WLABELS B_COMMANDS B_KANSHI
B_FIO_VERSION=$(fio --version)
B_NBDKIT_VERSION=$(nbdkit --version 2>/dev/null | head -n1 || true)
B_QEMU_VERSION=$(qemu-nbd --version 2>/dev/null | head -n1 || true)
B_LOADAVG_START=$LOADAVG_START B_LOADAVG_END=$LOADAVG_END
B_ROUNDS=$ROUNDS B_RUNTIME=$RUNTIME B_RAMP=$RAMP B_SIZE=$SIZE B_SIZE_BYTES=$SIZE_BYTES B_FSYNC=$FSYNC
B_HWM_RESET=${HWM_RESET_ANY:-0}
B_STAND_IN=0; { [ "$STAND_IN" = 1 ] || [ -n "$KANSHI_SERVE_CMD" ]; } && B_STAND_IN=1
B_KANSHI=$KANSHI
B_BASELINE=$BASELINE
B_CONFIGS=$(IFS=,; echo "${CONFIG_LIST[*]}")
B_WORKLOADS=$(IFS=,; echo "${WORKLOAD_LIST[*]}")
B_ORDERS=$(IFS=';'; echo "${ORDERS[*]}")
# tab-separated "key<TAB>value" lines
B_LABELS=$(for c in "${CONFIG_LIST[@]}"; do printf '%s\t%s\n' "$c" "$(config_label "$c")"; done)
B_COMMANDS=$(for c in "${CONFIG_LIST[@]}"; do printf '%s\t%s\n' "$c" "$(describe_cmd "$c")"; done)
B_WLABELS=$(for w in "${WORKLOAD_LIST[@]}"; do read -r _ _ _ l <<<"$(workload_spec "$w")"; printf '%s\t%s\n' "$w" "$l"; done)
python3 "$HELPER" meta >"$META"

python3 "$HELPER" report "$RECORDS" "$META" "$JSON_OUT"
