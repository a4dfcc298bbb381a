/// Decoding inodes and their block maps: extent trees and indirect maps.
extension Ext4FileSystem {
    /// Deepest extent tree accepted (the kernel's limit is 5).
    static let maxExtentDepth = 5

    func decodeInode(number: UInt32, offset: UInt64, raw: [UInt8]) throws(Ext4Error) -> Inode {
        let b = LE(raw)
        let mode = b.u16(0x00)
        let flags = b.u32(0x20)
        let extra = raw.count > 128 ? Int(b.u16(0x80)) : 0
        func time(_ lo: Int, _ ex: Int) -> InodeTime {
            var t = InodeTime(seconds: Int64(Int32(bitPattern: b.u32(lo))), nanoseconds: 0)
            if ex + 4 <= 128 + extra {
                let e = b.u32(ex)
                t.seconds += Int64(e & 3) << 32
                t.nanoseconds = e >> 2
            }
            return t
        }
        let type = FileType(mode: mode)
        let size = UInt64(b.u32(0x04)) | UInt64(b.u32(0x6C)) << 32
        var sectors = UInt64(b.u32(0x1C))
        if superblock.featureROCompat & Superblock.ROCompat.hugeFile != 0 { sectors |= UInt64(b.u16(0x74)) << 32 }
        if flags & Inode.hugeFileFlag != 0 { sectors *= UInt64(blockSize / 512) }
        let xattr = UInt64(b.u32(0x68)) | (superblock.featureIncompat & Superblock.Incompat.is64Bit != 0 ? UInt64(b.u16(0x76)) << 32 : 0)
        var inode = Inode(
            number: number, offset: offset, mode: mode, type: type,
            uid: UInt32(b.u16(0x02)) | UInt32(b.u16(0x78)) << 16,
            gid: UInt32(b.u16(0x18)) | UInt32(b.u16(0x7A)) << 16,
            size: size, linksCount: b.u16(0x1A), sectors: sectors, flags: flags,
            accessTime: time(0x08, 0x8C), changeTime: time(0x0C, 0x84), modificationTime: time(0x10, 0x88),
            creationTime: 0x94 + 4 <= 128 + extra ? time(0x90, 0x94) : nil,
            deletionTime: b.u32(0x14), generation: b.u32(0x64), xattrBlock: xattr,
            layout: .none, runs: [], mappingBlocks: [], raw: raw)
        guard mode != 0 else { return inode }
        let xattrSectors: UInt64 = xattr != 0 ? UInt64(blockSize / 512) : 0
        if flags & Inode.inlineDataFlag != 0 {
            inode.layout = .inline
        } else if type == .symlink && flags & Inode.extentsFlag == 0 && size < 60 && sectors <= xattrSectors {
            inode.layout = .fastSymlink
        } else if type == .regular || type == .directory || type == .symlink || number < superblock.firstInode {
            if flags & Inode.extentsFlag != 0 {
                var runs: [BlockRun] = []
                var meta: [UInt64] = []
                var seen = Set<UInt64>()
                let depth = try walkExtents(inode: number, node: b.slice(0x28, 60), nodeOffset: offset + 0x28,
                                            expectedDepth: nil, runs: &runs, meta: &meta, seen: &seen)
                inode.layout = .extents(depth: depth)
                inode.runs = runs.sorted { $0.fileBlock < $1.fileBlock }
                inode.mappingBlocks = meta.sorted()
            } else {
                inode.layout = .blockMap
                try mapIndirect(inode: &inode, iBlock: b)
            }
        }
        return inode
    }

