#!/usr/bin/env python3
"""For each behaviour log of a workload: which built-in rule caught it, how long after the
workload's first write under the corpus, and how many events the rules had examined by then.

Usage: scripts/rules-delays.py KANSHI UNDER NAME=LOG [NAME=LOG ...]
  UNDER: the corpus directory as the log names it (/mnt/corpus in the sandbox)
  (kanshi dataset record writes OUT/kanshi-sandbox/kanshi-NAME/kanshi-NAME-N/behaviour.jsonl;
   scripts/bench-rules.sh records logs under kanshi trace on the host)
"""
import json
import subprocess
import sys


def first_write(log, under):
    """Time of the workload's first write-open, rename, deletion or truncation under the corpus."""
    prefix = under.rstrip("/") + "/"
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            path = e.get("path", "")
            if not path.startswith(prefix) or path.endswith("/.kanshi-corpus"):
                continue
            if e.get("ev") == "open" and e.get("ret", 0) >= 0 and (e.get("flags", "").startswith("w") or e.get("flags", "").startswith("rw")):
                return e["t"]
            if e.get("ev") in ("rename", "unlink", "truncate") and e.get("ret", 0) == 0:
                return e["t"]
    return None


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    kanshi, under = sys.argv[1], sys.argv[2]
    print(f"{'workload':16} {'rule':48} {'delay':>9} {'events':>8}")
    for arg in sys.argv[3:]:
        name, log = arg.split("=", 1)
        r = subprocess.run([kanshi, "rules", "check", "--quiet", "--log", log], capture_output=True, text=True)
        alerts = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        if not alerts:
            print(f"{name:16} {'(no alert)':48} {'-':>9} {'-':>8}")
            continue
        a = alerts[0]
        start = first_write(log, under)
        delay = (a["time"] - start) / 1e9 if start else float("nan")
        examined = max(e.get("seq", 0) for e in a["evidence"])
        print(f"{name:16} {a['rule']:48} {delay:8.3f}s {examined:8d}")


if __name__ == "__main__":
    main()
