"""The detectors' window features of one recording, from its rows of the fleet's `blocks` table.

A port of KanshiAnalysis (BlockTrace.swift, FeatureStream.swift, WindowRows.swift, Features.swift):
`compute(records, window_ns, names)` gives the rows `WindowFeatures.compute(BlockTrace.fromJournal(J),
windowNs:, names:)` gives on the recording's journal J, value for value after rounding to float32.
Every step follows the Swift code's arithmetic in the same order (IEEE doubles, the same libm `exp`
and `pow`), so that the rounded values are bit for bit the same; keep the two in step.

Pure Python (only the standard library): the Spark job (fleet_job.py) runs it once per recording
on the executors. Run as a program it reads one recording as JSON on standard input
({"windowNs": N, "names": [...], "records": [{"op", "timeNs", "lba", "length", "entropies"}, ...]})
and prints its rows as JSON ({"names", "windowStart", "writtenBytes", "values"}): how the tests
hold it against the Swift library.
"""
import json
import math
import struct
import sys
from array import array

PUBLISHED = ["read_bps", "write_bps", "read_lba_var", "write_lba_var", "write_entropy_mean"]
EXTENDED = PUBLISHED + [
    "high_entropy_frac", "write_read_ratio", "overwrite_after_read", "write_sequential_frac", "write_lba_spread",
    "read_bps_1s", "write_bps_1s", "write_entropy_1s", "high_entropy_frac_1s", "overwrite_after_read_1s",
]
CONTEXT = [
    "read_bps_5s", "write_bps_5s", "read_bps_30s", "write_bps_30s", "write_share_5s", "write_share_30s",
    "io_active_5s", "io_active_30s", "overwrite_after_read_5s", "overwrite_after_read_30s",
    "rewrite_of_read_30s", "rewrite_of_read_rate_30s", "new_block_frac_5s", "new_block_frac_30s",
    "write_sequential_frac_5s", "write_lba_var_30s",
    "high_entropy_frac_5s", "high_entropy_frac_30s", "write_entropy_30s",
]
ALL = EXTENDED + CONTEXT
SETS = {
    "published": PUBLISHED,
    "extended": EXTENDED,
    "structural": [n for n in EXTENDED if "entropy" not in n],
    "context": ALL,
}

# Levels (WindowFeatures.Level): how much must be computed for a set of names.
PUBLISHED_LEVEL, EXTENDED_LEVEL, CONTEXT_LEVEL = 0, 1, 2
LEVEL_NAMES = {PUBLISHED_LEVEL: PUBLISHED, EXTENDED_LEVEL: EXTENDED, CONTEXT_LEVEL: ALL}

SHORT_HORIZON, LONG_HORIZON = 5.0, 30.0  # s, WindowFeatures.shortHorizon / longHorizon
OVERWRITE_LOOKBACK_NS = 10_000_000_000  # WindowFeatures.overwriteLookbackNs
REWRITE_LOOKBACK_NS = 30_000_000_000  # WindowFeatures.rewriteLookbackNs
MOVING_WINDOWS = 10  # the moving means' span, windows (RowBuilder)
PIECE = 4096  # bytes per access: one per 4 KiB piece of a request (BlockTrace.forEachAccess)
SECTOR = 512
BLOCK_SHIFT = 3  # a 4 KiB block is 8 sectors
U64_MAX = (1 << 64) - 1
U32 = (1 << 32) - 1
NEARLY_NOTHING = 1e-12  # WindowFeatures.share, Quantities.lbaVariance
# Access.entropy is a Float: `entropy > 0.9` compares with 0.9 rounded to float32.
HIGH_ENTROPY = struct.unpack("<f", struct.pack("<f", 0.9))[0]


def swift_min(x, y):
    """Swift's min: y when y < x, else x."""
    return y if y < x else x


def swift_max(x, y):
    """Swift's max: y when y >= x, else x."""
    return y if y >= x else x


def unknown(names):
    known = set(ALL)
    return [n for n in names if n not in known]


def level_of(names):
    if all(n in PUBLISHED for n in names):
        return PUBLISHED_LEVEL
    if all(n in EXTENDED for n in names):
        return EXTENDED_LEVEL
    return CONTEXT_LEVEL


def share(a, b):
    """a / b, at most 1; 0 when b is (nearly) nothing (WindowFeatures.share)."""
    return swift_min(a / b, 1.0) if b > NEARLY_NOTHING else 0.0


