import KanshiCore
import KanshiJournal
import KanshiSystem

/// The disk as it was at a past moment, read through the block → versions
/// index: a block the journal never changed reads from the current image;
/// any other block is assembled, sector by sector, from the newest version
/// at or before the moment, and where there is none from the block's base
/// (its content before the journal's first change to it).
///
/// Assumes, as the journal guarantees while every change goes through
/// Kanshi, that the current image is the journal's last state.
/// Thread-safe for reads (the index is not updated behind it).
public final class PastImage: @unchecked Sendable {
    public let index: VersionIndex
    public let at: TimePoint
    public let image: SystemFile
    public let size: UInt64
    private let segments: [UInt32: SystemFile]

    /// Where a block's content at the moment came from.
    public enum Source: Sendable { case unchanged, journal, currentImageFallback }

    public init(index: VersionIndex, at: TimePoint, imagePath: String) throws {
        self.index = index
        self.at = at
        let image: SystemFile
        do { image = try SystemFile(path: imagePath, mode: .readOnly) } catch {
            throw HistoryError.badImage(path: imagePath, reason: "cannot open the image: \(error)")
        }
        self.image = image
        size = try sys { try image.size() }
        var segs: [UInt32: SystemFile] = [:]
        let used = Set(index.versions.map(\.segment))
        for s in used {
            let p = index.directory + "/" + JournalFormat.segmentName(UInt64(s))
            segs[s] = try sys { try SystemFile(path: p, mode: .readOnly) }
        }
        segments = segs
    }

    /// The sectors of `block` that lie inside the disk.
    func fullMask(_ block: UInt64) -> UInt8 {
        let start = block * 4096
        guard start < size else { return 0 }
        let sectors = min(8, Int((size - start) / 512))
        return sectors == 8 ? 0xFF : UInt8((1 << sectors) - 1)
    }

    /// Fills `buffer` (4096 bytes) with `block` as it was at the moment.
    @discardableResult
    public func readBlock(_ block: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Source {
        precondition(buffer.count == 4096)
        guard index.newest[block] != nil else {
            try readCurrent(block: block, mask: 0xFF, into: buffer)
            return .unchanged
        }
        let full = fullMask(block)
        var filled: UInt8 = 0
        var changedLater: UInt8 = 0  // sectors written after the moment
        var base: BlockVersion?
        for v in index.chain(of: block) {
            if v.isBase { base = v; continue }
            guard at.includes(v) else { changedLater |= v.sectorMask; continue }
            let m = v.sectorMask & ~filled & full
            if m == 0 { continue }
            try copy(v, sectors: m, into: buffer)
            filled |= m
            if filled == full { return .journal }
        }
        if let base {
            try copy(base, sectors: full & ~filled, into: buffer)
            return .journal
        }
        // A journal from before base records: sectors never written read
        // from today's image (right); sectors written only after the moment
        // have no earlier copy (unknown, today's content is used).
        try readCurrent(block: block, mask: full & ~filled, into: buffer)
        return changedLater & full & ~filled != 0 ? .currentImageFallback : .journal
    }

    private func copy(_ v: BlockVersion, sectors: UInt8, into buffer: UnsafeMutableRawBufferPointer) throws {
        for run in runs(sectors) {
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[run.lowerBound * 512..<run.upperBound * 512])
            if v.isZero {
                dst.initializeMemory(as: UInt8.self, repeating: 0)
                continue
            }
            guard let file = segments[v.segment] else { throw HistoryError.outOfRange("segment \(v.segment) of the index is not in the journal") }
            let offset = v.dataOffset + UInt64((run.lowerBound - v.firstSector) * 512)
            let n = try sys { try file.read(into: dst, at: offset) }
            guard n == dst.count else {
                throw HistoryError.outOfRange("\(file.path) at byte \(offset) (record #\(v.sequence)): the data of a block version ends early")
            }
        }
    }

    private func readCurrent(block: UInt64, mask: UInt8, into buffer: UnsafeMutableRawBufferPointer) throws {
        for run in runs(mask) {
            let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[run.lowerBound * 512..<run.upperBound * 512])
            let n = try sys { try image.read(into: dst, at: block * 4096 + UInt64(run.lowerBound * 512)) }
            if n < dst.count { UnsafeMutableRawBufferPointer(rebasing: dst[n...]).initializeMemory(as: UInt8.self, repeating: 0) }
        }
    }

    /// Reads any byte range of the disk at the moment.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        var scratch = [UInt8](repeating: 0, count: 4096)
        while done < buffer.count {
            let pos = offset + UInt64(done)
            let block = pos / 4096
            let inBlock = Int(pos % 4096)
            let n = min(4096 - inBlock, buffer.count - done)
            if index.newest[block] == nil {
                // Unchanged blocks: read as many consecutive ones as possible at once.
                var end = done + n
                while end < buffer.count, index.newest[(offset + UInt64(end)) / 4096] == nil {
                    end = min(buffer.count, end + 4096 - Int((offset + UInt64(end)) % 4096))
                }
                let dst = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<end])
                let got = try sys { try image.read(into: dst, at: pos) }
                if got < dst.count { UnsafeMutableRawBufferPointer(rebasing: dst[got...]).initializeMemory(as: UInt8.self, repeating: 0) }
                done = end
                continue
            }
            try scratch.withUnsafeMutableBytes { (s) throws in
                try readBlock(block, into: s)
                UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n]).copyMemory(from: UnsafeRawBufferPointer(rebasing: s[inBlock..<inBlock + n]))
            }
            done += n
        }
    }

    /// Blocks whose content at this moment may differ from the current image:
    /// those changed by a record after the moment. Ascending.
    public func blocksChangedSince() -> [UInt64] {
        var set = Set<UInt64>()
        for v in index.versions where !v.isBase && !at.includes(v) { set.insert(v.block) }
        return set.sorted()
    }
}

/// Contiguous runs of set bits of an 8-bit sector mask.
func runs(_ mask: UInt8) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var i = 0
    while i < 8 {
        if mask & (1 << UInt8(i)) != 0 {
            var j = i
            while j < 8 && mask & (1 << UInt8(j)) != 0 { j += 1 }
            out.append(i..<j)
            i = j
        } else {
            i += 1
        }
    }
    return out
}
