/// # KanshiExt4: reading ext2/3/4 metadata from a raw image
///
/// `Ext4FileSystem` reads an ext2, ext3 or ext4 file system straight from the
/// bytes of an image, through an `ImageReader` (a file, a partition slice, or a
/// past view of a disk), without mounting it and without e2fsprogs. It is
/// read-only and never writes to the image.
///
/// ```swift
/// let fs = try Ext4FileSystem(reader: try FileImageReader(path: "disk.img"))
/// let inode = try fs.lookup(path: "/home/alice/report.docx")
/// let bytes = try fs.contents(of: inode)            // holes and unwritten extents as zeros
/// for file in try fs.files() { print(file.path, file.inode.runs) }
/// let map = try BlockOwnerMap(fileSystem: fs)       // physical block -> owner
/// print(map.owner(ofBlock: 123_456))                // .file(inode: 12, path: "/a", fileBlock: 7) ...
/// ```
///
/// ## What is understood
/// - Superblock (byte 1024, magic 0xEF53), block sizes 1 KiB–64 KiB, inode
///   sizes 128 and up, 32- and 64-byte group descriptors (`64bit`), `flex_bg`
///   (bitmaps and inode tables anywhere), `sparse_super`, `sparse_super2`,
///   `meta_bg` descriptor placement, `resize_inode` reserved GDT blocks, MMP.
/// - Inodes: mode, owner, size, links, times (with the extra epoch and
///   nanosecond bits), flags, xattr block; data mapped by extent trees of any
///   depth (index nodes included, unwritten extents flagged), by the classic
///   direct/indirect/double/triple block map, inline data (reported as
///   `.inline`, no blocks; contents decoded from `i_block` and the
///   `system.data` attribute), fast symlinks.
/// - Directories: linear dirents in every block, so hashed (htree)
///   directories are read completely (their index blocks hold one empty
///   dirent); inline directories; `lookup(path:)` and `files()` walk from the
///   root.
/// - `BlockOwnerMap`: for every block, the file (path, inode, file block) or
///   the metadata structure that owns it, or whether it is free per the block
///   bitmap. Built once, then answered by binary search over sorted runs.
///
/// ## Block owners
/// `BlockOwnerMap(fileSystem:)` reads the metadata once and answers
/// `owner(ofBlock:)`, `owners(of: Range<UInt64>)` and `owners(ofBytes:)` by
/// binary search. Owners are: the boot block (1 KiB blocks), superblock and
/// backups, group descriptor blocks (primary, backups, meta_bg copies),
/// reserved GDT blocks, block/inode bitmaps and inode tables per group, the
/// MMP block, the journal (`s_journal_inum`, with its block offset), file data
/// (`.file(inode:path:fileBlock:)`; directory blocks are the data of their
/// directory, so they appear as `.file` with the directory's path), extent
/// tree index/leaf blocks and indirect blocks of an inode, xattr blocks, and
/// otherwise `.free` or `.allocatedUnowned` per the block bitmap (a block
/// group with BLOCK_UNINIT counts as free outside its metadata). Inodes in use
/// that no path reaches (special inodes such as quota files, open-unlinked
/// orphans) are `.file` with a nil path. On a clean file system no block is
/// `.allocatedUnowned`, and the `.free` total equals the superblock's free
/// count; the tests check both against mke2fs and kernel-written images.
/// A 1 GiB image with 10 000 files maps in about 20 ms in a release build
/// (e2fsck -fn: 35 ms) and 0.25 s in a debug build.
///
/// ## Refused, with `Ext4Error.unsupportedFeature`
/// `compression`, `journal_dev` (an external journal device is not a file
/// system), `dirdata`, `encrypt`, `bigalloc`, and any unknown incompat bit.
/// A file system that needs journal recovery (`needs_recovery`: the image was
/// taken while it was mounted) has its committed jbd2 transactions (revoke
/// records honoured, escaped blocks restored) laid over the image in memory
/// before anything is parsed, as mounting would; pass `replayJournal: false`
/// to read the blocks as they are on disk. Fast-commit journals are refused.
///
/// ## Corrupt images
/// Every pointer is checked against the image and the block count before it
/// is followed; extent trees are limited to depth 5, indirect maps to three
/// levels, directory walks to `inodesCount` entries with a visited set, so a
/// corrupt or hostile image gives an `Ext4Error` naming the structure and the
/// byte offset, never a crash or an endless loop. Checksums (`metadata_csum`)
/// are not verified.
public final class Ext4FileSystem: Sendable {
    /// Where the bytes come from.
    public let reader: any ImageReader
    /// The primary superblock.
    public let superblock: Superblock
    /// One descriptor per block group.
    public let groups: [GroupDescriptor]

    /// Block size in bytes.
    public var blockSize: Int { Int(superblock.blockSize) }
    /// Number of blocks in the file system.
    public var blocksCount: UInt64 { superblock.blocksCount }

    /// Journal blocks laid over the image because the file system needed
    /// recovery (0 when the journal was clean or replay was not asked for).
    public let replayedJournalBlocks: Int

