import KanshiCore

/// Window features computed as accesses arrive, for live detection: each
/// access is looked at once, so following a recording costs time in
/// proportion to its length, not to its length squared. Given the accesses
/// of a trace in time order (a read before a write of the same time), the
/// rows are those of `WindowFeatures.compute` on the whole trace.
public struct FeatureStream: Sendable {
    public let windowNs: UInt64
    public let names: [String]
    private let level: WindowFeatures.Level
    private var origin: UInt64?
    /// The window being filled (number since `origin`) and what it holds so far.
    private var open: Int?
    private var acc = WindowAccumulator()
    private var rows: RowBuilder
    private var lastRead: [UInt64: UInt64] = [:]
    private var written = Set<UInt64>()
    private var prevEnd: UInt64 = .max
    /// Rows of the windows closed so far (all names of the level; selected on the way out).
    private var closed: FeatureTable

    public init(windowNs: UInt64, names: [String]) {
        precondition(windowNs > 0 && WindowFeatures.unknown(names).isEmpty)
        self.windowNs = windowNs
        self.names = names
        level = WindowFeatures.level(of: names)
        rows = RowBuilder(level: level, windowNs: windowNs)
        closed = FeatureTable(names: WindowFeatures.names(of: level), values: [], windowStart: [], writtenBytes: [])
    }

    /// Adds a journaled read or write (one access per 4 KiB piece, as `BlockTrace.append`).
    public mutating func append(_ e: BlockEvent) {
        BlockTrace.forEachAccess(of: e) { a in
            if e.operation == .read { add(read: a) } else { add(write: a) }
        }
    }

    /// The window of an access. One that arrives late (its window already
    /// closed) counts in the open window: closed rows never change.
    private mutating func enter(_ t: UInt64) {
        let start = origin ?? t
        origin = start
        let w = t >= start ? Int((t - start) / windowNs) : 0
        if let o = open {
            guard w > o else { return }
            close()
        }
        open = w
    }

    private mutating func close() {
        guard let o = open, let start = origin else { return }
        rows.append(acc, window: o, to: &closed.values)
        closed.windowStart.append(start + UInt64(o) * windowNs)
        closed.writtenBytes.append(UInt64(acc.writes.bytes))
        acc = WindowAccumulator()
        open = nil
    }

    public mutating func add(read a: Access) {
        enter(a.timeNs)
        acc.reads.add(a)
        if level >= .extended { lastRead[a.lba >> 3] = a.timeNs }
    }

    public mutating func add(write a: Access) {
        enter(a.timeNs)
        acc.writes.add(a)
        acc.entropySum += Double(a.entropy)
        guard level >= .extended else { return }
        if a.entropy > 0.9 { acc.highBytes += Double(a.size) }
        let block = a.lba >> 3
        if let t = lastRead[block], a.timeNs >= t {
            let age = a.timeNs - t
            if age <= WindowFeatures.overwriteLookbackNs { acc.overwrites += 1 }
            if age <= WindowFeatures.rewriteLookbackNs { acc.rewrites += 1 }
        }
        if a.lba == prevEnd { acc.sequential += 1 }
        prevEnd = a.lba + UInt64(a.size + 511) / 512
        acc.minLBA = min(acc.minLBA, a.lba)
        acc.maxLBA = max(acc.maxLBA, a.lba)
        guard level == .context else { return }
        if written.insert(block).inserted { acc.newBlocks += 1 }
        let x = Double(a.lba)
        acc.lbaSum += x
        acc.lbaSquares += x * x
    }

    /// Number of closed windows.
    public var closedRows: Int { closed.rows }

    /// Rows of the closed windows from `row` on, then the open window's row
    /// as it stands (it may still grow), in `names` order.
    public func table(from row: Int = 0) -> FeatureTable {
        var t = closed.suffix(from: row)
        if let o = open, let start = origin {
            var builder = rows
            builder.append(acc, window: o, to: &t.values)
            t.windowStart.append(start + UInt64(o) * windowNs)
            t.writtenBytes.append(UInt64(acc.writes.bytes))
        }
        return t.selecting(names)
    }
}

extension FeatureTable {
    /// The rows from `row` on.
    func suffix(from row: Int) -> FeatureTable {
        let r = min(max(row, 0), rows)
        guard r > 0 else { return self }
        return FeatureTable(names: names, values: Array(values[(r * columns)...]), windowStart: Array(windowStart[r...]),
                            writtenBytes: Array(writtenBytes[r...]))
    }
}
