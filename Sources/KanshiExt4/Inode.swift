/// A contiguous piece of a file: `count` blocks at file block `fileBlock`
/// stored at physical block `physicalBlock`.
public struct BlockRun: Sendable, Equatable, Hashable {
    /// First logical block (block index in the file).
    public var fileBlock: UInt64
    /// First physical block in the file system.
    public var physicalBlock: UInt64
    /// Number of blocks.
    public var count: UInt64
    /// Allocated but never written (ext4 unwritten extent): reads as zeros.
    public var uninitialized: Bool

    public init(fileBlock: UInt64, physicalBlock: UInt64, count: UInt64, uninitialized: Bool = false) {
        self.fileBlock = fileBlock
        self.physicalBlock = physicalBlock
        self.count = count
        self.uninitialized = uninitialized
    }
}

/// What kind of object an inode is (the top bits of `i_mode`).
public enum FileType: Sendable, Equatable {
    case regular, directory, symlink, characterDevice, blockDevice, fifo, socket, unknown

    init(mode: UInt16) {
        switch mode & 0xF000 {
        case 0x8000: self = .regular
        case 0x4000: self = .directory
        case 0xA000: self = .symlink
        case 0x2000: self = .characterDevice
        case 0x6000: self = .blockDevice
        case 0x1000: self = .fifo
        case 0xC000: self = .socket
        default: self = .unknown
        }
    }
}

/// A time stamp with the ext4 extra bits applied.
public struct InodeTime: Sendable, Equatable, Hashable {
    /// Seconds since the Unix epoch.
    public var seconds: Int64
    public var nanoseconds: UInt32
}

/// How an inode maps its data.
public enum DataLayout: Sendable, Equatable {
    /// An extent tree (ext4), of the given depth.
    case extents(depth: Int)
    /// The classic direct/indirect/double/triple block map (ext2/3).
    case blockMap
    /// Data stored in the inode itself (inline_data); no blocks.
    case inline
    /// A symlink whose target is stored in the inode; no blocks.
    case fastSymlink
    /// No data (device, fifo, socket).
    case none

    /// Whether the data is mapped by an extent tree.
    public var isExtents: Bool { if case .extents = self { true } else { false } }
}

/// One decoded inode and its block mapping.
public struct Inode: Sendable, Equatable {
    public var number: UInt32
    /// Byte offset of the on-disk inode in the image.
    public var offset: UInt64
    public var mode: UInt16
    public var type: FileType
    /// Permission bits (lower 12 bits of the mode).
    public var permissions: UInt16 { mode & 0o7777 }
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var linksCount: UInt16
    /// `i_blocks` in 512-byte sectors (or file-system blocks with HUGE_FILE_FL).
    public var sectors: UInt64
    public var flags: UInt32
    public var accessTime: InodeTime
    public var changeTime: InodeTime
    public var modificationTime: InodeTime
    public var creationTime: InodeTime?
    public var deletionTime: UInt32
    public var generation: UInt32
    /// Extended-attribute block (`i_file_acl`), 0 if none.
    public var xattrBlock: UInt64
    public var layout: DataLayout
    /// Data blocks, sorted by file block; holes are absent.
    public var runs: [BlockRun]
    /// Blocks holding the mapping itself: extent-tree index/leaf blocks or
    /// indirect blocks, sorted.
    public var mappingBlocks: [UInt64]
    /// The raw inode (`inodeSize` bytes), for inline data and symlink targets.
    public var raw: [UInt8]

    public static let extentsFlag: UInt32 = 0x80000
    public static let inlineDataFlag: UInt32 = 0x1000_0000
    public static let indexFlag: UInt32 = 0x1000
    public static let hugeFileFlag: UInt32 = 0x40000

    /// Whether the inode is in use (has a mode and has not been deleted).
    public var isInUse: Bool { mode != 0 && (linksCount > 0 || deletionTime == 0) }
    /// Number of data blocks mapped.
    public var dataBlockCount: UInt64 { runs.reduce(0) { $0 + $1.count } }
}
