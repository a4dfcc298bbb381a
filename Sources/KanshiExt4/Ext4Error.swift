/// Everything that can go wrong reading an ext2/3/4 image. Each message names
/// the structure and, where there is one, the byte offset in the image.
public enum Ext4Error: Error, CustomStringConvertible, Sendable, Equatable {
    /// The image is smaller than the structure being read.
    case readPastEnd(structure: String, offset: UInt64, length: UInt64, imageSize: UInt64)
    /// The `ImageReader` failed.
    case io(structure: String, offset: UInt64, message: String)
    /// No ext superblock: the magic at byte 1080 is not 0xEF53.
    case notExtFileSystem(magic: UInt16)
    /// The superblock has values no valid file system has.
    case corruptSuperblock(reason: String)
    /// A feature this reader does not implement (e.g. "incompat compression").
    case unsupportedFeature(String)
    /// A group descriptor points outside the file system or is inconsistent.
    case corruptGroupDescriptor(group: UInt32, offset: UInt64, reason: String)
    /// An inode number outside `1...inodesCount`.
    case inodeOutOfRange(UInt32, inodesCount: UInt32)
    /// An extent-tree node of an inode is invalid (bad magic, counts, depth).
    case corruptExtentTree(inode: UInt32, offset: UInt64, reason: String)
    /// An indirect block map of an inode is invalid (a block referenced twice).
    case corruptBlockMap(inode: UInt32, offset: UInt64, reason: String)
    /// A block pointer points past the end of the file system.
    case blockPastEnd(inode: UInt32, block: UInt64, blocksCount: UInt64, structure: String)
    /// Inline data of an inode cannot be decoded.
    case corruptInlineData(inode: UInt32, reason: String)
    /// A directory entry is invalid (rec_len 0, runs past the block...).
    case corruptDirectoryEntry(directory: UInt32, offset: UInt64, reason: String)
    /// The internal journal cannot be replayed (bad jbd2 superblock or tag).
    case corruptJournal(offset: UInt64, reason: String)
    /// A directory is reachable from itself.
    case directoryLoop(inode: UInt32, path: String)
    /// More directory levels or entries than the file system can hold.
    case limitExceeded(String)
    /// `lookup(path:)` found no such entry.
    case notFound(path: String)
    /// A path component that must be a directory is not one.
    case notADirectory(path: String)
    /// The caller asked for something that has no data blocks (e.g. a device).
    case notAFile(inode: UInt32)

    /// A short stable code for logs and JSON output.
    public var code: String {
        switch self {
        case .readPastEnd: "read-past-end"
        case .io: "io"
        case .notExtFileSystem: "not-ext"
        case .corruptSuperblock: "corrupt-superblock"
        case .unsupportedFeature: "unsupported-feature"
        case .corruptGroupDescriptor: "corrupt-group-descriptor"
        case .inodeOutOfRange: "inode-out-of-range"
        case .corruptExtentTree: "corrupt-extent-tree"
        case .corruptBlockMap: "corrupt-block-map"
        case .blockPastEnd: "block-past-end"
        case .corruptInlineData: "corrupt-inline-data"
        case .corruptDirectoryEntry: "corrupt-directory-entry"
        case .corruptJournal: "corrupt-journal"
        case .directoryLoop: "directory-loop"
        case .limitExceeded: "limit-exceeded"
        case .notFound: "not-found"
        case .notADirectory: "not-a-directory"
        case .notAFile: "not-a-file"
        }
    }

    public var description: String {
        switch self {
        case let .readPastEnd(s, o, l, size):
            return "\(s): \(l) bytes at offset \(o) run past the end of the image (\(size) bytes); the image is truncated or the pointer is corrupt"
        case let .io(s, o, m):
            return "\(s): read at offset \(o) failed: \(m)"
        case let .notExtFileSystem(m):
            return "not an ext2/3/4 file system: superblock magic at offset 1080 is 0x\(String(m, radix: 16)), expected 0xef53"
        case let .corruptSuperblock(r):
            return "corrupt superblock (offset 1024): \(r)"
        case let .unsupportedFeature(f):
            return "unsupported ext4 feature: \(f)"
        case let .corruptGroupDescriptor(g, o, r):
            return "corrupt group descriptor of group \(g) at offset \(o): \(r)"
        case let .inodeOutOfRange(n, c):
            return "inode \(n) is out of range (the file system has inodes 1...\(c))"
        case let .corruptExtentTree(i, o, r):
            return "corrupt extent tree of inode \(i) at offset \(o): \(r)"
        case let .corruptBlockMap(i, o, r):
            return "corrupt block map of inode \(i) at offset \(o): \(r)"
        case let .blockPastEnd(i, b, c, s):
            return "\(s) of inode \(i) points to block \(b), past the end of the file system (\(c) blocks)"
        case let .corruptInlineData(i, r):
            return "corrupt inline data of inode \(i): \(r)"
        case let .corruptDirectoryEntry(d, o, r):
            return "corrupt directory entry in directory inode \(d) at offset \(o): \(r)"
        case let .corruptJournal(o, r):
            return "corrupt journal at offset \(o): \(r)"
        case let .directoryLoop(i, p):
            return "directory loop: directory inode \(i) is reached again at \(p)"
        case let .limitExceeded(r):
            return "limit exceeded: \(r)"
        case let .notFound(p):
            return "no such file or directory: \(p)"
        case let .notADirectory(p):
            return "not a directory: \(p)"
        case let .notAFile(i):
            return "inode \(i) is not a regular file, directory or symlink"
        }
    }
}
