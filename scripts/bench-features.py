#!/usr/bin/env python3
"""The five published window features with numpy, as a peer for `kanshi bench features`.

Usage: bench-features.py DATASET_DIR [--rounds N]   (prints JSON)
Same windows (100 ms from each run's first access, idle windows dropped) and
the same five features: read and write throughput, variance of read and
write LBAs, mean write entropy.
"""
import json, os, sys, time
import numpy as np

W = 100_000_000

def runs(root):
    for d, _, files in sorted(os.walk(root)):
        if "ata_write.csv" in files:
            yield d

def load(d):
    def rd(name, cols):
        p = os.path.join(d, name)
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            return np.zeros((0, cols))
        return np.loadtxt(p, delimiter=",", ndmin=2)
    return rd("ata_read.csv", 4), rd("ata_write.csv", 6)

def features(r, w):
    t_r = r[:, 0].astype(np.int64) * 1_000_000_000 + r[:, 1].astype(np.int64)
    t_w = w[:, 0].astype(np.int64) * 1_000_000_000 + w[:, 1].astype(np.int64)
    start = min(t_r.min() if len(t_r) else 2**62, t_w.min() if len(t_w) else 2**62)
    end = max(t_r.max() if len(t_r) else 0, t_w.max() if len(t_w) else 0)
    n = int((end - start) // W) + 1
    wr, ww = (t_r - start) // W, (t_w - start) // W
    out = []
    for idx, lba, size in ((wr, r[:, 2], r[:, 3]), (ww, w[:, 2], w[:, 3])):
        cnt = np.bincount(idx, minlength=n)
        s = np.bincount(idx, weights=lba, minlength=n)
        s2 = np.bincount(idx, weights=lba * lba, minlength=n)
        by = np.bincount(idx, weights=size, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(cnt > 0, s / np.maximum(cnt, 1), 0)
            var = np.where(cnt > 1, s2 / np.maximum(cnt, 1) - mean * mean, 0)
        out.append((cnt, by / 0.1, var))
    ent = np.bincount(ww, weights=w[:, 4], minlength=n)
    mean_ent = np.where(out[1][0] > 0, ent / np.maximum(out[1][0], 1), 0)
    keep = (out[0][0] + out[1][0]) > 0
    return np.stack([out[0][1], out[1][1], out[0][2], out[1][2], mean_ent], axis=1)[keep]

def main():
    root = sys.argv[1]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    dirs = list(runs(root))
    a, b = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        data = [load(d) for d in dirs]
        rows = sum(len(features(r, w)) for r, w in data)
        t1 = time.perf_counter()
        rows2 = sum(len(features(r, w)) for r, w in data)
        t2 = time.perf_counter()
        assert rows == rows2
        a.append(t1 - t0); b.append(t2 - t1)
    records = sum(len(r) + len(w) for r, w in data)
    a.sort(); b.sort()
    print(json.dumps({"runs": len(dirs), "records": records, "windows": rows,
                      "parseAndFeaturesSeconds": a[len(a) // 2], "featuresSeconds": b[len(b) // 2],
                      "parseAndFeaturesRecordsPerSecond": records / a[len(a) // 2],
                      "featuresRecordsPerSecond": records / b[len(b) // 2]}))

main()