    /// Walks one extent-tree node and its children; returns the node's depth.
    private func walkExtents(inode: UInt32, node: [UInt8], nodeOffset: UInt64, expectedDepth: Int?,
                             runs: inout [BlockRun], meta: inout [UInt64], seen: inout Set<UInt64>) throws(Ext4Error) -> Int {
        let h = LE(node)
        guard h.u16(0) == 0xF30A else {
            throw .corruptExtentTree(inode: inode, offset: nodeOffset,
                                     reason: "bad extent header magic 0x\(String(h.u16(0), radix: 16)) (expected 0xf30a)")
        }
        let entries = Int(h.u16(2)), maxEntries = Int(h.u16(4)), depth = Int(h.u16(6))
        let capacity = (node.count - 12) / 12
        guard entries <= maxEntries, maxEntries <= capacity else {
            throw .corruptExtentTree(inode: inode, offset: nodeOffset,
                                     reason: "\(entries) entries, max \(maxEntries), room for \(capacity)")
        }
        guard depth <= Self.maxExtentDepth, expectedDepth == nil || depth == expectedDepth! else {
            throw .corruptExtentTree(inode: inode, offset: nodeOffset,
                                     reason: "depth \(depth) (expected \(expectedDepth.map(String.init) ?? "at most \(Self.maxExtentDepth)"))")
        }
        for i in 0..<entries {
            let e = 12 + i * 12
            if depth == 0 {
                let logical = UInt64(h.u32(e))
                var len = UInt64(h.u16(e + 4))
                let uninit = len > 32768
                if uninit { len -= 32768 }
                let start = UInt64(h.u16(e + 6)) << 32 | UInt64(h.u32(e + 8))
                guard len > 0 else { continue }
                guard start > 0, start + len <= blocksCount else {
                    throw .blockPastEnd(inode: inode, block: start + len - 1, blocksCount: blocksCount, structure: "extent \(i) at offset \(nodeOffset + UInt64(e))")
                }
                runs.append(BlockRun(fileBlock: logical, physicalBlock: start, count: len, uninitialized: uninit))
            } else {
                let child = UInt64(h.u16(e + 8)) << 32 | UInt64(h.u32(e + 4))
                guard child > 0, child < blocksCount else {
                    throw .blockPastEnd(inode: inode, block: child, blocksCount: blocksCount, structure: "extent index \(i) at offset \(nodeOffset + UInt64(e))")
                }
                guard seen.insert(child).inserted else {
                    throw .corruptExtentTree(inode: inode, offset: nodeOffset + UInt64(e),
                                             reason: "extent tree block \(child) is referenced twice")
                }
                meta.append(child)
                let data = try readBlock(child)
                _ = try walkExtents(inode: inode, node: data, nodeOffset: child * UInt64(blockSize),
                                    expectedDepth: depth - 1, runs: &runs, meta: &meta, seen: &seen)
            }
        }
        return depth
    }

    /// Maps the 12 direct pointers and the single, double and triple indirect blocks.
    private func mapIndirect(inode: inout Inode, iBlock b: LE) throws(Ext4Error) {
        var runs: [BlockRun] = []
        var meta: [UInt64] = []
        var seen = Set<UInt64>()
        let number = inode.number
        let perBlock = UInt64(blockSize / 4)
        func add(_ logical: UInt64, _ physical: UInt64) {
            if let last = runs.last, last.fileBlock + last.count == logical, last.physicalBlock + last.count == physical {
                runs[runs.count - 1].count += 1
            } else {
                runs.append(BlockRun(fileBlock: logical, physicalBlock: physical, count: 1))
            }
        }
        func check(_ p: UInt64, _ what: String) throws(Ext4Error) {
            guard p < blocksCount else {
                throw .blockPastEnd(inode: number, block: p, blocksCount: blocksCount, structure: what)
            }
        }
        // Walks an indirect block of the given level (1 = single) covering
        // logical blocks from `base`.
        func walk(_ block: UInt64, level: Int, base: UInt64) throws(Ext4Error) {
            try check(block, "indirect block (level \(level))")
            guard seen.insert(block).inserted else {
                throw .corruptBlockMap(inode: number, offset: block * UInt64(blockSize),
                                       reason: "indirect block \(block) is referenced twice")
            }
            meta.append(block)
            let data = LE(try readBlock(block))
            var span: UInt64 = 1
            for _ in 1..<level { span *= perBlock }
            for i in 0..<Int(perBlock) {
                let p = UInt64(data.u32(i * 4))
                if p == 0 { continue }
                let logical = base + UInt64(i) * span
                if level == 1 {
                    try check(p, "block pointer in indirect block \(block)")
                    add(logical, p)
                } else {
                    try walk(p, level: level - 1, base: logical)
                }
            }
        }
        for i in 0..<12 {
            let p = UInt64(b.u32(0x28 + i * 4))
            if p == 0 { continue }
            try check(p, "direct block pointer \(i)")
            add(UInt64(i), p)
        }
        if number == 7 {
            // The resize inode's double-indirect block lists the reserved GDT
            // blocks; those are reported as reserved GDT, not as file data.
            let dind = UInt64(b.u32(0x28 + 13 * 4))
            if dind != 0 { try check(dind, "resize inode double indirect block"); meta.append(dind) }
        } else {
            var base: UInt64 = 12
            for level in 1...3 {
                let p = UInt64(b.u32(0x28 + (11 + level) * 4))
                if p != 0 { try walk(p, level: level, base: base) }
                var span: UInt64 = 1
                for _ in 0..<level { span *= perBlock }
                base += span
            }
        }
        inode.runs = runs
        inode.mappingBlocks = meta.sorted()
    }
}
