import Foundation

/// Which features to compute per window.
public enum FeatureSet: String, Sendable, Codable, CaseIterable {
    /// The five of the published method.
    case published
    /// The published five plus ours (see `WindowFeatures.names`).
    case extended
    /// `extended` without any entropy feature: what is left when full-disk
    /// encryption makes every write look random.
    case structural
    /// `extended` plus the 5 s and 30 s context averages
    /// (`WindowFeatures.contextNames`): the best within one setup, but they
    /// do not carry over to another one (see the README).
    case context
    /// Per-process-tree windows from a behaviour log (`ProcessWindows.names`), not from blocks.
    case process

    /// The sets computed from block traces (every one but `process`).
    public static let blockSets: [FeatureSet] = allCases.filter { $0 != .process }
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

    public init(names: [String], values: [Float], windowStart: [UInt64], writtenBytes: [UInt64]) {
        self.names = names; self.values = values; self.windowStart = windowStart; self.writtenBytes = writtenBytes
    }

    public func row(_ i: Int) -> ArraySlice<Float> { values[(i * columns)..<((i + 1) * columns)] }

    /// The same rows with only the named columns, in that order (each must be one of `names`).
    public func selecting(_ wanted: [String]) -> FeatureTable {
        guard wanted != names else { return self }
        let index = Dictionary(names.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let keep = wanted.map { index[$0]! }
        var out = values
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(rows * keep.count)
        let cols = columns
        for r in 0..<rows { for c in keep { out.append(values[r * cols + c]) } }
        return FeatureTable(names: wanted, values: out, windowStart: windowStart, writtenBytes: writtenBytes)
    }
}

/// Cuts a trace into fixed windows and computes features for each window
/// that has any I/O.
///
/// Published features (Hirano & Kobayashi 2019): read and write throughput
/// (bytes/s), variance of read LBAs and of write LBAs, mean write entropy.
///
/// Extended, ours, per window: fraction of written bytes with entropy > 0.9;
/// write/read byte ratio; fraction of written blocks read in the previous
/// 10 s (overwrite after read); sequentiality of writes; the write LBA spread;
/// and 1-second (10-window) moving means of throughput, entropy, high-entropy
/// fraction and overwrite-after-read.
///
/// Context, ours: what the run has been doing over the last seconds, so a
/// quiet window in the middle of an attack is judged with the attack around
/// it. Exponential moving averages over 5 s and 30 s (time constants; idle
/// windows count as zeros, so the averages decay through silence) of read
/// and write throughput, of the share of the bytes that are writes, of the
/// fraction of time with any I/O, of overwrite-after-read, of writes to
/// blocks read in the previous 30 s, of writes to blocks not written before
/// in the recording, of write sequentiality and of the variance of written
/// LBAs; and of the high-entropy fraction and mean write entropy. Every
/// feature uses only the past and the window itself, so the live detector
/// computes the same values as the offline one.
public enum WindowFeatures {
    public static let publishedNames = ["read_bps", "write_bps", "read_lba_var", "write_lba_var", "write_entropy_mean"]
    public static let contextNames = [
        "read_bps_5s", "write_bps_5s", "read_bps_30s", "write_bps_30s", "write_share_5s", "write_share_30s",
        "io_active_5s", "io_active_30s", "overwrite_after_read_5s", "overwrite_after_read_30s",
        "rewrite_of_read_30s", "rewrite_of_read_rate_30s", "new_block_frac_5s", "new_block_frac_30s",
        "write_sequential_frac_5s", "write_lba_var_30s",
        "high_entropy_frac_5s", "high_entropy_frac_30s", "write_entropy_30s",
    ]
    public static let extendedNames = publishedNames + [
        "high_entropy_frac", "write_read_ratio", "overwrite_after_read", "write_sequential_frac", "write_lba_spread",
        "read_bps_1s", "write_bps_1s", "write_entropy_1s", "high_entropy_frac_1s", "overwrite_after_read_1s",
    ]

    public static let structuralNames = extendedNames.filter { !$0.contains("entropy") }

    /// Every feature this version computes, in the order it computes them.
    public static let allNames = extendedNames + contextNames

    public static func names(_ set: FeatureSet) -> [String] {
        switch set {
        case .published: publishedNames
        case .extended: extendedNames
        case .structural: structuralNames
        case .context: allNames
        case .process: ProcessWindows.names
        }
    }