    /// Parses the superblock and the group descriptors. If the file system
    /// needs recovery (it was mounted when the image was taken) and
    /// `replayJournal` is true, committed journal transactions are laid over
    /// the image in memory first, as mounting would replay them; `reader`
    /// then is a `JournalOverlayReader`. The image itself is never written.
    public convenience init(reader: any ImageReader, replayJournal: Bool = true) throws(Ext4Error) {
        let (sb, groups) = try Self.parse(reader)
        if replayJournal && sb.needsRecovery && sb.journalInode != 0 {
            let raw = Ext4FileSystem(parsed: reader, sb, groups, replayed: 0)
            let replay = try JournalReplay(fileSystem: raw)
            if !replay.overlay.isEmpty {
                let overlay = JournalOverlayReader(base: reader, blockSize: raw.blockSize, overlay: replay.overlay)
                let (sb2, groups2) = try Self.parse(overlay)
                self.init(parsed: overlay, sb2, groups2, replayed: replay.overlay.count)
                return
            }
        }
        self.init(parsed: reader, sb, groups, replayed: 0)
    }

    private init(parsed reader: any ImageReader, _ sb: Superblock, _ groups: [GroupDescriptor], replayed: Int) {
        self.reader = reader
        self.superblock = sb
        self.groups = groups
        self.replayedJournalBlocks = replayed
    }

    private static func parse(_ reader: any ImageReader) throws(Ext4Error) -> (Superblock, [GroupDescriptor]) {
        guard reader.size >= 2048 else {
            throw .readPastEnd(structure: "superblock", offset: 1024, length: 1024, imageSize: reader.size)
        }
        let sb = try Superblock(Self.read(reader, structure: "superblock", offset: 1024, count: 1024))
        let (end, overflow) = sb.blocksCount.multipliedReportingOverflow(by: UInt64(sb.blockSize))
        guard !overflow, end <= reader.size else {
            throw .readPastEnd(structure: "file system (s_blocks_count \(sb.blocksCount))", offset: 0,
                               length: end, imageSize: reader.size)
        }
        var groups: [GroupDescriptor] = []
        groups.reserveCapacity(Int(sb.groupCount))
        let descSize = Int(sb.descriptorSize)
        var block: [UInt8] = []
        var loadedBlock: UInt64 = .max
        for g in 0..<sb.groupCount {
            let (blockNo, index) = Self.descriptorLocation(sb, group: g)
            guard blockNo < sb.blocksCount else {
                throw .corruptGroupDescriptor(group: g, offset: blockNo * UInt64(sb.blockSize),
                                              reason: "descriptor block \(blockNo) is past the end")
            }
            if blockNo != loadedBlock {
                block = try Self.read(reader, structure: "group descriptor block", offset: blockNo * UInt64(sb.blockSize),
                                      count: Int(sb.blockSize))
                loadedBlock = blockNo
            }
            let offset = blockNo * UInt64(sb.blockSize) + UInt64(index * descSize)
            let d = GroupDescriptor(LE(Array(block[index * descSize..<(index + 1) * descSize])), is64: descSize >= 64)
            let tableBlocks = (UInt64(sb.inodesPerGroup) * UInt64(sb.inodeSize) + UInt64(sb.blockSize) - 1) / UInt64(sb.blockSize)
            for (what, b, n) in [("block bitmap", d.blockBitmap, UInt64(1)), ("inode bitmap", d.inodeBitmap, 1),
                                 ("inode table", d.inodeTable, tableBlocks)] {
                guard b > 0, b < sb.blocksCount, b + n <= sb.blocksCount else {
                    throw .corruptGroupDescriptor(group: g, offset: offset, reason: "\(what) at block \(b) is outside 1..<\(sb.blocksCount)")
                }
            }
            groups.append(d)
        }
        return (sb, groups)
    }

    /// The block holding group `g`'s descriptor, and its index in that block.
    static func descriptorLocation(_ sb: Superblock, group g: UInt32) -> (block: UInt64, index: Int) {
        let perBlock = UInt32(sb.blockSize) / UInt32(sb.descriptorSize)
        let gdtBlock = g / perBlock
        let index = Int(g % perBlock)
        if !sb.hasMetaBG || gdtBlock < sb.firstMetaBlockGroup {
            return (UInt64(sb.firstDataBlock) + 1 + UInt64(gdtBlock), index)
        }
        let first = gdtBlock * perBlock
        return (groupFirstBlock(sb, first) + (sb.hasSuperblock(group: first) ? 1 : 0), index)
    }

    static func groupFirstBlock(_ sb: Superblock, _ g: UInt32) -> UInt64 {
        UInt64(sb.firstDataBlock) + UInt64(g) * UInt64(sb.blocksPerGroup)
    }

    /// First block of group `g`.
    public func groupFirstBlock(_ g: UInt32) -> UInt64 { Self.groupFirstBlock(superblock, g) }

    /// Number of blocks in group `g` (the last group may be short).
    public func groupBlockCount(_ g: UInt32) -> UInt64 {
        min(UInt64(superblock.blocksPerGroup), blocksCount - groupFirstBlock(g))
    }

