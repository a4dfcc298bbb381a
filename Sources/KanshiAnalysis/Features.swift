/// Which features to compute per window.
public enum FeatureSet: String, Sendable, Codable, CaseIterable {
    /// The five of the published method.
    case published
    /// The published five plus ours (see `WindowFeatures.names`).
    case extended
    /// `extended` without any entropy feature: what is left when full-disk
    /// encryption makes every write look random.
    case structural
}

/// Per-window features of a trace, row-major.
public struct FeatureTable: Sendable {
    public var names: [String]
    /// rows × names.count values.
    public var values: [Float]
    /// Start of each row's window, ns since the epoch.
    public var windowStart: [UInt64]
    /// Bytes written during each row's window.
    public var writtenBytes: [UInt64]

    public var rows: Int { windowStart.count }
    public var columns: Int { names.count }

    public func row(_ i: Int) -> ArraySlice<Float> { values[(i * columns)..<((i + 1) * columns)] }
}

/// Cuts a trace into fixed windows and computes features for each window
/// that has any I/O.
///
/// Published features (Hirano & Kobayashi 2019): read and write throughput
/// (bytes/s), variance of read LBAs and of write LBAs, mean write entropy.
/// Extended, ours: fraction of written bytes with entropy > 0.9; write/read
/// byte ratio; fraction of written blocks read in the previous 10 s
/// (overwrite after read); sequentiality of writes; the write LBA spread; and
/// 1-second (10-window) moving means of throughput, entropy, high-entropy
/// fraction and overwrite-after-read, so bursts are seen over a longer horizon.
public enum WindowFeatures {
    public static let publishedNames = ["read_bps", "write_bps", "read_lba_var", "write_lba_var", "write_entropy_mean"]
    public static let extendedNames = publishedNames + [
        "high_entropy_frac", "write_read_ratio", "overwrite_after_read", "write_sequential_frac", "write_lba_spread",
        "read_bps_1s", "write_bps_1s", "write_entropy_1s", "high_entropy_frac_1s", "overwrite_after_read_1s",
    ]

    public static let structuralNames = extendedNames.filter { !$0.contains("entropy") }

    public static func names(_ set: FeatureSet) -> [String] {
        switch set {
        case .published: publishedNames
        case .extended: extendedNames
        case .structural: structuralNames
        }
    }

    public static func compute(_ trace: BlockTrace, windowNs: UInt64 = 100_000_000, set: FeatureSet = .extended) -> FeatureTable {
        if set == .structural {
            // The extended table with the entropy columns left out.
            var t = compute(trace, windowNs: windowNs, set: .extended)
            let keep = t.names.indices.filter { !t.names[$0].contains("entropy") }
            let cols = t.columns
            var values: [Float] = []
            values.reserveCapacity(t.rows * keep.count)
            for r in 0..<t.rows { for c in keep { values.append(t.values[r * cols + c]) } }
            t.values = values
            t.names = keep.map { t.names[$0] }
            return t
        }
        let names = names(set)
        var table = FeatureTable(names: names, values: [], windowStart: [], writtenBytes: [])
        guard let span = trace.span, windowNs > 0 else { return table }
        let secs = Double(windowNs) / 1e9
        // Only windows with I/O get a slot, so a recording with a gap of days
        // (or a bogus timestamp) costs nothing for the empty time between.
        let windowOf = { (a: Access) in Int((a.timeNs - span.start) / windowNs) }
        var occupied: [Int] = []
        occupied.reserveCapacity(1024)
        var ri0 = 0, wi0 = 0
        while ri0 < trace.reads.count || wi0 < trace.writes.count {
            let w: Int
            if wi0 >= trace.writes.count || (ri0 < trace.reads.count && trace.reads[ri0].timeNs <= trace.writes[wi0].timeNs) {
                w = windowOf(trace.reads[ri0]); ri0 += 1
            } else {
                w = windowOf(trace.writes[wi0]); wi0 += 1
            }
            if occupied.last != w { occupied.append(w) }
        }
        let count = occupied.count

        // Per-window accumulators.
        var r = [Moments](repeating: Moments(), count: count), wr = [Moments](repeating: Moments(), count: count)
        var entSum = [Double](repeating: 0, count: count), highBytes = [Double](repeating: 0, count: count)
        var oarN = [Double](repeating: 0, count: count), seqN = [Double](repeating: 0, count: count)
        var wMin = [UInt64](repeating: .max, count: count), wMax = [UInt64](repeating: 0, count: count)
        let extended = set == .extended

        var slot = 0
        for a in trace.reads {
            let w = windowOf(a)
            while occupied[slot] < w { slot += 1 }
            r[slot].add(a)
        }
        slot = 0
        // Overwrite after read: merge the two time-sorted streams.
        var lastRead: [UInt64: UInt64] = [:]
        var ri = 0
        var prevEnd: UInt64 = .max
        for a in trace.writes {
            let aw = windowOf(a)
            while occupied[slot] < aw { slot += 1 }
            let w = slot
            wr[w].add(a)
            entSum[w] += Double(a.entropy)
            guard extended else { continue }
            if a.entropy > 0.9 { highBytes[w] += Double(a.size) }
            while ri < trace.reads.count && trace.reads[ri].timeNs <= a.timeNs {
                lastRead[trace.reads[ri].lba >> 3] = trace.reads[ri].timeNs
                ri += 1
            }
            if let t = lastRead[a.lba >> 3], a.timeNs - t <= 10_000_000_000 { oarN[w] += 1 }
            if a.lba == prevEnd { seqN[w] += 1 }
            prevEnd = a.lba + UInt64(a.size + 511) / 512
            wMin[w] = min(wMin[w], a.lba)
            wMax[w] = max(wMax[w], a.lba)
        }

        var rolling = [Double](repeating: 0, count: 5)
        var history: [[Double]] = []
        table.values.reserveCapacity(count * names.count / 4)
        for w in 0..<count {
            let window = occupied[w]
            let rBytes = r[w].bytes, wBytes = wr[w].bytes, wN = wr[w].n
            let rbps = rBytes / secs, wbps = wBytes / secs
            let rvar = r[w].variance, wvar = wr[w].variance
            let ent = wN > 0 ? entSum[w] / wN : 0
            var row = [rbps, wbps, rvar, wvar, ent]
            if extended {
                let high = wBytes > 0 ? highBytes[w] / wBytes : 0
                let ratio = wBytes / (rBytes + 4096)
                let oar = wN > 0 ? oarN[w] / wN : 0
                let seq = wN > 0 ? seqN[w] / wN : 0
                let spread = wN > 0 ? Double(wMax[w] - wMin[w]) : 0
                row += [high, ratio, oar, seq, spread]
                // Moving means over the last 10 windows of time (idle windows count as zeros).
                let current = [rbps, wbps, ent, high, oar]
                history.append(current + [Double(window)])
                while let first = history.first, Double(window) - first[5] >= 10 { history.removeFirst() }
                for k in 0..<5 { rolling[k] = history.reduce(0) { $0 + $1[k] } / 10 }
                row += rolling
            }
            table.values += row.map { Float($0) }
            table.windowStart.append(span.start + UInt64(window) * windowNs)
            table.writtenBytes.append(UInt64(wBytes))
        }
        return table
    }
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
