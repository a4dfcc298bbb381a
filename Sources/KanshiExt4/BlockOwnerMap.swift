/// Who a physical block belongs to.
public enum BlockOwner: Sendable, Equatable, Hashable {
    /// Block 0 of a file system with 1 KiB blocks (the boot sector area).
    case bootBlock
    /// The primary superblock (group 0) or a backup.
    case superblock(group: UInt32)
    /// A block of the group descriptor table (primary in group 0, or a backup).
    case groupDescriptors(group: UInt32)
    /// Reserved GDT blocks kept for online resize (resize_inode).
    case reservedGDT(group: UInt32)
    case blockBitmap(group: UInt32)
    case inodeBitmap(group: UInt32)
    case inodeTable(group: UInt32)
    /// The multiple-mount-protection block.
    case mmp
    /// Data of the internal journal (inode 8 usually), block `fileBlock` of it.
    case journal(inode: UInt32, fileBlock: UInt64)
    /// Data of a file, directory or symlink: block `fileBlock` of the file.
    /// `path` is the first path found from the root, nil for inodes that are
    /// in use but not reachable (quota and other special inodes, orphans).
    case file(inode: UInt32, path: String?, fileBlock: UInt64)
    /// An extent-tree index or leaf block of the inode.
    case extentTree(inode: UInt32)
    /// An indirect (single, double or triple) block of the inode.
    case indirect(inode: UInt32)
    /// The extended-attribute block of the inode (first inode found if shared).
    case xattr(inode: UInt32)
    /// Not in use according to the block bitmap.
    case free
    /// Marked in use by the block bitmap but owned by nothing found
    /// (leaked, or owned by a deleted-but-open file not reachable otherwise).
    case allocatedUnowned
    /// Past the last block of the file system.
    case outsideFileSystem
}

/// A run of consecutive blocks with one owner.
public struct OwnedRun: Sendable, Equatable {
    public var start: UInt64
    public var count: UInt64
    /// The owner of the first block; for `.file` and `.journal` the file
    /// block increases by one per block of the run.
    public var owner: BlockOwner
}

/// A map from every physical block to its owner, built once from the
/// metadata and then queried by binary search over sorted runs.
///
/// For a few-GiB image this is a few thousand to a few hundred thousand runs
/// (one per extent plus per-group metadata and free gaps).
public struct BlockOwnerMap: Sendable {
    struct Piece {
        var start: UInt64
        var count: UInt64
        var fileBlock: UInt64
        var owner: Int32
    }

    public let blockSize: Int
    public let blocksCount: UInt64
    private var pieces: [Piece]
    private var owners: [BlockOwner]
    /// Blocks claimed by more than one owner (cross-linked); the first claim
    /// in sorted order wins.
    public private(set) var conflictingBlocks: UInt64 = 0