    /// Blocks of one inode table.
    public var inodeTableBlocks: UInt64 {
        (UInt64(superblock.inodesPerGroup) * UInt64(superblock.inodeSize) + UInt64(blockSize) - 1) / UInt64(blockSize)
    }

    // MARK: Reading bytes

    static func read(_ reader: any ImageReader, structure: @autoclosure () -> String, offset: UInt64,
                     count: Int) throws(Ext4Error) -> [UInt8] {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= reader.size else {
            throw .readPastEnd(structure: structure(), offset: offset, length: UInt64(count), imageSize: reader.size)
        }
        var out = [UInt8](repeating: 0, count: count)
        do {
            try out.withUnsafeMutableBytes { try reader.read(into: $0, at: offset) }
        } catch {
            throw .io(structure: structure(), offset: offset, message: "\(error)")
        }
        return out
    }

    /// Reads `count` bytes at `offset`, naming `structure` in any error.
    func read(_ structure: @autoclosure () -> String, offset: UInt64, count: Int) throws(Ext4Error) -> [UInt8] {
        try Self.read(reader, structure: structure(), offset: offset, count: count)
    }

    /// Reads one block.
    public func readBlock(_ block: UInt64) throws(Ext4Error) -> [UInt8] {
        guard block < blocksCount else {
            throw .readPastEnd(structure: "block \(block)", offset: block &* UInt64(blockSize),
                               length: UInt64(blockSize), imageSize: reader.size)
        }
        return try read("block \(block)", offset: block * UInt64(blockSize), count: blockSize)
    }

    // MARK: Inodes

    /// Byte offset of inode `number` in the image.
    public func inodeOffset(_ number: UInt32) throws(Ext4Error) -> UInt64 {
        guard number >= 1, number <= superblock.inodesCount else {
            throw .inodeOutOfRange(number, inodesCount: superblock.inodesCount)
        }
        let g = Int((number - 1) / superblock.inodesPerGroup)
        guard g < groups.count else { throw .inodeOutOfRange(number, inodesCount: superblock.inodesCount) }
        let index = UInt64((number - 1) % superblock.inodesPerGroup)
        return groups[g].inodeTable * UInt64(blockSize) + index * UInt64(superblock.inodeSize)
    }

    /// Reads and decodes inode `number`, including its block runs.
    public func inode(_ number: UInt32) throws(Ext4Error) -> Inode {
        let offset = try inodeOffset(number)
        let raw = try read("inode \(number)", offset: offset, count: Int(superblock.inodeSize))
        return try decodeInode(number: number, offset: offset, raw: raw)
    }

    /// The inode numbers that the inode bitmaps mark in use.
    public func allocatedInodes() throws(Ext4Error) -> [UInt32] {
        var out: [UInt32] = []
        let ipg = superblock.inodesPerGroup
        for (g, d) in groups.enumerated() {
            if d.flags & GroupDescriptor.inodeUninit != 0 { continue }
            let bitmap = try readBlock(d.inodeBitmap)
            for i in 0..<Int(ipg) where bitmap[i >> 3] & (1 << (i & 7)) != 0 {
                let n = UInt64(g) * UInt64(ipg) + UInt64(i) + 1
                if n <= UInt64(superblock.inodesCount) { out.append(UInt32(n)) }
            }
        }
        return out
    }
}

/// One block-group descriptor.
public struct GroupDescriptor: Sendable, Equatable {
    public var blockBitmap: UInt64
    public var inodeBitmap: UInt64
    public var inodeTable: UInt64
    public var freeBlocksCount: UInt32
    public var freeInodesCount: UInt32
    public var usedDirectoriesCount: UInt32
    public var flags: UInt16
    public var inodeTableUnused: UInt32

    /// The inode table and bitmap are not initialised.
    public static let inodeUninit: UInt16 = 0x1
    /// The block bitmap is not initialised (only group metadata is in use).
    public static let blockUninit: UInt16 = 0x2

    init(_ b: LE, is64: Bool) {
        blockBitmap = UInt64(b.u32(0x00)) | (is64 ? UInt64(b.u32(0x20)) << 32 : 0)
        inodeBitmap = UInt64(b.u32(0x04)) | (is64 ? UInt64(b.u32(0x24)) << 32 : 0)
        inodeTable = UInt64(b.u32(0x08)) | (is64 ? UInt64(b.u32(0x28)) << 32 : 0)
        freeBlocksCount = UInt32(b.u16(0x0C)) | (is64 ? UInt32(b.u16(0x2C)) << 16 : 0)
        freeInodesCount = UInt32(b.u16(0x0E)) | (is64 ? UInt32(b.u16(0x2E)) << 16 : 0)
        usedDirectoriesCount = UInt32(b.u16(0x10)) | (is64 ? UInt32(b.u16(0x30)) << 16 : 0)
        flags = b.u16(0x12)
        inodeTableUnused = UInt32(b.u16(0x1C)) | (is64 ? UInt32(b.u16(0x32)) << 16 : 0)
    }
}
