import Foundation
import Testing
@testable import KanshiExt4

@Suite(.enabled(if: Tools.available, Tools.missingReason), .serialized)
struct OwnerMapTests {
    @Test("the owner map covers every block, matches the bitmaps and icheck", arguments: imageNames)
    func ownerMapMatchesIcheck(name: String) throws {
        let (_, img) = try image(name)
        let fs = try open(img)
        let map = try BlockOwnerMap(fileSystem: fs)
        let runs = map.runs
        // Runs tile 0..<blocksCount.
        var next: UInt64 = 0
        for r in runs {
            #expect(r.start == next)
            next = r.start + r.count
        }
        #expect(next == fs.blocksCount)
        #expect(map.conflictingBlocks == 0)
        let free = runs.filter { $0.owner == .free }.reduce(0) { $0 + $1.count }
        let unowned = runs.filter { $0.owner == .allocatedUnowned }.reduce(0) { $0 + $1.count }
        #expect(unowned == 0, "every allocated block has an owner on \(name)")
        #expect(free == fs.superblock.freeBlocksCount, "free blocks on \(name)")
        #expect(map.owner(ofBlock: fs.blocksCount) == .outsideFileSystem)
        #expect(map.owner(ofBlock: fs.blockSize == 1024 ? 1 : 0) == .superblock(group: 0))

        // A file's blocks map back to it with the right file offset.
        let big = try fs.lookup(path: "/big.bin")
        for r in big.runs {
            #expect(map.owner(ofBlock: r.physicalBlock + r.count - 1)
                    == .file(inode: big.number, path: "/big.bin", fileBlock: r.fileBlock + r.count - 1))
        }
        let pieces = map.owners(of: big.runs[0].physicalBlock..<big.runs[0].physicalBlock + 3)
        #expect(pieces.first?.owner == .file(inode: big.number, path: "/big.bin", fileBlock: big.runs[0].fileBlock))

        // The journal and unreachable special inodes (quota) are named.
        if fs.superblock.journalInode != 0 {
            let j = try fs.inode(fs.superblock.journalInode)
            #expect(!j.runs.isEmpty)
            for r in j.runs { #expect(map.owner(ofBlock: r.physicalBlock) == .journal(inode: j.number, fileBlock: r.fileBlock)) }
        }
        if name == "ext4-quota" {
            let q = try fs.inode(3)
            #expect(!q.runs.isEmpty)
            for r in q.runs { #expect(map.owner(ofBlock: r.physicalBlock) == .file(inode: 3, path: nil, fileBlock: r.fileBlock)) }
        }

        // Sample blocks across the disk plus every mapping block, ask icheck.
        var sample = Set(stride(from: 0, to: fs.blocksCount, by: Int(max(1, fs.blocksCount / 1500))).map { $0 })
        for e in try fs.files() {
            sample.formUnion(e.inode.mappingBlocks)
            if let r = e.inode.runs.first { sample.insert(r.physicalBlock) }
            if e.inode.xattrBlock != 0 { sample.insert(e.inode.xattrBlock) }
        }
        let blocks = sample.sorted()
        let theirs = try Oracle.icheck(img.path, blocks)
        var mismatches: [String] = []
        for b in blocks {
            let expected: UInt32?
            switch map.owner(ofBlock: b) {
            case let .file(i, _, _), let .journal(i, _), let .extentTree(i), let .indirect(i), let .xattr(i): expected = i
            case .reservedGDT: expected = theirs[b] ?? nil  // icheck may attribute them to the resize inode 7
            default: expected = nil
            }
            if theirs[b] != .some(expected) { mismatches.append("block \(b): ours \(map.owner(ofBlock: b)), icheck \(String(describing: theirs[b]))") }
        }
        #expect(mismatches.isEmpty, "\(name): \(mismatches.prefix(10))")
        #expect(blocks.count > 100)
    }

    @Test("byte ranges and block ranges are clipped to the request")
    func rangeQueries() throws {
        let fs = try open(try image("ext4-4k").1)
        let map = try BlockOwnerMap(fileSystem: fs)
        let all = map.owners(of: 0..<fs.blocksCount + 10)
        #expect(all.reduce(0) { $0 + $1.count } == fs.blocksCount + 10)
        #expect(all.last?.owner == .outsideFileSystem)
        let bytes = map.owners(ofBytes: 4096 * 5 + 10..<4096 * 5 + 20)
        #expect(bytes.count == 1 && bytes[0].start == 5 && bytes[0].count == 1)
        #expect(map.owners(of: 10..<10).isEmpty)
    }
}