    /// Builds the map: group metadata, every reachable file, special and
    /// unreachable in-use inodes, then free/unowned from the block bitmaps.
    public init(fileSystem fs: Ext4FileSystem) throws(Ext4Error) {
        blockSize = fs.blockSize
        blocksCount = fs.blocksCount
        var builder = Builder()
        let sb = fs.superblock
        let perBlock = UInt32(fs.blockSize) / UInt32(sb.descriptorSize)
        let gdtBlocks = UInt64((sb.groupCount + perBlock - 1) / perBlock)
        if fs.blockSize == 1024 { builder.add(0, 1, .bootBlock) }
        for g in 0..<sb.groupCount {
            let first = fs.groupFirstBlock(g)
            let hasSuper = sb.hasSuperblock(group: g)
            if hasSuper {
                builder.add(first, 1, .superblock(group: g))
                let normal = sb.hasMetaBG ? min(gdtBlocks, UInt64(sb.firstMetaBlockGroup)) : gdtBlocks
                builder.add(first + 1, normal, .groupDescriptors(group: g))
                builder.add(first + 1 + normal, UInt64(sb.reservedGDTBlocks), .reservedGDT(group: g))
            }
            if sb.hasMetaBG {
                let index = g % perBlock
                if g / perBlock >= sb.firstMetaBlockGroup && (index == 0 || index == 1 || index == perBlock - 1) {
                    builder.add(first + (hasSuper ? 1 : 0), 1, .groupDescriptors(group: g))
                }
            }
            let d = fs.groups[Int(g)]
            builder.add(d.blockBitmap, 1, .blockBitmap(group: g))
            builder.add(d.inodeBitmap, 1, .inodeBitmap(group: g))
            builder.add(d.inodeTable, fs.inodeTableBlocks, .inodeTable(group: g))
        }
        if sb.mmpBlock != 0 && sb.mmpBlock < fs.blocksCount { builder.add(sb.mmpBlock, 1, .mmp) }

        var seen = Set<UInt32>()
        var seenXattr = Set<UInt64>()
        func addInode(_ inode: Inode, path: String?) {
            guard seen.insert(inode.number).inserted else { return }
            let isJournal = inode.number == sb.journalInode && sb.journalInode != 0
            let slot = builder.slot(isJournal ? .journal(inode: inode.number, fileBlock: 0)
                                              : .file(inode: inode.number, path: path, fileBlock: 0))
            for r in inode.runs { builder.add(r.physicalBlock, r.count, slot: slot, fileBlock: r.fileBlock) }
            if !inode.mappingBlocks.isEmpty {
                let kind: BlockOwner = inode.layout == .blockMap ? .indirect(inode: inode.number) : .extentTree(inode: inode.number)
                let s = builder.slot(kind)
                for b in inode.mappingBlocks { builder.add(b, 1, slot: s, fileBlock: 0) }
            }
            if inode.xattrBlock != 0 && inode.xattrBlock < fs.blocksCount && seenXattr.insert(inode.xattrBlock).inserted {
                builder.add(inode.xattrBlock, 1, .xattr(inode: inode.number))
            }
        }
        try fs.walk { entry throws(Ext4Error) in addInode(entry.inode, path: entry.path) }
        for n in 1..<sb.firstInode where !seen.contains(n) {
            let inode = try fs.inode(n)
            if inode.mode != 0 || !inode.runs.isEmpty || !inode.mappingBlocks.isEmpty { addInode(inode, path: nil) }
        }
        for n in try fs.allocatedInodes() where !seen.contains(n) {
            let inode = try fs.inode(n)
            if inode.isInUse { addInode(inode, path: nil) }
        }

        owners = builder.owners
        pieces = []
        conflictingBlocks = 0
        let freeSlot = builder.slot(.free)
        let unownedSlot = builder.slot(.allocatedUnowned)
        owners = builder.owners
        var sorted = builder.pieces.sorted { $0.start < $1.start }
        var cursor: UInt64 = 0
        var out: [Piece] = []
        out.reserveCapacity(sorted.count * 2 + 16)
        for i in sorted.indices {
            var p = sorted[i]
            if p.start < cursor {
                let overlap = min(cursor - p.start, p.count)
                conflictingBlocks += overlap
                p.start += overlap
                p.fileBlock += overlap
                p.count -= overlap
                if p.count == 0 { continue }
            }
            if p.start > cursor {
                try Self.fillGap(fs, cursor..<min(p.start, fs.blocksCount), free: freeSlot, unowned: unownedSlot, into: &out)
            }
            out.append(p)
            cursor = p.start + p.count
        }
        if cursor < fs.blocksCount {
            try Self.fillGap(fs, cursor..<fs.blocksCount, free: freeSlot, unowned: unownedSlot, into: &out)
        }
        sorted = []
        pieces = out
    }

