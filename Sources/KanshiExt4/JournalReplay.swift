/// Read-only replay of the internal jbd2 journal: committed transactions that
/// were not yet written back become an overlay of file-system blocks, so a
/// file system that "needs recovery" (a guest killed or snapshotted while
/// mounted) reads as the kernel would see it after mounting. Nothing is
/// written to the image.
struct JournalReplay {
    static let magic: UInt32 = 0xC03B_3998

    /// File-system block -> where its newest committed copy sits in the image.
    var overlay: [UInt64: JournalOverlayReader.Copy] = [:]

    init(fileSystem fs: Ext4FileSystem) throws(Ext4Error) {
        let number = fs.superblock.journalInode
        let journal = try fs.inode(number)
        let bs = UInt64(fs.blockSize)
        let runs = journal.runs
        func physical(_ logical: UInt64) throws(Ext4Error) -> UInt64 {
            var lo = 0, hi = runs.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if runs[mid].fileBlock + runs[mid].count <= logical { lo = mid + 1 } else { hi = mid }
            }
            guard lo < runs.count, runs[lo].fileBlock <= logical else {
                throw .corruptJournal(offset: journal.offset, reason: "journal block \(logical) is not mapped by inode \(number)")
            }
            return runs[lo].physicalBlock + (logical - runs[lo].fileBlock)
        }
        func block(_ logical: UInt64) throws(Ext4Error) -> [UInt8] { try fs.readBlock(try physical(logical)) }
        func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
            o + 4 <= b.count ? UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) : 0
        }

        let sb = try block(0)
        let sbOffset = try physical(0) * bs
        guard be32(sb, 0) == Self.magic, be32(sb, 4) == 3 || be32(sb, 4) == 4 else {
            throw .corruptJournal(offset: sbOffset, reason: "no jbd2 superblock (magic 0x\(String(be32(sb, 0), radix: 16)))")
        }
        guard be32(sb, 0xC) == UInt32(bs) else {
            throw .corruptJournal(offset: sbOffset, reason: "journal block size \(be32(sb, 0xC)) differs from the file system's \(bs)")
        }
        let maxLen = UInt64(be32(sb, 0x10)), first = UInt64(be32(sb, 0x14))
        var sequence = be32(sb, 0x18)
        let start = UInt64(be32(sb, 0x1C))
        if start == 0 { return }  // clean journal
        let incompat = be32(sb, 4) == 4 ? be32(sb, 0x28) : 0
        guard incompat & ~UInt32(0x1 | 0x2 | 0x4 | 0x8 | 0x10) == 0 else {
            throw .unsupportedFeature("journal incompat flags 0x\(String(incompat, radix: 16)) (fast_commit?) in a journal that needs recovery")
        }
        guard first >= 1, first < maxLen, maxLen <= journal.dataBlockCount, start >= first, start < maxLen else {
            throw .corruptJournal(offset: sbOffset, reason: "s_first \(first), s_maxlen \(maxLen), s_start \(start)")
        }
        let is64 = incompat & 0x2 != 0, csum2 = incompat & 0x8 != 0, csum3 = incompat & 0x10 != 0
        let tagBytes = csum3 ? 16 : 12 + (csum2 ? 2 : 0) - (is64 ? 0 : 4)
        let tail = csum2 || csum3 ? 4 : 0

        struct Write { var block: UInt64; var logical: UInt64; var escaped: Bool }
        var transactions: [(UInt32, [Write])] = []
        var revoked: [UInt64: UInt32] = [:]
        var pending: [Write] = []
        var pendingRevokes: [UInt64] = []
        var pos = start
        func advance(_ p: UInt64) -> UInt64 { p + 1 >= maxLen ? first : p + 1 }
        // Each block is visited at most once per pass over the log.
        for _ in 0..<maxLen {
            let b = try block(pos)
            guard be32(b, 0) == Self.magic, be32(b, 8) == sequence else { break }
            let type = be32(b, 4)
            if type == 1 {  // descriptor
                var o = 12
                var data = advance(pos)
                while o + tagBytes <= b.count - tail {
                    let lo = UInt64(be32(b, o))
                    let flags = csum3 ? be32(b, o + 4) : UInt32(b[o + 6]) << 8 | UInt32(b[o + 7])
                    let hi = is64 ? UInt64(be32(b, o + 8)) : 0  // blocknr_high is at 8 in both tag layouts
                    let target = hi << 32 | lo
                    guard target < fs.blocksCount else {
                        throw .corruptJournal(offset: try physical(pos) * bs + UInt64(o),
                                              reason: "tag for block \(target), past the end of the file system")
                    }
                    pending.append(Write(block: target, logical: data, escaped: flags & 0x1 != 0))
                    data = advance(data)
                    o += tagBytes + (flags & 0x2 == 0 ? 16 : 0)
                    if flags & 0x8 != 0 { break }
                }
                pos = data
                continue
            } else if type == 2 {  // commit
                transactions.append((sequence, pending))
                for r in pendingRevokes { revoked[r] = max(revoked[r] ?? 0, sequence) }
                pending = []
                pendingRevokes = []
                sequence &+= 1
            } else if type == 5 {  // revoke
                let used = min(Int(be32(b, 12)), b.count)
                var o = 16
                let size = is64 ? 8 : 4
                while o + size <= used {
                    pendingRevokes.append(is64 ? UInt64(be32(b, o)) << 32 | UInt64(be32(b, o + 4)) : UInt64(be32(b, o)))
                    o += size
                }
            } else {
                break
            }
            pos = advance(pos)
        }
        for (seq, writes) in transactions {
            for w in writes {
                if let r = revoked[w.block], r >= seq { continue }
                overlay[w.block] = JournalOverlayReader.Copy(offset: try physical(w.logical) * bs, escaped: w.escaped)
            }
        }
    }
}

/// An `ImageReader` that serves some blocks from their journal copies.
public struct JournalOverlayReader: ImageReader {
    struct Copy: Sendable { var offset: UInt64; var escaped: Bool }
    public let base: any ImageReader
    public let blockSize: Int
    let overlay: [UInt64: Copy]
    public var size: UInt64 { base.size }
    /// Number of file-system blocks replaced by journal copies.
    public var replayedBlocks: Int { overlay.count }

    init(base: any ImageReader, blockSize: Int, overlay: [UInt64: Copy]) {
        self.base = base
        self.blockSize = blockSize
        self.overlay = overlay
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let bs = UInt64(blockSize)
        var done = 0
        while done < buffer.count {
            let at = offset + UInt64(done)
            let block = at / bs, within = Int(at % bs)
            let n = min(buffer.count - done, blockSize - within)
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
            if let copy = overlay[block] {
                var data = [UInt8](repeating: 0, count: blockSize)
                try data.withUnsafeMutableBytes { try base.read(into: $0, at: copy.offset) }
                if copy.escaped { data[0] = 0xC0; data[1] = 0x3B; data[2] = 0x39; data[3] = 0x98 }
                data.withUnsafeBytes { piece.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[within..<within + n])) }
                done += n
            } else {
                // Extend over following blocks that are not in the overlay.
                var m = n
                while done + m < buffer.count && overlay[(at + UInt64(m)) / bs] == nil {
                    m += min(buffer.count - done - m, blockSize)
                }
                try base.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + m]), at: at)
                done += m
            }
        }
    }
}
