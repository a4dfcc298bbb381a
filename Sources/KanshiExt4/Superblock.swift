/// The fields of the ext2/3/4 superblock (1024 bytes at byte 1024) that a
/// metadata reader needs.
public struct Superblock: Sendable, Equatable {
    public var inodesCount: UInt32
    public var blocksCount: UInt64
    public var freeBlocksCount: UInt64
    public var freeInodesCount: UInt32
    public var firstDataBlock: UInt32
    public var blockSize: UInt32
    public var blocksPerGroup: UInt32
    public var inodesPerGroup: UInt32
    public var revisionLevel: UInt32
    public var firstInode: UInt32
    public var inodeSize: UInt16
    public var featureCompat: UInt32
    public var featureIncompat: UInt32
    public var featureROCompat: UInt32
    public var uuid: [UInt8]
    public var volumeName: String
    public var reservedGDTBlocks: UInt16
    public var journalInode: UInt32
    public var descriptorSize: UInt16
    public var firstMetaBlockGroup: UInt32
    public var logGroupsPerFlex: UInt8
    public var mmpBlock: UInt64
    /// The two groups holding backups with sparse_super2.
    public var backupBlockGroups: [UInt32]

    // Feature bits (see the kernel's fs/ext4/ext4.h).
    public enum Compat {
        public static let hasJournal: UInt32 = 0x4
        public static let resizeInode: UInt32 = 0x10
        public static let dirIndex: UInt32 = 0x20
        public static let sparseSuper2: UInt32 = 0x200
    }
    public enum Incompat {
        public static let compression: UInt32 = 0x1
        public static let fileType: UInt32 = 0x2
        public static let recover: UInt32 = 0x4
        public static let journalDevice: UInt32 = 0x8
        public static let metaBG: UInt32 = 0x10
        public static let extents: UInt32 = 0x40
        public static let is64Bit: UInt32 = 0x80
        public static let mmp: UInt32 = 0x100
        public static let flexBG: UInt32 = 0x200
        public static let eaInode: UInt32 = 0x400
        public static let dirData: UInt32 = 0x1000
        public static let csumSeed: UInt32 = 0x2000
        public static let largeDir: UInt32 = 0x4000
        public static let inlineData: UInt32 = 0x8000
        public static let encrypt: UInt32 = 0x10000
        public static let casefold: UInt32 = 0x20000
        /// What this reader understands.
        static let supported: UInt32 = fileType | recover | metaBG | extents | is64Bit | mmp | flexBG
            | eaInode | csumSeed | largeDir | inlineData | casefold
        static let names: [(UInt32, String)] = [
            (compression, "compression"), (journalDevice, "journal_dev (external journal device, not a file system)"),
            (dirData, "dirdata"), (encrypt, "encrypt"),
        ]
    }
    public enum ROCompat {
        public static let sparseSuper: UInt32 = 0x1
        public static let largeFile: UInt32 = 0x2
        public static let hugeFile: UInt32 = 0x8
        public static let gdtCsum: UInt32 = 0x10
        public static let bigalloc: UInt32 = 0x200
        public static let metadataCsum: UInt32 = 0x400
    }