    /// Splits a gap into free and allocated-but-unowned runs per the block bitmaps.
    private static func fillGap(_ fs: Ext4FileSystem, _ gap: Range<UInt64>, free: Int32, unowned: Int32,
                                into out: inout [Piece]) throws(Ext4Error) {
        func append(_ start: UInt64, _ count: UInt64, _ slot: Int32) {
            if let last = out.last, last.owner == slot, last.start + last.count == start {
                out[out.count - 1].count += count
            } else {
                out.append(Piece(start: start, count: count, fileBlock: 0, owner: slot))
            }
        }
        let sb = fs.superblock
        var b = gap.lowerBound
        while b < gap.upperBound {
            let g = UInt32((b - UInt64(sb.firstDataBlock)) / UInt64(sb.blocksPerGroup))
            let groupStart = fs.groupFirstBlock(g)
            let groupEnd = min(gap.upperBound, groupStart + fs.groupBlockCount(g))
            let d = fs.groups[Int(g)]
            if d.flags & GroupDescriptor.blockUninit != 0 {
                append(b, groupEnd - b, free)
                b = groupEnd
                continue
            }
            let bitmap = try fs.readBlock(d.blockBitmap)
            while b < groupEnd {
                let bit = Int(b - groupStart)
                let byte = bitmap[bit >> 3]
                if bit & 7 == 0 && b + 8 <= groupEnd && (byte == 0 || byte == 0xFF) {
                    append(b, 8, byte == 0 ? free : unowned)
                    b += 8
                } else {
                    append(b, 1, byte & (1 << (bit & 7)) != 0 ? unowned : free)
                    b += 1
                }
            }
        }
    }

    /// Number of runs in the map.
    public var runCount: Int { pieces.count }

    /// All runs in block order, covering `0..<blocksCount`.
    public var runs: [OwnedRun] { pieces.map { OwnedRun(start: $0.start, count: $0.count, owner: owner($0, at: $0.start)) } }

    private func owner(_ p: Piece, at block: UInt64) -> BlockOwner {
        switch owners[Int(p.owner)] {
        case let .file(i, path, _): return .file(inode: i, path: path, fileBlock: p.fileBlock + (block - p.start))
        case let .journal(i, _): return .journal(inode: i, fileBlock: p.fileBlock + (block - p.start))
        case let o: return o
        }
    }

    /// Index of the piece containing `block` (pieces cover every block).
    private func index(of block: UInt64) -> Int {
        var lo = 0, hi = pieces.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if pieces[mid].start <= block { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// The owner of one physical block.
    public func owner(ofBlock block: UInt64) -> BlockOwner {
        guard block < blocksCount, !pieces.isEmpty else { return .outsideFileSystem }
        return owner(pieces[index(of: block)], at: block)
    }

    /// The owners of a range of physical blocks, as runs clipped to the range.
    public func owners(of range: Range<UInt64>) -> [OwnedRun] {
        var out: [OwnedRun] = []
        guard !range.isEmpty else { return out }
        if range.lowerBound < blocksCount, !pieces.isEmpty {
            var i = index(of: range.lowerBound)
            while i < pieces.count && pieces[i].start < range.upperBound {
                let p = pieces[i]
                let from = max(p.start, range.lowerBound), to = min(p.start + p.count, range.upperBound)
                out.append(OwnedRun(start: from, count: to - from, owner: owner(p, at: from)))
                i += 1
            }
        }
        let past = max(range.lowerBound, blocksCount)
        if range.upperBound > past {
            out.append(OwnedRun(start: past, count: range.upperBound - past, owner: .outsideFileSystem))
        }
        return out
    }

    /// The owners of several block ranges (e.g. the changed blocks of a diff).
    public func owners(of ranges: [Range<UInt64>]) -> [OwnedRun] {
        ranges.flatMap { owners(of: $0) }
    }

    /// The owners of a byte range of the file system (e.g. sectors of a
    /// write): converted to the blocks it touches.
    public func owners(ofBytes range: Range<UInt64>) -> [OwnedRun] {
        guard !range.isEmpty else { return [] }
        let bs = UInt64(blockSize)
        return owners(of: range.lowerBound / bs..<(range.upperBound + bs - 1) / bs)
    }
}

/// Collects owned pieces before sorting.
private struct Builder {
    var owners: [BlockOwner] = []
    var pieces: [BlockOwnerMap.Piece] = []

    mutating func slot(_ owner: BlockOwner) -> Int32 {
        owners.append(owner)
        return Int32(owners.count - 1)
    }

    mutating func add(_ start: UInt64, _ count: UInt64, _ owner: BlockOwner) {
        guard count > 0 else { return }
        add(start, count, slot: slot(owner), fileBlock: 0)
    }

    mutating func add(_ start: UInt64, _ count: UInt64, slot: Int32, fileBlock: UInt64) {
        guard count > 0 else { return }
        pieces.append(BlockOwnerMap.Piece(start: start, count: count, fileBlock: fileBlock, owner: slot))
    }
}
