/// One entry of a directory.
public struct DirectoryEntry: Sendable, Equatable {
    /// The name as stored (not necessarily UTF-8).
    public var nameBytes: [UInt8]
    /// The name decoded as UTF-8 (invalid bytes replaced).
    public var name: String { String(decoding: nameBytes, as: UTF8.self) }
    public var inode: UInt32
    /// The dirent file type byte (0 without the filetype feature).
    public var fileType: UInt8
}

/// A file reached from the root, with its path.
public struct FileEntry: Sendable, Equatable {
    /// Absolute path inside the file system ("/" for the root).
    public var path: String
    public var inode: Inode
    public var number: UInt32 { inode.number }
    public var type: FileType { inode.type }
    public var size: UInt64 { inode.size }
    /// Data block runs with their file offsets (`fileBlock * blockSize`).
    public var runs: [BlockRun] { inode.runs }
}

extension Ext4FileSystem {
    /// Root directory inode number.
    public static let rootInode: UInt32 = 2
    /// Longest path walked (in components); ext4 allows 4096-byte paths.
    static let maxPathDepth = 4096

    /// The entries of a directory, in on-disk order, including "." and "..".
    /// Hashed (htree) directories are read linearly: their index blocks look
    /// like one empty entry and contribute nothing.
    public func entries(ofDirectory dir: Inode) throws(Ext4Error) -> [DirectoryEntry] {
        guard dir.type == .directory else { throw .notADirectory(path: "inode \(dir.number)") }
        var out: [DirectoryEntry] = []
        if dir.layout == .inline {
            let (iBlock, extra) = try inlineParts(dir)
            // The first 4 bytes of i_block are the parent inode; dirents follow.
            let parent = LE(iBlock).u32(0)
            out.append(DirectoryEntry(nameBytes: [0x2E], inode: dir.number, fileType: 2))
            out.append(DirectoryEntry(nameBytes: [0x2E, 0x2E], inode: parent, fileType: 2))
            try parseDirents(Array(iBlock.dropFirst(4)), directory: dir.number, offset: dir.offset + 0x2C, into: &out)
            if !extra.bytes.isEmpty {
                try parseDirents(extra.bytes, directory: dir.number, offset: extra.offset, into: &out)
            }
            return out
        }
        let bs = UInt64(blockSize)
        let blocks = dir.size / bs + (dir.size % bs == 0 ? 0 : 1)
        for run in dir.runs where !run.uninitialized && run.fileBlock < blocks {
            for i in 0..<min(run.count, blocks - run.fileBlock) {
                let physical = run.physicalBlock + i
                try parseDirents(try readBlock(physical), directory: dir.number, offset: physical * bs, into: &out)
            }
        }
        return out
    }

    /// Decodes the dirents of one block (or inline area).
    func parseDirents(_ data: [UInt8], directory: UInt32, offset: UInt64, into out: inout [DirectoryEntry]) throws(Ext4Error) {
        let b = LE(data)
        var o = 0
        let fileType = superblock.hasFileType
        while o + 8 <= data.count {
            let inode = b.u32(o)
            var recLen = Int(b.u16(o + 4))
            if blockSize >= 65536 && (recLen == 65535 || recLen == 0) && o == 0 { recLen = 65536 }
            let nameLen = fileType ? Int(b.u8(o + 6)) : Int(b.u16(o + 6))
            let where_ = offset + UInt64(o)
            guard recLen >= 8 else {
                throw .corruptDirectoryEntry(directory: directory, offset: where_, reason: "rec_len \(recLen) is less than 8")
            }
            guard recLen % 4 == 0, o + recLen <= data.count else {
                throw .corruptDirectoryEntry(directory: directory, offset: where_,
                                             reason: "rec_len \(recLen) runs past the end of the block or is not a multiple of 4")
            }
            if inode != 0 {
                guard 8 + nameLen <= recLen, nameLen > 0 else {
                    throw .corruptDirectoryEntry(directory: directory, offset: where_,
                                                 reason: "name_len \(nameLen) does not fit rec_len \(recLen)")
                }
                guard inode <= superblock.inodesCount else {
                    throw .corruptDirectoryEntry(directory: directory, offset: where_,
                                                 reason: "inode \(inode) is past the inode count \(superblock.inodesCount)")
                }
                out.append(DirectoryEntry(nameBytes: Array(data[o + 8..<o + 8 + nameLen]), inode: inode,
                                          fileType: fileType ? b.u8(o + 7) : 0))
            }
            o += recLen
        }
    }

    /// Resolves an absolute path (symlinks are not followed; "." and ".." are
    /// ordinary entries) to its inode.
    public func lookup(path: String) throws(Ext4Error) -> Inode {
        var current = try inode(Self.rootInode)
        var walked = ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count <= Self.maxPathDepth else { throw .limitExceeded("path \(path) has more than \(Self.maxPathDepth) components") }
        for part in parts {
            guard current.type == .directory else { throw .notADirectory(path: walked.isEmpty ? "/" : walked) }
            walked += "/" + part
            let name = Array(part.utf8)
            guard let e = try entries(ofDirectory: current).first(where: { $0.nameBytes == name }) else {
                throw .notFound(path: walked)
            }
            current = try inode(e.inode)
        }
        return current
    }

    /// Every file, directory, symlink and special file reachable from the
    /// root, depth first, directories before their contents, with full paths.
    /// A hard-linked file appears once per path.
    public func files() throws(Ext4Error) -> [FileEntry] {
        var out: [FileEntry] = []
        try walk { out.append($0) }
        return out
    }

    /// Calls `body` for every entry reachable from the root (see `files()`).
    public func walk(_ body: (FileEntry) throws(Ext4Error) -> Void) throws(Ext4Error) {
        let root = try inode(Self.rootInode)
        guard root.type == .directory else { throw .notADirectory(path: "/ (inode 2)") }
        var visited: Set<UInt32> = [Self.rootInode]
        var stack: [(String, Inode, Int)] = [("", root, 0)]
        try body(FileEntry(path: "/", inode: root))
        var count = 0
        while let (prefix, dir, depth) = stack.popLast() {
            guard depth < Self.maxPathDepth else { throw .limitExceeded("directories nested deeper than \(Self.maxPathDepth) at \(prefix)") }
            var children: [(String, Inode)] = []
            for e in try entries(ofDirectory: dir) where e.nameBytes != [0x2E] && e.nameBytes != [0x2E, 0x2E] {
                count += 1
                guard count <= Int(superblock.inodesCount) * 4 + 1024 else {
                    throw .limitExceeded("more directory entries than the file system can hold")
                }
                let path = prefix + "/" + e.name
                let child = try inode(e.inode)
                try body(FileEntry(path: path, inode: child))
                if child.type == .directory {
                    guard visited.insert(e.inode).inserted else { throw .directoryLoop(inode: e.inode, path: path) }
                    children.append((path, child))
                }
            }
            for (p, c) in children.reversed() { stack.append((p, c, depth + 1)) }
        }
    }
}
