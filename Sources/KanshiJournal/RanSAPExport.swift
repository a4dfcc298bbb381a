import KanshiCore
import KanshiSystem

/// Writes a journal's block events as RanSAP's `ata_read.csv` and
/// `ata_write.csv`, so recordings and the published dataset are read alike.
///
/// Rows follow the dataset: no header line; `seconds,nanoseconds,LBA,size`
/// for reads and `seconds,nanoseconds,LBA,size,entropy1,entropy2` for
/// writes, one row per 4096-byte piece of each request (LBA advancing by 8
/// sectors). Entropy #1 is the piece's byte entropy / 8; entropy #2 the mean
/// of its 256-byte pieces' entropies. Trims and write-zeroes have no RanSAP
/// equivalent and are counted, not exported.
public enum RanSAPExport {
    public struct Summary: Sendable {
        public var readRows = 0
        public var writeRows = 0
        public var skipped = 0
    }

    /// Exports the events stamped at or after `fromNs` (all by default).
    public static func export(journal: JournalReader, to directory: String, fromNs: UInt64 = 0) throws -> Summary {
        try wrap { try FileSystem.createDirectory(directory) }
        let reads = try CSVSink(path: directory + "/ata_read.csv")
        let writes = try CSVSink(path: directory + "/ata_write.csv")
        var summary = Summary()
        try journal.forEachBlockEvent { e, data in
            guard e.timeNs >= fromNs else { return }
            let sec = e.timeNs / 1_000_000_000, ns = e.timeNs % 1_000_000_000
            let prefix = "\(sec),\(ns),"
            switch e.operation {
            case .read:
                var off = 0
                while off < Int(e.length) {
                    let n = min(4096, Int(e.length) - off)
                    reads.append(prefix + "\(e.lba + UInt64(off / 512)),\(n)\n")
                    summary.readRows += 1
                    off += n
                }
                try reads.flushIfLarge()
            case .write:
                var off = 0
                while off < data.count {
                    let n = min(4096, data.count - off)
                    let piece = UnsafeRawBufferPointer(rebasing: data[off..<off + n])
                    let e1 = Entropy.normalized(piece), e2 = Entropy.meanOf256BytePieces(piece)
                    writes.append(prefix + "\(e.lba + UInt64(off / 512)),\(n),\(e1),\(e2)\n")
                    summary.writeRows += 1
                    off += n
                }
                try writes.flushIfLarge()
            default:
                summary.skipped += 1
            }
        }
        try reads.close()
        try writes.close()
        return summary
    }
}

/// Buffers text and writes it to a file in large pieces.
final class CSVSink {
    private let file: SystemFile
    private var buffer: [UInt8] = []
    private var offset: UInt64 = 0

    init(path: String) throws {
        file = try wrap { try SystemFile(path: path, mode: [.readWrite, .create, .truncate]) }
        buffer.reserveCapacity(1 << 20)
    }

    func append(_ s: String) { buffer.append(contentsOf: s.utf8) }

    func flushIfLarge() throws { if buffer.count >= 1 << 20 { try flush() } }

    func flush() throws {
        try buffer.withUnsafeBytes { b in try wrap { try file.write(b, at: offset) } }
        offset += UInt64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws {
        try flush()
        try wrap { try file.syncData() }
    }
}