class Moments:
    """Count, bytes, and Welford mean and variance of the LBAs of one window's accesses."""
    __slots__ = ("n", "bytes", "mean", "m2")

    def __init__(self):
        self.n = 0.0
        self.bytes = 0.0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, lba, size):
        self.n += 1
        self.bytes += float(size)
        x = float(lba)
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    def variance(self):
        return self.m2 / self.n if self.n > 1 else 0.0


class Accumulator:
    """What the accesses of one window add up to (WindowAccumulator)."""
    __slots__ = ("reads", "writes", "entropy_sum", "high_bytes", "overwrites", "rewrites", "new_blocks",
                 "sequential", "lba_sum", "lba_squares", "min_lba", "max_lba")

    def __init__(self):
        self.reads = Moments()
        self.writes = Moments()
        self.entropy_sum = 0.0
        self.high_bytes = 0.0
        self.overwrites = 0.0
        self.rewrites = 0.0
        self.new_blocks = 0.0
        self.sequential = 0.0
        self.lba_sum = 0.0
        self.lba_squares = 0.0
        self.min_lba = U64_MAX
        self.max_lba = 0


# The per-window quantities of the context averages, in Quantities' order.
QUANTITIES = ("read_bytes", "write_bytes", "writes", "reads", "high_bytes", "entropy_sum",
              "overwrites", "rewrites", "new_blocks", "sequential", "lba_sum", "lba_squares")
Q = {name: i for i, name in enumerate(QUANTITIES)}


def lba_variance(q):
    """Variance of the written LBAs these sums describe (Quantities.lbaVariance)."""
    writes = q[Q["writes"]]
    if not writes > NEARLY_NOTHING:
        return 0.0
    m = q[Q["lba_sum"]] / writes
    return swift_max(q[Q["lba_squares"]] / writes - m * m, 0.0)


class Averages:
    """Exponential moving averages over time, idle windows counting as zeros, divided by the weight
    of the time seen so far (Averages in WindowRows.swift)."""
    __slots__ = ("keep", "alpha", "sums", "active_sum", "seen")

    def __init__(self, window_seconds, horizon):
        self.keep = math.exp(-window_seconds / horizon)
        self.alpha = 1 - self.keep
        self.sums = [0.0] * len(QUANTITIES)
        self.active_sum = 0.0
        self.seen = 0.0

    def add(self, x, gap):
        f = self.keep if gap <= 1 else math.pow(self.keep, float(gap))
        a = self.alpha
        s = self.sums
        for i in range(len(s)):
            s[i] = s[i] * f + a * x[i]
        self.active_sum = self.active_sum * f + a
        self.seen = a if self.seen == 0 else 1 - (1 - self.seen) * f

    def mean(self):
        w = 1 / self.seen
        return [0.0 * 0.0 + w * v for v in self.sums]

    def active(self):
        return self.active_sum / self.seen


