import KanshiCore
import KanshiHistory
import KanshiJournal
import KanshiSystem

/// What a rollback did.
public struct RollbackReport: Sendable {
    public var to: TimePoint
    /// Blocks rewritten with their earlier content.
    public var blocks: Int
    public var bytes: UInt64
    /// Blocks whose earlier content the journal lacks (journals from before base records).
    public var blocksUnknown: Int
    /// Sequence number of the `rollback-start` note: rolling back to the
    /// record before it (`seq:N-1`) undoes this rollback.
    public var startSequence: UInt64
}

extension JournaledDisk {
    /// Connection id recorded on the writes of a rollback.
    public static let rollbackConnection: UInt32 = 0xFFFF_FF00

    /// Reverts the disk in place to how it was at `point`: every block
    /// changed after it is rewritten with its content then. The rewrites go
    /// through the journal like any write, between `rollback-start` and
    /// `rollback-end` notes, so a rollback can itself be rolled back.
    public func rollBack(to point: TimePoint, progress: ((Int, Int) -> Void)? = nil) throws -> RollbackReport {
        guard let journal else { throw BlockError.badImage(path: image.path, reason: "a rollback needs the disk's journal") }
        guard !isReadOnly else { throw BlockError.readOnly }
        try jrn { try journal.sync() }
        let index = try VersionIndex(journal: journal.directory)
        let past = try PastImage(index: index, at: point, imagePath: image.path)
        // Blocks changed since the moment whose content now differs from then.
        var changed: [UInt64] = []
        var then = [UInt8](repeating: 0, count: 4096)
        var now = [UInt8](repeating: 0, count: 4096)
        for b in past.blocksChangedSince() where b * 4096 < size {
            try then.withUnsafeMutableBytes { _ = try past.readBlock(b, into: $0) }
            let n = Int(min(4096, size - b * 4096))
            _ = try now.withUnsafeMutableBytes { p in try sys { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: p[0..<n]), at: b * 4096) } }
            if then[0..<n] != now[0..<n] { changed.append(b) }
        }
        let start = try jrn { try journal.appendNote("{\"event\":\"rollback-start\",\"to\":\"\(point)\",\"blocks\":\(changed.count)}") }
        var report = RollbackReport(to: point, blocks: 0, bytes: 0, blocksUnknown: 0, startSequence: start)
        var i = 0
        var buffer = [UInt8](repeating: 0, count: 256 * 4096)
        while i < changed.count {
            var j = i + 1
            while j < changed.count && changed[j] == changed[j - 1] + 1 && j - i < 256 { j += 1 }
            let first = changed[i]
            let length = Int(min(UInt64(j - i) * 4096, size - first * 4096))
            try buffer.withUnsafeMutableBytes { b in
                for k in i..<j {
                    let slot = UnsafeMutableRawBufferPointer(rebasing: b[(k - i) * 4096..<(k - i + 1) * 4096])
                    if try past.readBlock(changed[k], into: slot) == .currentImageFallback { report.blocksUnknown += 1 }
                }
                try write(batch: [(UnsafeRawBufferPointer(rebasing: b[0..<length]), first * 4096)], connection: Self.rollbackConnection)
            }
            report.blocks += j - i
            report.bytes += UInt64(length)
            i = j
            progress?(report.blocks, changed.count)
        }
        try sync()
        _ = try jrn { try journal.appendNote("{\"event\":\"rollback-end\",\"to\":\"\(point)\",\"blocks\":\(report.blocks),\"bytes\":\(report.bytes)}") }
        try jrn { try journal.sync() }
        return report
    }
}
