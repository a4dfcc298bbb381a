#if canImport(Glibc)
import Glibc
#endif
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
    public static let rollbackConnection: UInt32 = firstRepairConnection

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
        let candidates = past.blocksChangedSince().filter { $0 * 4096 < size }
        let start = try jrn { try journal.appendNote("{\"event\":\"rollback-start\",\"to\":\"\(point)\",\"candidates\":\(candidates.count)}") }
        var report = RollbackReport(to: point, blocks: 0, bytes: 0, blocksUnknown: 0, startSequence: start)
        // Each block changed since the moment is read as it was then, once;
        // those that differ from now are written back in runs of up to 1 MiB.
        let maxRun = 256
        var run = [UInt8](repeating: 0, count: maxRun * 4096)
        var runFirst: UInt64 = 0
        var runBlocks = 0
        var now = [UInt8](repeating: 0, count: 4096)
        func flush() throws {
            guard runBlocks > 0 else { return }
            let length = Int(min(UInt64(runBlocks) * 4096, size - runFirst * 4096))
            try run.withUnsafeBytes { b in
                try write(batch: [(UnsafeRawBufferPointer(rebasing: b[0..<length]), runFirst * 4096)], connection: Self.rollbackConnection)
            }
            report.blocks += runBlocks
            report.bytes += UInt64(length)
            runBlocks = 0
        }
        for (k, b) in candidates.enumerated() {
            if runBlocks > 0 && (b != runFirst + UInt64(runBlocks) || runBlocks == maxRun) { try flush() }
            if runBlocks == 0 { runFirst = b }
            let n = Int(min(4096, size - b * 4096))
            let (source, differs) = try run.withUnsafeMutableBytes { r in
                let slot = UnsafeMutableRawBufferPointer(rebasing: r[runBlocks * 4096..<(runBlocks + 1) * 4096])
                let source = try past.readBlock(b, into: slot)
                return try now.withUnsafeMutableBytes { p in
                    _ = try sys { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: p[0..<n]), at: b * 4096) }
                    return (source, memcmp(slot.baseAddress!, p.baseAddress!, n) != 0)
                }
            }
            if differs {
                if source == .currentImageFallback { report.blocksUnknown += 1 }
                runBlocks += 1
            } else {
                try flush()  // a gap: the run ends here
            }
            if k % 4096 == 0 { progress?(k, candidates.count) }
        }
        try flush()
        try sync()
        _ = try jrn { try journal.appendNote("{\"event\":\"rollback-end\",\"to\":\"\(point)\",\"blocks\":\(report.blocks),\"bytes\":\(report.bytes)}") }
        try jrn { try journal.sync() }
        return report
    }
}