    /// Decodes and validates the 1024 bytes of a superblock.
    init(_ raw: [UInt8]) throws(Ext4Error) {
        let b = LE(raw)
        let magic = b.u16(0x38)
        guard magic == 0xEF53 else { throw .notExtFileSystem(magic: magic) }
        inodesCount = b.u32(0x00)
        featureCompat = b.u32(0x5C)
        featureIncompat = b.u32(0x60)
        featureROCompat = b.u32(0x64)
        let is64 = featureIncompat & Incompat.is64Bit != 0
        blocksCount = UInt64(b.u32(0x04)) | (is64 ? UInt64(b.u32(0x150)) << 32 : 0)
        freeBlocksCount = UInt64(b.u32(0x0C)) | (is64 ? UInt64(b.u32(0x158)) << 32 : 0)
        freeInodesCount = b.u32(0x10)
        firstDataBlock = b.u32(0x14)
        let logBlock = b.u32(0x18)
        guard logBlock <= 6 else { throw .corruptSuperblock(reason: "s_log_block_size \(logBlock) (block size over 64 KiB)") }
        blockSize = 1024 << logBlock
        blocksPerGroup = b.u32(0x20)
        inodesPerGroup = b.u32(0x28)
        revisionLevel = b.u32(0x4C)
        if revisionLevel == 0 {
            firstInode = 11
            inodeSize = 128
        } else {
            firstInode = b.u32(0x54)
            inodeSize = b.u16(0x58)
        }
        uuid = b.slice(0x68, 16)
        let nameBytes = b.slice(0x78, 16).prefix { $0 != 0 }
        volumeName = String(decoding: nameBytes, as: UTF8.self)
        reservedGDTBlocks = b.u16(0xCE)
        journalInode = featureCompat & Compat.hasJournal != 0 ? b.u32(0xE0) : 0
        descriptorSize = is64 ? b.u16(0xFE) : 32
        firstMetaBlockGroup = b.u32(0x104)
        logGroupsPerFlex = b.u8(0x174)
        mmpBlock = featureIncompat & Incompat.mmp != 0 ? b.u64(0x168) : 0
        backupBlockGroups = [b.u32(0x24C), b.u32(0x250)]

        let unsupported = featureIncompat & ~Incompat.supported
        if unsupported != 0 {
            let named = Incompat.names.filter { unsupported & $0.0 != 0 }.map(\.1)
            let desc = named.isEmpty ? "incompat flags 0x\(String(unsupported, radix: 16))" : "incompat " + named.joined(separator: ", ")
            throw .unsupportedFeature(desc)
        }
        if featureROCompat & ROCompat.bigalloc != 0 {
            throw .unsupportedFeature("ro_compat bigalloc (cluster size differs from block size)")
        }
        guard blocksPerGroup > 0, blocksPerGroup <= 8 * blockSize else {
            throw .corruptSuperblock(reason: "s_blocks_per_group \(blocksPerGroup) (block size \(blockSize))")
        }
        guard inodesPerGroup > 0, inodesPerGroup <= 8 * blockSize else {
            throw .corruptSuperblock(reason: "s_inodes_per_group \(inodesPerGroup)")
        }
        guard inodeSize >= 128, inodeSize <= blockSize, inodeSize & (inodeSize - 1) == 0 else {
            throw .corruptSuperblock(reason: "s_inode_size \(inodeSize)")
        }
        guard blocksCount > UInt64(firstDataBlock), firstDataBlock <= 1 else {
            throw .corruptSuperblock(reason: "s_blocks_count \(blocksCount), s_first_data_block \(firstDataBlock)")
        }
        guard is64 ? (descriptorSize >= 64 && descriptorSize <= 1024 && descriptorSize & (descriptorSize - 1) == 0) : true else {
            throw .corruptSuperblock(reason: "s_desc_size \(descriptorSize) with 64bit")
        }
        guard firstInode >= 11, firstInode <= inodesCount else {
            throw .corruptSuperblock(reason: "s_first_ino \(firstInode)")
        }
    }

    /// Number of block groups.
    public var groupCount: UInt32 {
        let span = blocksCount - UInt64(firstDataBlock)
        return UInt32(clamping: span / UInt64(blocksPerGroup) + (span % UInt64(blocksPerGroup) == 0 ? 0 : 1))
    }

    public var hasExtents: Bool { featureIncompat & Incompat.extents != 0 }
    public var hasFileType: Bool { featureIncompat & Incompat.fileType != 0 }
    public var hasMetaBG: Bool { featureIncompat & Incompat.metaBG != 0 }
    public var hasFlexBG: Bool { featureIncompat & Incompat.flexBG != 0 }
    public var hasInlineData: Bool { featureIncompat & Incompat.inlineData != 0 }
    public var needsRecovery: Bool { featureIncompat & Incompat.recover != 0 }
    public var hasSparseSuper: Bool { featureROCompat & ROCompat.sparseSuper != 0 }
    public var hasSparseSuper2: Bool { featureCompat & Compat.sparseSuper2 != 0 }
    public var hasChecksums: Bool { featureROCompat & (ROCompat.metadataCsum | ROCompat.gdtCsum) != 0 }

    /// Whether group `g` holds a superblock (primary or backup) and, outside
    /// meta_bg, a copy of the group descriptor table.
    public func hasSuperblock(group g: UInt32) -> Bool {
        if g == 0 { return true }
        if hasSparseSuper2 { return backupBlockGroups.contains(g) }
        if g <= 1 || !hasSparseSuper { return true }
        if g & 1 == 0 { return false }
        for base: UInt32 in [3, 5, 7] {
            var p = base
            while p < g { p = p.multipliedReportingOverflow(by: base).overflow ? UInt32.max : p * base }
            if p == g { return true }
        }
        return false
    }
}
