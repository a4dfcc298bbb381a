#!/usr/bin/env python3
"""The memory sensor's speed, side by side in one run (scripts/bench-memory.sh builds
what it needs and calls this).

Full acquisition: a sandbox guest of --memory MiB fills 3/4 of its RAM, then
  kanshi      kanshi sandbox dump (LiME; guest paused through QMP; RAM read from
              the /dev/shm file that backs the guest's memory)
  dump-guest  QEMU's own QMP dump-guest-memory (ELF core, paging off)
  pmemsave    QEMU's QMP pmemsave (raw physical memory)
  cp          coreutils cp of the RAM file itself (no pause, no format): what copying
              that many bytes into TARGET costs on this host, a ceiling for any dump
each copy the guest's RAM into TARGET (default /dev/shm: the host's disk is not
what is measured), in interleaved rounds; files are removed after each.

Page capture: a guest program (bench-memory/churn.c) rewrites --churn-mibps MiB/s
of a --churn-buffer MiB buffer and counts a fixed computation's rate, in
sandboxes run plain and with --memory-watch churn (--interval ms), alternating;
the guest's slowdown is 1 - watched rate / plain rate (medians).

Medians, GB/s (RAM bytes / wall seconds) and ratios are printed, then one JSON line.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

QUOTED_SEED_MBPS = 190.7  # quoted from the seed paper, not measured here


def qmp(path, command, arguments=None, timeout=600):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()  # greeting

    def send(cmd, args=None):
        msg = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        f.write((json.dumps(msg) + "\n").encode())
        f.flush()
        while True:
            reply = json.loads(f.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {cmd}: {reply['error']}")

    send("qmp_capabilities")
    try:
        return send(command, arguments)
    finally:
        s.close()


def fresh_disk(work, name):
    path = os.path.join(work, name)
    subprocess.run(["rm", "-rf", path, path + ".journal"], check=True)
    subprocess.run(["truncate", "-s", "64M", path], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", path], check=True)
    return path


def result_json(stdout):
    lines = stdout.split("\n")
    starts = [i for i, l in enumerate(lines) if l == "{"]
    return json.loads("\n".join(lines[starts[-1]:])) if starts else {}


def full_dump(a, work):
    disk = fresh_disk(work, "dump.img")
    out = open(os.path.join(work, "run.out"), "w+")
    sandbox = subprocess.Popen([a.kanshi, "sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", a.guest,
                                "--memory", str(a.memory), "--timeout", "3600", "--add", a.fill, "--",
                                f"fill {a.memory * 3 // 4}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        ram = None
        for _ in range(1200):
            text = open(out.name).read()
            if ram is None and "the guest's RAM is shared at " in text:
                ram = text.split("the guest's RAM is shared at ")[1].split()[0]
            if "FILLED" in text:
                break
            if sandbox.poll() is not None:
                sys.exit(f"bench-memory: the sandbox ended early:\n{text[-3000:]}")
            time.sleep(0.5)
        else:
            sys.exit("bench-memory: the guest did not fill its RAM")
        desc = json.load(open(ram + ".json"))
        ram_bytes, qmp_path = desc["ramBytes"], desc["qmp"]
        target = os.path.join(a.target, f"kanshi-bench-memory-{os.getpid()}")
        os.makedirs(target)
        times = {m: [] for m in a.methods.split()}
        sizes = {}
        try:
            for r in range(a.rounds):
                for m in times:
                    path = os.path.join(target, f"{m}-{r}")
                    if a.compact:
                        # Before each method alike, untimed: free huge pages gathered (a target on a
                        # tmpfs mounted huge=always otherwise waits for compaction at random).
                        with open("/proc/sys/vm/compact_memory", "w") as c:
                            c.write("1")
                    t = time.monotonic()
                    if m == "kanshi":
                        p = subprocess.run([a.kanshi, "sandbox", "dump", "--ram", ram, "--out", path, "--json"],
                                           capture_output=True, text=True)
                        if p.returncode != 0:
                            sys.exit(f"bench-memory: kanshi sandbox dump failed: {p.stderr}")
                    elif m == "dump-guest":
                        qmp(qmp_path, "dump-guest-memory", {"paging": False, "protocol": "file:" + path})
                    elif m == "pmemsave":
                        qmp(qmp_path, "pmemsave", {"val": 0, "size": ram_bytes, "filename": path})
                    elif m == "cp":
                        subprocess.run(["cp", ram, path], check=True)
                    times[m].append(time.monotonic() - t)
                    sizes[m] = os.path.getsize(path)
                    os.remove(path)
                print(f"bench-memory: dump round {r + 1}/{a.rounds}: " +
                      ", ".join(f"{m} {times[m][-1]:.2f} s" for m in times), file=sys.stderr)
        finally:
            subprocess.run(["rm", "-rf", target])
    finally:
        sandbox.send_signal(2)
        sandbox.wait()
    med = {m: statistics.median(v) for m, v in times.items()}
    gbps = {m: ram_bytes / med[m] / 1e9 for m in med}
    print(f"Full acquisition of a {ram_bytes / 2**30:.2f} GiB guest into {a.target}, median of {a.rounds} interleaved rounds "
          f"(GB/s = guest RAM bytes / wall seconds, the command's own start-up included):")
    for m in med:
        ratio = (f"  kanshi takes {med['kanshi'] / med[m]:.2f}x its time" if m == "cp" else
                 f"  kanshi is {med[m] / med['kanshi']:.2f}x as fast") if "kanshi" in med and m != "kanshi" else ""
        print(f"  {m:11s} {med[m]:7.3f} s  {gbps[m]:6.2f} GB/s  file {sizes[m] / 2**20:8.1f} MiB{ratio}")
    print(f"  (quoted, not measured here: the seed system streamed pages at up to {QUOTED_SEED_MBPS} MB/s)")
    return {"ramBytes": ram_bytes, "target": a.target, "medianSeconds": med, "gbPerSecond": gbps, "fileBytes": sizes, "all": times}


def page_capture(a, work):
    runs = {"plain": [], "watched": []}
    watch_stats = []
    for r in range(a.rounds):
        for variant in runs:
            disk = fresh_disk(work, f"churn-{variant}.img")
            args = [a.kanshi, "sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", a.guest, "--memory", "512",
                    "--timeout", "600", "--add", a.churn, "--json"]
            if variant == "watched":
                args += ["--memory-watch", "churn", "--memory-interval", str(a.interval)]
            p = subprocess.run(args + ["--", f"churn {a.churn_seconds} {a.churn_mibps} {a.churn_buffer}"],
                               capture_output=True, text=True)
            line = next((l for l in p.stdout.split("\n") if l.startswith("CHURN ")), None)
            if p.returncode != 0 or line is None:
                sys.exit(f"bench-memory: the {variant} churn run failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-1000:]}")
            runs[variant].append(float(line.split()[1]))
            if variant == "watched":
                watch_stats.append(result_json(p.stdout).get("memoryWatch", {}))
        print(f"bench-memory: capture round {r + 1}/{a.rounds}: plain {runs['plain'][-1]:.0f}/s, "
              f"watched {runs['watched'][-1]:.0f}/s", file=sys.stderr)
    plain, watched = statistics.median(runs["plain"]), statistics.median(runs["watched"])
    slowdown = 1 - watched / plain
    stored = statistics.median([w.get("bytesStored", 0) / a.churn_seconds for w in watch_stats])
    scan_ms = statistics.median([w.get("scanSecondsMean", 0) * 1e3 for w in watch_stats])
    seen = statistics.median([w.get("pagesSeen", 0) / max(1, w.get("scans", 1)) for w in watch_stats])
    scan_gbps = seen * 4096 / (scan_ms / 1e3) / 1e9 if scan_ms > 0 else 0
    print(f"Page capture of a guest process rewriting {a.churn_mibps} MiB/s of a {a.churn_buffer} MiB buffer, watched every "
          f"{a.interval} ms, median of {a.rounds} alternating rounds of {a.churn_seconds} s:")
    print(f"  guest computation  plain {plain:.0f}/s, watched {watched:.0f}/s: slowdown {slowdown * 100:.1f} %")
    print(f"  pages stored       {stored / 1e6:.1f} MB/s of changed pages into the journal")
    print(f"  one scan           {scan_ms:.1f} ms for {seen:.0f} resident pages ({scan_gbps:.2f} GB/s read and hashed)")
    return {"plainRate": plain, "watchedRate": watched, "slowdown": slowdown, "storedBytesPerSecond": stored,
            "scanMs": scan_ms, "pagesPerScan": seen, "scanGBps": scan_gbps, "rates": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kanshi", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--fill", required=True)
    ap.add_argument("--churn", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", type=int, default=1024)
    ap.add_argument("--target", default="/dev/shm")
    ap.add_argument("--methods", default="kanshi dump-guest pmemsave cp")
    ap.add_argument("--phases", default="dump capture")
    ap.add_argument("--compact", action="store_true")
    ap.add_argument("--interval", type=int, default=1000)
    ap.add_argument("--churn-mibps", type=float, default=16)
    ap.add_argument("--churn-buffer", type=int, default=64)
    ap.add_argument("--churn-seconds", type=int, default=20)
    a = ap.parse_args()
    work = os.environ.get("BENCH_WORK") or "/tmp"
    out = {}
    if "dump" in a.phases:
        out["fullDump"] = full_dump(a, work)
    if "capture" in a.phases:
        out["pageCapture"] = page_capture(a, work)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
