#!/usr/bin/env python3
"""Full acquisition of a running sandbox guest's RAM, side by side in one run:

  kanshi      kanshi sandbox dump (LiME, guest paused through QMP, RAM read from
              the file under /dev/shm that backs the guest's memory)
  dump-guest  QEMU's own QMP dump-guest-memory (ELF core, paging off)
  pmemsave    QEMU's QMP pmemsave (raw physical memory)

Each round runs every method once, in turn, into TARGET (default /dev/shm, so
the host's disk is not what is measured; --target DIR for another); files are
removed after each. Medians, GB/s (RAM bytes / wall seconds) and ratios are
printed, then one JSON line. Called by scripts/bench-memory.sh, which boots
the sandbox.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kanshi", required=True)
    ap.add_argument("--ram", required=True, help="the running sandbox's shared RAM file")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--target", default="/dev/shm")
    ap.add_argument("--methods", default="kanshi dump-guest pmemsave")
    a = ap.parse_args()
    desc = json.load(open(a.ram + ".json"))
    ram_bytes = desc["ramBytes"]
    qmp_path = desc["qmp"]
    work = os.path.join(a.target, f"kanshi-bench-memory-{os.getpid()}")
    os.makedirs(work)
    times = {m: [] for m in a.methods.split()}
    sizes = {}
    try:
        for r in range(a.rounds):
            for m in times:
                out = os.path.join(work, f"{m}-{r}")
                t = time.monotonic()
                if m == "kanshi":
                    p = subprocess.run([a.kanshi, "sandbox", "dump", "--ram", a.ram, "--out", out, "--json"],
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        sys.exit(f"bench-memory: kanshi sandbox dump failed: {p.stderr}")
                elif m == "dump-guest":
                    qmp(qmp_path, "dump-guest-memory", {"paging": False, "protocol": "file:" + out})
                elif m == "pmemsave":
                    qmp(qmp_path, "pmemsave", {"val": 0, "size": ram_bytes, "filename": out})
                times[m].append(time.monotonic() - t)
                sizes[m] = os.path.getsize(out)
                os.remove(out)
            print(f"bench-memory: round {r + 1}/{a.rounds}: " +
                  ", ".join(f"{m} {times[m][-1]:.2f} s" for m in times), file=sys.stderr)
    finally:
        subprocess.run(["rm", "-rf", work])
    med = {m: statistics.median(v) for m, v in times.items()}
    gbps = {m: ram_bytes / med[m] / 1e9 for m in med}
    print(f"Full acquisition of a {ram_bytes / 2**30:.2f} GiB guest into {a.target}, median of {a.rounds} interleaved rounds "
          f"(GB/s = guest RAM bytes / wall seconds):")
    for m in med:
        ratio = f"  kanshi is {med[m] / med['kanshi']:.2f}x as fast" if "kanshi" in med and m != "kanshi" else ""
        print(f"  {m:11s} {med[m]:7.3f} s  {gbps[m]:6.2f} GB/s  file {sizes[m] / 2**20:8.1f} MiB{ratio}")
    print(f"  (quoted, not measured here: the seed system streamed pages at up to {QUOTED_SEED_MBPS} MB/s)")
    print(json.dumps({"ramBytes": ram_bytes, "target": a.target, "rounds": a.rounds,
                      "medianSeconds": med, "gbPerSecond": gbps, "fileBytes": sizes, "all": times}))


if __name__ == "__main__":
    main()
