import Foundation

/// What the accesses of one window add up to.
struct WindowAccumulator {
    var reads = Moments(), writes = Moments()
    var entropySum = 0.0, highBytes = 0.0, overwrites = 0.0, rewrites = 0.0, newBlocks = 0.0, sequential = 0.0
    var lbaSum = 0.0, lbaSquares = 0.0
    var minLBA = UInt64.max, maxLBA: UInt64 = 0
}

/// Turns each window's accumulator into its row, in time order: the part of
/// the features that looks back over earlier windows (moving means, context
/// averages) lives here, shared by `WindowFeatures.compute` and `FeatureStream`.
struct RowBuilder {
    let level: WindowFeatures.Level
    let secs: Double
    private var rolling = [Double](repeating: 0, count: 5)
    private var history: [[Double]] = []
    private var short: Averages, long: Averages
    private var previous: Int?

    init(level: WindowFeatures.Level, windowNs: UInt64) {
        self.level = level
        secs = Double(windowNs) / 1e9
        short = Averages(windowSeconds: secs, horizon: WindowFeatures.shortHorizon)
        long = Averages(windowSeconds: secs, horizon: WindowFeatures.longHorizon)
    }

    /// Appends the row of window number `window` (windows count from the first access).
    mutating func append(_ a: WindowAccumulator, window: Int, to values: inout [Float]) {
        let rBytes = a.reads.bytes, wBytes = a.writes.bytes, wN = a.writes.n
        let rbps = rBytes / secs, wbps = wBytes / secs
        let ent = wN > 0 ? a.entropySum / wN : 0
        values += [Float(rbps), Float(wbps), Float(a.reads.variance), Float(a.writes.variance), Float(ent)]
        guard level >= .extended else { return }
        let high = wBytes > 0 ? a.highBytes / wBytes : 0
        let ratio = wBytes / (rBytes + 4096)
        let oar = wN > 0 ? a.overwrites / wN : 0
        let seq = wN > 0 ? a.sequential / wN : 0
        let spread = wN > 0 ? Double(a.maxLBA - a.minLBA) : 0
        // Moving means over the last 10 windows of time (idle windows count as zeros).
        history.append([rbps, wbps, ent, high, oar, Double(window)])
        while let first = history.first, Double(window) - first[5] >= 10 { history.removeFirst() }
        for k in 0..<5 { rolling[k] = history.reduce(0) { $0 + $1[k] } / 10 }
        values += [Float(high), Float(ratio), Float(oar), Float(seq), Float(spread)]
        for k in 0..<5 { values.append(Float(rolling[k])) }
        guard level == .context else { return }
        let gap = previous.map { window - $0 } ?? 0
        previous = window
        let x = Quantities(readBytes: rBytes, writeBytes: wBytes, writes: wN, reads: a.reads.n, highBytes: a.highBytes,
                           entropySum: a.entropySum, overwrites: a.overwrites, rewrites: a.rewrites, newBlocks: a.newBlocks,
                           sequential: a.sequential, lbaSum: a.lbaSum, lbaSquares: a.lbaSquares)
        short.add(x, gap: gap)
        long.add(x, gap: gap)
        let s = short.mean, l = long.mean
        let share = WindowFeatures.share
        let row: [Double] = [
            s.readBytes / secs, s.writeBytes / secs, l.readBytes / secs, l.writeBytes / secs,
            share(s.writeBytes, s.readBytes + s.writeBytes), share(l.writeBytes, l.readBytes + l.writeBytes),
            short.active, long.active,
            share(s.overwrites, s.writes), share(l.overwrites, l.writes),
            share(l.rewrites, l.reads), l.rewrites / secs,
            share(s.newBlocks, s.writes), share(l.newBlocks, l.writes),
            share(s.sequential, s.writes), l.lbaVariance,
            share(s.highBytes, s.writeBytes), share(l.highBytes, l.writeBytes), share(l.entropySum, l.writes),
        ]
        for v in row { values.append(Float(v)) }
    }
}

/// What one window adds to the context averages.
struct Quantities {
    var readBytes = 0.0, writeBytes = 0.0, writes = 0.0, reads = 0.0, highBytes = 0.0, entropySum = 0.0
    var overwrites = 0.0, rewrites = 0.0, newBlocks = 0.0, sequential = 0.0, lbaSum = 0.0, lbaSquares = 0.0

    mutating func decay(_ f: Double, add x: Quantities, weight a: Double) {
        readBytes = readBytes * f + a * x.readBytes
        writeBytes = writeBytes * f + a * x.writeBytes
        writes = writes * f + a * x.writes
        reads = reads * f + a * x.reads
        highBytes = highBytes * f + a * x.highBytes
        entropySum = entropySum * f + a * x.entropySum
        overwrites = overwrites * f + a * x.overwrites
        rewrites = rewrites * f + a * x.rewrites
        newBlocks = newBlocks * f + a * x.newBlocks
        sequential = sequential * f + a * x.sequential
        lbaSum = lbaSum * f + a * x.lbaSum
        lbaSquares = lbaSquares * f + a * x.lbaSquares
    }

    /// Variance of the written LBAs these sums describe.
    var lbaVariance: Double {
        guard writes > 1e-12 else { return 0 }
        let m = lbaSum / writes
        return max(lbaSquares / writes - m * m, 0)
    }
}

/// Exponential moving averages over time of per-window quantities: each
/// window of time multiplies the past by `1 - alpha` (idle windows too) and
/// adds `alpha` times its own value, `alpha = 1 - exp(-window / horizon)`.
///
/// The averages are divided by the weight of the time seen so far (`1 -
/// (1 - alpha)^n` after n windows), so a recording's first seconds get the
/// mean of what there is rather than a ramp up from zero: the values say
/// nothing about how long ago the recording began.
struct Averages {
    let keep: Double
    let alpha: Double
    private var sums = Quantities()
    private var activeSum = 0.0
    /// The weight of the windows seen so far, idle ones included.
    private var seen = 0.0

    init(windowSeconds: Double, horizon: Double) {
        keep = exp(-windowSeconds / horizon)
        alpha = 1 - keep
    }

    /// The window `gap` windows after the previous one (the first window: any gap, nothing to decay).
    mutating func add(_ x: Quantities, gap: Int) {
        let f = gap <= 1 ? keep : pow(keep, Double(gap))
        sums.decay(f, add: x, weight: alpha)
        activeSum = activeSum * f + alpha
        seen = seen == 0 ? alpha : 1 - (1 - seen) * f
    }

    /// The averages (ratios of two of them need no correction: it cancels).
    var mean: Quantities {
        var m = Quantities()
        m.decay(0, add: sums, weight: 1 / seen)
        return m
    }

    /// Fraction of the windows of time with any I/O.
    var active: Double { activeSum / seen }
}

/// Count, bytes, and running mean and variance of LBAs (Welford) of one window's accesses.
struct Moments {
    var n = 0.0
    var bytes = 0.0
    private var mean = 0.0
    private var m2 = 0.0

    mutating func add(_ a: Access) {
        n += 1
        bytes += Double(a.size)
        let x = Double(a.lba), d = x - mean
        mean += d / n
        m2 += d * (x - mean)
    }

    /// Population variance of the LBAs (0 below two accesses).
    var variance: Double { n > 1 ? m2 / n : 0 }
}