    /// The names among `names` that this build does not compute.
    public static func unknown(_ names: [String]) -> [String] {
        let known = Set(allNames)
        return names.filter { !known.contains($0) }
    }

    public static func compute(_ trace: BlockTrace, windowNs: UInt64 = 100_000_000, set: FeatureSet = .extended) -> FeatureTable {
        compute(trace, windowNs: windowNs, names: names(set))
    }

    /// The named features (each one of `allNames`), in that order.
    public static func compute(_ trace: BlockTrace, windowNs: UInt64 = 100_000_000, names: [String]) -> FeatureTable {
        computeAll(trace, windowNs: windowNs, level: level(of: names)).selecting(names)
    }

    /// The least that must be computed for these names.
    static func level(of names: [String]) -> Level {
        names.allSatisfy { publishedNames.contains($0) } ? .published : names.allSatisfy { extendedNames.contains($0) } ? .extended : .context
    }

    /// Everything computed at a level.
    static func names(of level: Level) -> [String] {
        switch level {
        case .published: publishedNames
        case .extended: extendedNames
        case .context: allNames
        }
    }

    /// How much to compute: the published five, the extended set, or everything.
    enum Level: Int, Comparable {
        case published, extended, context
        static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    /// Time constants of the context averages, seconds.
    static let shortHorizon = 5.0, longHorizon = 30.0
    /// How far back a read makes a later write of the same block an overwrite after read (ns).
    static let overwriteLookbackNs: UInt64 = 10_000_000_000
    static let rewriteLookbackNs: UInt64 = 30_000_000_000

    /// Everything of `level`, by feeding the trace's accesses in time order
    /// (a read before a write of the same time) to a `FeatureStream`: the
    /// live detector and the offline one share every line of the arithmetic.
    /// Only windows with I/O get a row, so a recording with a gap of days
    /// (or a bogus timestamp) costs nothing for the empty time between.
    static func computeAll(_ trace: BlockTrace, windowNs: UInt64, level: Level) -> FeatureTable {
        guard windowNs > 0 else { return FeatureTable(names: names(of: level), values: [], windowStart: [], writtenBytes: []) }
        var stream = FeatureStream(windowNs: windowNs, names: names(of: level))
        var ri = 0
        for w in trace.writes {
            while ri < trace.reads.count && trace.reads[ri].timeNs <= w.timeNs {
                stream.add(read: trace.reads[ri])
                ri += 1
            }
            stream.add(write: w)
        }
        while ri < trace.reads.count {
            stream.add(read: trace.reads[ri])
            ri += 1
        }
        return stream.table()
    }

    /// A stacked model's extra inputs: the first stage's window probabilities averaged over the last 5 s and 30 s.
    public static let verdictNames = ["verdict_5s", "verdict_30s"]

    /// `table` with two more columns (`verdictNames`): the moving averages of
    /// `probabilities` (one per row) over time, as the context averages are
    /// made (idle windows count as zeros; divided by the weight of the time seen).
    public static func addingVerdicts(_ probabilities: [Float], to table: FeatureTable, windowNs: UInt64) -> FeatureTable {
        precondition(probabilities.count == table.rows)
        let secs = Double(windowNs) / 1e9
        var short = Averages(windowSeconds: secs, horizon: shortHorizon), long = Averages(windowSeconds: secs, horizon: longHorizon)
        var out = FeatureTable(names: table.names + verdictNames, values: [], windowStart: table.windowStart, writtenBytes: table.writtenBytes)
        out.values.reserveCapacity(table.rows * out.columns)
        var previous: UInt64? = nil
        for r in 0..<table.rows {
            let start = table.windowStart[r]
            let gap = previous.map { Int((start - $0) / max(windowNs, 1)) } ?? 0
            previous = start
            var x = Quantities()
            x.writes = Double(probabilities[r])
            short.add(x, gap: gap)
            long.add(x, gap: gap)
            out.values += table.row(r)
            out.values += [Float(short.mean.writes), Float(long.mean.writes)]
        }
        return out
    }

    /// a / b, 0 when b is (nearly) nothing.
    @inline(__always) static func share(_ a: Double, _ b: Double) -> Double { b > 1e-12 ? min(a / b, 1) : 0 }
}
