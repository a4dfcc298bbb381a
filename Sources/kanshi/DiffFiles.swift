import KanshiExt4
import KanshiHistory

/// What the changed blocks of a diff belong to in an ext4 file system.
struct DiffAttribution {
    struct Item {
        var what: String
        var kind: String
        var path: String?
        var inode: UInt32?
        var bytes: UInt64
    }
    var items: [Item]
    var note: String?

    /// Owners of `ranges` (4 KiB disk blocks) in the file system at `after`;
    /// blocks that are free then are looked up at `before` (deleted files).
    static func of(_ ranges: [ChangedRange], before: PastImage, after: PastImage) -> DiffAttribution {
        let fsAfter: Ext4FileSystem
        do { fsAfter = try Ext4FileSystem(reader: PastImageReader(past: after)) } catch {
            return DiffAttribution(items: [], note: "no ext2/3/4 file system at the later moment (\(error)); files not attributed")
        }
        guard let mapAfter = try? BlockOwnerMap(fileSystem: fsAfter) else {
            return DiffAttribution(items: [], note: "the file system's metadata could not be read; files not attributed")
        }
        let mapBefore = (try? Ext4FileSystem(reader: PastImageReader(past: before))).flatMap { try? BlockOwnerMap(fileSystem: $0) }
        let bs = UInt64(fsAfter.blockSize)
        var totals: [String: Item] = [:]
        var order: [String] = []
        func add(_ owner: BlockOwner, blocks: UInt64, deleted: Bool) {
            let (key, item) = describe(owner, deleted: deleted)
            if totals[key] == nil { order.append(key); totals[key] = item }
            totals[key]!.bytes += blocks * bs
        }
        for r in ranges {
            let fsRange = (r.firstBlock * 4096 / bs)..<((r.firstBlock + UInt64(r.blocks)) * 4096 / bs)
            for run in mapAfter.owners(of: fsRange) {
                if run.owner == .free, let mapBefore {
                    for old in mapBefore.owners(of: run.start..<run.start + run.count) {
                        add(old.owner, blocks: old.count, deleted: true)
                    }
                } else {
                    add(run.owner, blocks: run.count, deleted: false)
                }
            }
        }
        return DiffAttribution(items: order.map { totals[$0]! }.sorted { $0.bytes > $1.bytes }, note: nil)
    }

    static func describe(_ o: BlockOwner, deleted: Bool) -> (String, Item) {
        let gone = deleted ? " (freed since: deleted or moved)" : ""
        switch o {
        case .file(let inode, let path, _):
            let p = path ?? "<inode \(inode), no path>"
            return ("f\(inode)\(deleted)", Item(what: p + gone, kind: deleted ? "freed-file" : "file", path: path, inode: inode, bytes: 0))
        case .journal(let inode, _): return ("journal", Item(what: "file-system journal (inode \(inode))", kind: "journal", inode: inode, bytes: 0))
        case .inodeTable(let g): return ("it\(g)", Item(what: "inode table, group \(g)", kind: "metadata", bytes: 0))
        case .blockBitmap(let g): return ("bb\(g)", Item(what: "block bitmap, group \(g)", kind: "metadata", bytes: 0))
        case .inodeBitmap(let g): return ("ib\(g)", Item(what: "inode bitmap, group \(g)", kind: "metadata", bytes: 0))
        case .superblock(let g): return ("sb\(g)", Item(what: "superblock, group \(g)", kind: "metadata", bytes: 0))
        case .groupDescriptors(let g): return ("gd\(g)", Item(what: "group descriptors, group \(g)", kind: "metadata", bytes: 0))
        case .reservedGDT(let g): return ("rg\(g)", Item(what: "reserved GDT blocks, group \(g)", kind: "metadata", bytes: 0))
        case .extentTree(let i): return ("et\(i)", Item(what: "extent tree of inode \(i)", kind: "metadata", inode: i, bytes: 0))
        case .indirect(let i): return ("in\(i)", Item(what: "indirect blocks of inode \(i)", kind: "metadata", inode: i, bytes: 0))
        case .xattr(let i): return ("xa\(i)", Item(what: "extended attributes of inode \(i)", kind: "metadata", inode: i, bytes: 0))
        case .free: return ("free", Item(what: "free space" + (deleted ? "" : " (unallocated now)"), kind: "free", bytes: 0))
        case .allocatedUnowned: return ("unowned", Item(what: "allocated, owner not found", kind: "unknown", bytes: 0))
        case .bootBlock: return ("boot", Item(what: "boot block", kind: "metadata", bytes: 0))
        case .mmp: return ("mmp", Item(what: "MMP block", kind: "metadata", bytes: 0))
        case .outsideFileSystem: return ("outside", Item(what: "outside the file system", kind: "outside", bytes: 0))
        }
    }
}