class RowBuilder:
    """Turns each window's accumulator into its row, in time order (RowBuilder in WindowRows.swift)."""

    def __init__(self, level, window_ns):
        self.level = level
        self.secs = float(window_ns) / 1e9
        self.history = []
        self.short = Averages(self.secs, SHORT_HORIZON)
        self.long = Averages(self.secs, LONG_HORIZON)
        self.previous = None

    def row(self, a, window):
        """The row (doubles, before rounding) of window number `window`."""
        secs = self.secs
        r_bytes, w_bytes, w_n = a.reads.bytes, a.writes.bytes, a.writes.n
        rbps, wbps = r_bytes / secs, w_bytes / secs
        ent = a.entropy_sum / w_n if w_n > 0 else 0.0
        out = [rbps, wbps, a.reads.variance(), a.writes.variance(), ent]
        if self.level < EXTENDED_LEVEL:
            return out
        high = a.high_bytes / w_bytes if w_bytes > 0 else 0.0
        ratio = w_bytes / (r_bytes + 4096)
        oar = a.overwrites / w_n if w_n > 0 else 0.0
        seq = a.sequential / w_n if w_n > 0 else 0.0
        spread = float(a.max_lba - a.min_lba) if w_n > 0 else 0.0
        # Moving means over the last 10 windows of time (idle windows count as zeros).
        w = float(window)
        self.history.append((rbps, wbps, ent, high, oar, w))
        while self.history and w - self.history[0][5] >= MOVING_WINDOWS:
            self.history.pop(0)
        rolling = []
        for k in range(5):
            s = 0.0
            for h in self.history:
                s = s + h[k]
            rolling.append(s / MOVING_WINDOWS)
        out += [high, ratio, oar, seq, spread]
        out += rolling
        if self.level < CONTEXT_LEVEL:
            return out
        gap = window - self.previous if self.previous is not None else 0
        self.previous = window
        x = [r_bytes, w_bytes, w_n, a.reads.n, a.high_bytes, a.entropy_sum, a.overwrites, a.rewrites,
             a.new_blocks, a.sequential, a.lba_sum, a.lba_squares]
        self.short.add(x, gap)
        self.long.add(x, gap)
        s, l = self.short.mean(), self.long.mean()
        rb, wb, wn, rn = Q["read_bytes"], Q["write_bytes"], Q["writes"], Q["reads"]
        out += [
            s[rb] / secs, s[wb] / secs, l[rb] / secs, l[wb] / secs,
            share(s[wb], s[rb] + s[wb]), share(l[wb], l[rb] + l[wb]),
            self.short.active(), self.long.active(),
            share(s[Q["overwrites"]], s[wn]), share(l[Q["overwrites"]], l[wn]),
            share(l[Q["rewrites"]], l[rn]), l[Q["rewrites"]] / secs,
            share(s[Q["new_blocks"]], s[wn]), share(l[Q["new_blocks"]], l[wn]),
            share(s[Q["sequential"]], s[wn]), lba_variance(l),
            share(s[Q["high_bytes"]], s[wb]), share(l[Q["high_bytes"]], l[wb]), share(l[Q["entropy_sum"]], l[wn]),
        ]
        return out


class Stream:
    """Window features computed as accesses arrive (FeatureStream): each access in its window,
    one that arrives late (its window already closed) in the open window."""

    def __init__(self, window_ns, level):
        self.window_ns = window_ns
        self.level = level
        self.origin = None
        self.open = None
        self.acc = Accumulator()
        self.rows = RowBuilder(level, window_ns)
        self.last_read = {}
        self.written = set()
        self.prev_end = U64_MAX
        self.window_start = []
        self.written_bytes = []
        self.values = []  # rows of doubles

    def enter(self, t):
        if self.origin is None:
            self.origin = t
        start = self.origin
        w = (t - start) // self.window_ns if t >= start else 0
        if self.open is not None:
            if not w > self.open:
                return
            self.close()
        self.open = w

    def close(self):
        self.values.append(self.rows.row(self.acc, self.open))
        self.window_start.append(self.origin + self.open * self.window_ns)
        self.written_bytes.append(int(self.acc.writes.bytes))
        self.acc = Accumulator()
        self.open = None

    def add_read(self, t, lba, size):
        self.enter(t)
        self.acc.reads.add(lba, size)
        if self.level >= EXTENDED_LEVEL:
            self.last_read[lba >> BLOCK_SHIFT] = t

    def add_write(self, t, lba, size, entropy):
        self.enter(t)
        acc = self.acc
        acc.writes.add(lba, size)
        acc.entropy_sum += entropy
        if self.level < EXTENDED_LEVEL:
            return
        if entropy > HIGH_ENTROPY:
            acc.high_bytes += float(size)
        block = lba >> BLOCK_SHIFT
        read_at = self.last_read.get(block)
        if read_at is not None and t >= read_at:
            age = t - read_at
            if age <= OVERWRITE_LOOKBACK_NS:
                acc.overwrites += 1
            if age <= REWRITE_LOOKBACK_NS:
                acc.rewrites += 1
        if lba == self.prev_end:
            acc.sequential += 1
        self.prev_end = lba + (size + 511) // SECTOR
        acc.min_lba = swift_min(acc.min_lba, lba)
        acc.max_lba = swift_max(acc.max_lba, lba)
        if self.level < CONTEXT_LEVEL:
            return
        if block not in self.written:
            self.written.add(block)
            acc.new_blocks += 1
        x = float(lba)
        acc.lba_sum += x
        acc.lba_squares += x * x

    def finish(self):
        """The closed windows' rows, then the open window's."""
        if self.open is not None:
            self.close()


