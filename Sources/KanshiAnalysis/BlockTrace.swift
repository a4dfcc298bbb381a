import KanshiCore
import KanshiJournal

/// One block access as the analysis sees it.
public struct Access: Sendable, Equatable {
    /// ns since the epoch.
    public var timeNs: UInt64
    /// First sector (512 bytes).
    public var lba: UInt64
    /// Bytes.
    public var size: UInt32
    /// Normalised entropy of the written data (writes only).
    public var entropy: Float

    public init(timeNs: UInt64, lba: UInt64, size: UInt32, entropy: Float = 0) {
        self.timeNs = timeNs
        self.lba = lba
        self.size = size
        self.entropy = entropy
    }
}

/// The reads and writes of one recording, each sorted by time: what every
/// later step works on, whether it came from RanSAP CSV files or a journal.
public struct BlockTrace: Sendable {
    public var reads: [Access]
    public var writes: [Access]

    public init(reads: [Access], writes: [Access]) {
        self.reads = reads
        self.writes = writes
        if !self.reads.isSorted(by: \.timeNs) { self.reads.sort { $0.timeNs < $1.timeNs } }
        if !self.writes.isSorted(by: \.timeNs) { self.writes.sort { $0.timeNs < $1.timeNs } }
    }

    /// First and last time of any access.
    public var span: (start: UInt64, end: UInt64)? {
        let starts = [reads.first?.timeNs, writes.first?.timeNs].compactMap { $0 }
        let ends = [reads.last?.timeNs, writes.last?.timeNs].compactMap { $0 }
        guard let s = starts.min(), let e = ends.max() else { return nil }
        return (s, e)
    }

    /// Reads a Kanshi journal: one access per 4 KiB piece of each request, as
    /// RanSAP records them, with the entropy stored at write time.
    public static func fromJournal(_ directory: String) throws -> BlockTrace {
        var trace = BlockTrace(reads: [], writes: [])
        try JournalReader(directory: directory).forEachBlockEvent { e, _ in trace.append(e) }
        return trace
    }

    /// Adds a journaled event (reads and writes; one access per 4 KiB piece).
    /// Events arrive in journal order, which is time order.
    public mutating func append(_ e: BlockEvent) {
        Self.forEachAccess(of: e) { a in
            if e.operation == .read { reads.append(a) } else { writes.append(a) }
        }
    }

    /// The accesses a journaled read or write stands for: one per 4 KiB
    /// piece, carrying that piece's entropy (none for other operations).
    public static func forEachAccess(of e: BlockEvent, _ body: (Access) -> Void) {
        guard e.operation == .read || e.operation == .write else { return }
        var off: UInt32 = 0
        var piece = 0
        while off < e.length {
            let n = min(4096, e.length - off)
            body(Access(timeNs: e.timeNs, lba: e.lba + UInt64(off / 512), size: n,
                        entropy: piece < e.entropies.count ? e.entropies[piece] : 0))
            off += n
            piece += 1
        }
    }
}

extension Array {
    func isSorted<T: Comparable>(by key: KeyPath<Element, T>) -> Bool {
        guard count > 1 else { return true }
        for i in 1..<count where self[i - 1][keyPath: key] > self[i][keyPath: key] { return false }
        return true
    }
}
