extension Ext4FileSystem {
    /// Largest piece handed to a `readContents` callback.
    public static let contentChunkSize = 1 << 20

    /// The bytes of a file (or directory, or symlink target): holes and
    /// unwritten extents read as zeros, inline data and fast symlinks come
    /// from the inode. Files larger than `limit` bytes are refused (use
    /// `readContents` to stream them); a corrupt size cannot exhaust memory.
    public func contents(of inode: Inode, limit: UInt64 = 1 << 32) throws(Ext4Error) -> [UInt8] {
        guard inode.size <= limit else {
            throw .limitExceeded("inode \(inode.number) has \(inode.size) bytes, more than the limit of \(limit); stream it with readContents")
        }
        var out = [UInt8](repeating: 0, count: Int(inode.size))
        if inode.layout == .blockMap || inode.layout.isExtents {
            var failure: Ext4Error?
            out.withUnsafeMutableBytes { p in
                do throws(Ext4Error) { try fill(inode, from: 0, into: p) } catch { failure = error }
            }
            if let failure { throw failure }
            return out
        }
        var filled = 0
        try readContents(of: inode) { (piece) throws(Ext4Error) in
            out.withUnsafeMutableBytes { dst in
                UnsafeMutableRawBufferPointer(rebasing: dst[filled..<filled + piece.count]).copyMemory(from: piece)
            }
            filled += piece.count
        }
        return out
    }

    /// The bytes of inode `number` (see `contents(of:)`).
    public func contents(ofInode number: UInt32) throws(Ext4Error) -> [UInt8] {
        try contents(of: try inode(number))
    }

    /// The bytes of the file at `path` (see `lookup(path:)`, `contents(of:)`).
    public func read(path: String) throws(Ext4Error) -> [UInt8] {
        try contents(of: try lookup(path: path))
    }

    /// Streams the bytes of a file in order, in pieces of at most
    /// `contentChunkSize` bytes, without holding the whole file in memory.
    public func readContents(of inode: Inode, _ body: (UnsafeRawBufferPointer) throws(Ext4Error) -> Void) throws(Ext4Error) {
        switch inode.layout {
        case .none:
            if inode.size != 0 { throw .notAFile(inode: inode.number) }
            return
        case .fastSymlink:
            let bytes = LE(inode.raw).slice(0x28, Int(min(inode.size, 60)))
            try withBytes(bytes, 0..<bytes.count, body)
            return
        case .inline:
            let (iBlock, extra) = try inlineParts(inode)
            let all = Array((iBlock + extra.bytes).prefix(Int(clamping: inode.size)))
            guard all.count == Int(clamping: inode.size) else {
                throw .corruptInlineData(inode: inode.number, reason: "size \(inode.size) but only \(all.count) bytes of inline data")
            }
            try withBytes(all, 0..<all.count, body)
            return
        case .extents, .blockMap:
            break
        }
        let chunk = min(UInt64(Self.contentChunkSize), inode.size)
        var buffer = [UInt8](repeating: 0, count: Int(chunk))
        var position: UInt64 = 0
        while position < inode.size {
            let length = min(chunk, inode.size - position)
            var failure: Ext4Error?
            buffer.withUnsafeMutableBytes { p in
                do throws(Ext4Error) {
                    try fill(inode, from: position, into: UnsafeMutableRawBufferPointer(rebasing: p[0..<Int(length)]))
                } catch { failure = error }
            }
            if let failure { throw failure }
            try withBytes(buffer, 0..<Int(length), body)
            position += length
        }
    }

    /// Fills `out` with the file bytes at `position..<position+out.count`
    /// of a block-mapped inode: zeros for holes and unwritten extents.
    func fill(_ inode: Inode, from position: UInt64, into out: UnsafeMutableRawBufferPointer) throws(Ext4Error) {
        out.initializeMemory(as: UInt8.self, repeating: 0)
        let bs = UInt64(blockSize)
        let end = position + UInt64(out.count)
        let runs = inode.runs
        // First run that ends after `position` (runs are sorted by file block).
        var lo = 0, hi = runs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if (runs[mid].fileBlock + runs[mid].count) * bs <= position { lo = mid + 1 } else { hi = mid }
        }
        var r = lo
        while r < runs.count && runs[r].fileBlock * bs < end {
            let run = runs[r]
            r += 1
            if run.uninitialized { continue }
            let runStart = run.fileBlock * bs
            let from = max(runStart, position)
            let to = min((run.fileBlock + run.count) * bs, end)
            if from >= to { continue }
            let physical = run.physicalBlock * bs + (from - runStart)
            guard physical + (to - from) <= reader.size else {
                throw .readPastEnd(structure: "data of inode \(inode.number)", offset: physical, length: to - from, imageSize: reader.size)
            }
            do {
                try reader.read(into: UnsafeMutableRawBufferPointer(rebasing: out[Int(from - position)..<Int(to - position)]), at: physical)
            } catch {
                throw .io(structure: "data of inode \(inode.number)", offset: physical, message: "\(error)")
            }
        }
    }

    /// Passes `bytes[range]` to a typed-throwing body (`withUnsafeBytes` only rethrows untyped errors).
    private func withBytes(_ bytes: [UInt8], _ range: Range<Int>,
                           _ body: (UnsafeRawBufferPointer) throws(Ext4Error) -> Void) throws(Ext4Error) {
        var failure: Ext4Error?
        bytes.withUnsafeBytes { p in
            do throws(Ext4Error) { try body(UnsafeRawBufferPointer(rebasing: p[range])) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// The target of a symbolic link.
    public func symlinkTarget(of inode: Inode) throws(Ext4Error) -> String {
        String(decoding: try contents(of: inode), as: UTF8.self)
    }

    /// Inline data: the 60 bytes of `i_block` and the value of the in-inode
    /// `system.data` extended attribute (with its byte offset in the image).
    func inlineParts(_ inode: Inode) throws(Ext4Error) -> ([UInt8], (bytes: [UInt8], offset: UInt64)) {
        let b = LE(inode.raw)
        let iBlock = b.slice(0x28, 60)
        guard inode.raw.count > 128 else { return (iBlock, ([], 0)) }
        let start = 128 + Int(b.u16(0x80))
        guard start + 4 <= inode.raw.count, b.u32(start) == 0xEA02_0000 else { return (iBlock, ([], 0)) }
        let first = start + 4
        var e = first
        // Entries are at least 16 bytes; the area bounds the count.
        while e + 16 <= inode.raw.count && b.u32(e) != 0 {
            let nameLen = Int(b.u8(e)), index = b.u8(e + 1)
            let valueOffset = Int(b.u16(e + 2)), valueSize = Int(b.u32(e + 8))
            if index == 7 && nameLen == 4 && b.slice(e + 16, 4) == Array("data".utf8) {
                let v = first + valueOffset
                guard valueSize >= 0, v + valueSize <= inode.raw.count else {
                    throw .corruptInlineData(inode: inode.number, reason: "system.data value (\(valueSize) bytes at \(valueOffset)) runs past the inode")
                }
                return (iBlock, (b.slice(v, valueSize), inode.offset + UInt64(v)))
            }
            e += (16 + nameLen + 3) & ~3
        }
        return (iBlock, ([], 0))
    }
}
