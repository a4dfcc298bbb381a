import KanshiCore
import KanshiSystem

/// What `Restore.write` did.
public struct RestoreReport: Sendable {
    public var size: UInt64
    /// Blocks whose content was taken from the journal.
    public var blocksFromJournal: Int
    /// Blocks changed after the moment whose earlier content the journal
    /// lacks (journals from before base records); they keep today's content.
    public var blocksUnknown: Int
}

/// Writes past images to files.
public enum Restore {
    /// Writes the disk as it was at `past.at` to `path` (created or replaced;
    /// all-zero stretches are left sparse). Only the blocks changed after the
    /// moment come from the journal; the rest is copied from the current image.
    public static func write(_ past: PastImage, to path: String,
                             progress: ((_ done: UInt64, _ total: UInt64) -> Void)? = nil) throws -> RestoreReport {
        let out = try sys { try SystemFile(path: path, mode: [.readWrite, .create, .truncate]) }
        try sys { try out.truncate(to: past.size) }
        // Everything from the current image, inside the kernel; then the changed blocks.
        var at: UInt64 = 0
        while at < past.size {
            let n = min(UInt64(64 << 20), past.size - at)
            let got = try sys { try past.image.copy(to: out, offset: at, length: n) }
            at += n
            if got < n { break }  // the image is shorter than its size said: the rest stays zeros
            progress?(at / 2, past.size)
        }
        let changed = past.blocksChangedSince()
        var report = RestoreReport(size: past.size, blocksFromJournal: 0, blocksUnknown: 0)
        var block = [UInt8](repeating: 0, count: 4096)
        for (i, b) in changed.enumerated() where b * 4096 < past.size {
            let source = try block.withUnsafeMutableBytes { (buf) throws -> PastImage.Source in
                let s = try past.readBlock(b, into: buf)
                let len = Int(min(4096, past.size - b * 4096))
                try sys { try out.write(UnsafeRawBufferPointer(rebasing: buf[0..<len]), at: b * 4096) }
                return s
            }
            if source == .currentImageFallback { report.blocksUnknown += 1 } else { report.blocksFromJournal += 1 }
            if i % 4096 == 0 { progress?(past.size / 2 + past.size / 2 * UInt64(i) / UInt64(max(1, changed.count)), past.size) }
        }
        try sys { try out.syncData() }
        progress?(past.size, past.size)
        return report
    }

    static func isZero(_ b: [UInt8], _ n: Int) -> Bool {
        b.withUnsafeBytes { p in
            let words = p.bindMemory(to: UInt64.self)
            for i in 0..<(n / 8) where words[i] != 0 { return false }
            for i in (n / 8 * 8)..<n where p[i] != 0 { return false }
            return true
        }
    }
}

/// A run of consecutive changed 4 KiB blocks.
public struct ChangedRange: Sendable {
    public var firstBlock: UInt64
    public var blocks: Int
    /// In 512-byte sectors, as everywhere in Kanshi.
    public var lba: UInt64 { firstBlock * 8 }
    public var bytes: UInt64
    /// Mean byte entropy / 8 of the blocks' content at the later moment.
    public var meanEntropy: Double
    /// Records that wrote to the range between the two moments.
    public var writes: Int
    public var firstTimeNs: UInt64
    public var lastTimeNs: UInt64
}

/// The differences between two moments of a disk.
public struct DiskDiff: Sendable {
    public var ranges: [ChangedRange]
    /// Blocks written between the two moments but holding the same content at both.
    public var rewrittenUnchanged: Int

    /// Compares the disk at `from` and at `to` (from before to).
    public static func between(_ from: PastImage, _ to: PastImage) throws -> DiskDiff {
        var perBlock: [UInt64: (seqs: [UInt64], first: UInt64, last: UInt64)] = [:]
        for v in to.index.versions where !v.isBase && to.at.includes(v) && !from.at.includes(v) {
            if var e = perBlock[v.block] {
                e.seqs.append(v.sequence); e.first = min(e.first, v.timeNs); e.last = max(e.last, v.timeNs)
                perBlock[v.block] = e
            } else {
                perBlock[v.block] = ([v.sequence], v.timeNs, v.timeNs)
            }
        }
        var a = [UInt8](repeating: 0, count: 4096)
        var b = [UInt8](repeating: 0, count: 4096)
        var ranges: [ChangedRange] = []
        var rangeSeqs = Set<UInt64>()
        var same = 0
        for block in perBlock.keys.sorted() where block * 4096 < to.size {
            try a.withUnsafeMutableBytes { (p) throws in _ = try from.readBlock(block, into: p) }
            try b.withUnsafeMutableBytes { (p) throws in _ = try to.readBlock(block, into: p) }
            if a == b { same += 1; continue }
            let e = b.withUnsafeBytes { Double(Entropy.perBlock($0).first ?? 0) }
            let info = perBlock[block]!
            if var last = ranges.last, last.firstBlock + UInt64(last.blocks) == block {
                last.meanEntropy = (last.meanEntropy * Double(last.blocks) + e) / Double(last.blocks + 1)
                last.blocks += 1
                last.bytes += min(4096, to.size - block * 4096)
                rangeSeqs.formUnion(info.seqs)
                last.writes = rangeSeqs.count
                last.firstTimeNs = min(last.firstTimeNs, info.first)
                last.lastTimeNs = max(last.lastTimeNs, info.last)
                ranges[ranges.count - 1] = last
            } else {
                rangeSeqs = Set(info.seqs)
                ranges.append(ChangedRange(firstBlock: block, blocks: 1, bytes: min(4096, to.size - block * 4096),
                                           meanEntropy: e, writes: rangeSeqs.count, firstTimeNs: info.first, lastTimeNs: info.last))
            }
        }
        return DiskDiff(ranges: ranges, rewrittenUnchanged: same)
    }
}