class Trace:
    """The reads and writes of one recording as BlockTrace.fromJournal holds them: one access per
    4 KiB piece of each request (BlockTrace.forEachAccess: the piece's first sector, its size, its
    stored entropy or 0), each list in record (journal) order. Kept in typed arrays: 20 to 24 bytes
    an access."""

    def __init__(self):
        self.read_time, self.read_lba, self.read_size = array("Q"), array("Q"), array("I")
        self.write_time, self.write_lba, self.write_size, self.write_entropy = array("Q"), array("Q"), array("I"), array("f")

    def add(self, op, t, lba, length, entropies):
        """Adds one block record (others than reads and writes stand for no access)."""
        if op == "read":
            times, lbas, sizes, ents = self.read_time, self.read_lba, self.read_size, None
        elif op == "write":
            times, lbas, sizes, ents = self.write_time, self.write_lba, self.write_size, self.write_entropy
        else:
            return
        n_entropies = len(entropies) if entropies is not None else 0
        off = 0
        piece = 0
        while off < length:
            n = swift_min(PIECE, length - off)
            times.append(t)
            lbas.append(lba + off // SECTOR)
            sizes.append(n)
            if ents is not None:
                ents.append(entropies[piece] if piece < n_entropies else 0.0)
            off += n
            piece += 1

    def features(self, window_ns, names):
        """The named features per window: (window_start, written_bytes, rows), rows being lists of
        float32 values (as Python floats) in the order of `names`, one per window with any I/O."""
        if window_ns <= 0:
            raise ValueError("the window must be at least 1 ns")
        bad = unknown(names)
        if bad:
            raise ValueError("unknown features: %s" % ", ".join(bad))
        level = level_of(names)
        stream = Stream(window_ns, level)
        rt, rl, rs = self.read_time, self.read_lba, self.read_size
        # WindowFeatures.computeAll: the writes in order, each after the reads not later than it.
        ri = 0
        n_reads = len(rt)
        for t, lba, size, entropy in zip(self.write_time, self.write_lba, self.write_size, self.write_entropy):
            while ri < n_reads and rt[ri] <= t:
                stream.add_read(rt[ri], rl[ri], rs[ri])
                ri += 1
            stream.add_write(t, lba, size, entropy)
        while ri < n_reads:
            stream.add_read(rt[ri], rl[ri], rs[ri])
            ri += 1
        stream.finish()
        index = {n: i for i, n in enumerate(LEVEL_NAMES[level])}
        keep = [index[n] for n in names]
        # Float(x) in Swift: the double rounded to the nearest float32 (C's conversion, as array('f') does).
        rows = [array("f", [row[i] for i in keep]).tolist() for row in stream.values]
        return stream.window_start, stream.written_bytes, rows


def compute(records, window_ns, names):
    """The named features per window of one recording (Trace.features).

    records: (op, time_ns, lba, length, entropies) in journal order (the blocks table's rows
    ordered by seq; time_ns, lba and length as unsigned integers; entropies the float32 values).
    """
    trace = Trace()
    for op, t, lba, length, entropies in records:
        trace.add(op, t, lba, length, entropies)
    return trace.features(window_ns, names)


def unsigned(row):
    """(op, time_ns, lba, length, entropies) of a `blocks` row: the fleet format keeps 64- and
    32-bit values as signed bit patterns; they are unsigned again here."""
    return row["op"], row["time_ns"] & U64_MAX, row["lba"] & U64_MAX, row["length"] & U32, row["entropies"]


def partition_tables(rows, window_ns, names):
    """Per recording among `rows` (`blocks` rows of reads and writes, grouped by host and
    recording and ordered by seq within each, as the Spark job hands them over): (host, recording,
    window starts, written bytes, values), the first two as bytes of array("Q"), the values as
    bytes of array("f"), row-major."""
    key, trace = None, None
    for row in rows:
        k = (row["host"], row["recording"])
        if k != key:
            if trace is not None:
                yield packed(key, trace.features(window_ns, names))
            key, trace = k, Trace()
        trace.add(*unsigned(row))
    if trace is not None:
        yield packed(key, trace.features(window_ns, names))


def packed(key, table):
    """One recording's table as partition_tables hands it to the driver: compact bytes."""
    starts, written, rows = table
    values = array("f")
    for r in rows:
        values.extend(r)
    return key[0], key[1], array("Q", starts).tobytes(), array("Q", written).tobytes(), values.tobytes()


def main():
    job = json.load(sys.stdin)
    names = job["names"]
    records = [(r["op"], r["timeNs"], r["lba"], r["length"], r.get("entropies") or []) for r in job["records"]]
    starts, written, rows = compute(records, job["windowNs"], names)
    json.dump({"names": names, "windowStart": starts, "writtenBytes": written, "values": rows}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
