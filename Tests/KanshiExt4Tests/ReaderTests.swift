import Foundation
import Testing
@testable import KanshiExt4

let imageNames = Fixtures.specs.map(\.name)

func image(_ name: String) throws -> (Fixtures, TestImage) {
    let f = try Fixtures.get()
    return (f, f.images.first { $0.name == name }!)
}

@Suite(.enabled(if: Tools.available, Tools.missingReason), .serialized)
struct ReaderTests {
    @Test("every file, directory and symlink is found with its contents", arguments: imageNames)
    func treeMatchesSource(name: String) throws {
        let (f, img) = try image(name)
        let fs = try open(img)
        #expect(fs.blockSize == img.blockSize)
        let entries = try fs.files()
        var byPath: [String: FileEntry] = [:]
        for e in entries { byPath[e.path] = e }
        let expected = Set(["/", "/lost+found"] + (f.tree.files + f.tree.directories + Array(f.tree.symlinks.keys)).map { "/" + $0 })
        #expect(Set(byPath.keys) == expected)
        for rel in f.tree.files {
            let e = try #require(byPath["/" + rel])
            #expect(e.type == .regular)
            #expect(e.size == UInt64(f.tree.bytes(rel).count), "\(rel)")
            #expect(try fs.contents(of: e.inode) == f.tree.bytes(rel), "contents of \(rel) on \(name)")
        }
        for (rel, target) in f.tree.symlinks {
            let e = try #require(byPath["/" + rel])
            #expect(e.type == .symlink)
            #expect(try fs.symlinkTarget(of: e.inode) == target)
        }
        for rel in f.tree.directories { #expect(byPath["/" + rel]?.type == .directory) }
        // lookup agrees with the walk, read(path:) with the source.
        #expect(try fs.lookup(path: "/dir/a/b/c/deep.txt").number == byPath["/dir/a/b/c/deep.txt"]!.number)
        #expect(try fs.read(path: "/dir/mid.bin") == f.tree.bytes("dir/mid.bin"))
        #expect(try fs.lookup(path: "/dir/a/../a/b").number == byPath["/dir/a/b"]!.number)
        #expect(throws: Ext4Error.notFound(path: "/dir/nope")) { try fs.lookup(path: "/dir/nope") }
        #expect(throws: Ext4Error.notADirectory(path: "/small.txt")) { try fs.lookup(path: "/small.txt/x") }
        let htree = try fs.entries(ofDirectory: try fs.lookup(path: "/htree"))
        #expect(htree.count == 2002)
    }

    @Test("block lists and stat agree with debugfs", arguments: imageNames)
    func blocksMatchDebugfs(name: String) throws {
        let (_, img) = try image(name)
        let fs = try open(img)
        for path in ["/big.bin", "/sparse.bin", "/far.bin", "/dir/mid.bin", "/htree", "/dir/a/b/c/deep.txt",
                     "/links/long", "/links/short", "/small.txt", "/prealloc", "/", "/empty"] {
            let inode = try fs.lookup(path: path)
            if inode.layout == .fastSymlink {
                // debugfs prints the target's bytes as block numbers here.
                #expect(inode.runs.isEmpty && inode.mappingBlocks.isEmpty)
                continue
            }
            var ours = Set(inode.mappingBlocks)
            for r in inode.runs { for b in r.physicalBlock..<r.physicalBlock + r.count { ours.insert(b) } }
            let theirs = try Oracle.blocks(img.path, path)
            #expect(ours == theirs, "blocks of \(path) on \(name): \(ours.count) vs debugfs \(theirs.count)")
            let st = try Oracle.stat(img.path, path)
            #expect(st.inode == inode.number, "\(path)")
            #expect(st.size == inode.size, "\(path)")
            #expect(st.links == inode.linksCount, "\(path)")
            #expect(st.mode == inode.permissions, "\(path)")
        }
    }

    @Test("mapping shapes: deep extents, triple indirect, inline, fast symlinks, unwritten extents, htree")
    func layouts() throws {
        for name in ["ext4-4k", "ext4-1k"] {
            let fs = try open(try image(name).1)
            let sparse = try fs.lookup(path: "/sparse.bin")
            guard case .extents(let depth) = sparse.layout else { Issue.record("sparse.bin not extents"); continue }
            #expect(depth >= 2, "2000 extents need an index level below the root on \(name)")
            #expect(sparse.runs.count >= 2000, "one extent per island at least")
            let pre = try fs.lookup(path: "/prealloc")
            #expect(pre.runs.contains { $0.uninitialized })
            #expect(try fs.contents(of: pre).allSatisfy { $0 == 0 })
            #expect(try fs.lookup(path: "/htree").flags & Inode.indexFlag != 0)
            #expect(try fs.lookup(path: "/links/short").layout == .fastSymlink)
        }
        let ext2 = try open(try image("ext2-1k").1)
        let far = try ext2.lookup(path: "/far.bin")
        #expect(far.layout == .blockMap)
        #expect(far.mappingBlocks.count == 3, "one single, double and triple indirect block for a byte at 70 MiB")
        #expect(far.runs.last!.fileBlock == UInt64(70 << 20) / 1024)
        #expect(ext2.superblock.hasExtents == false)
        let inline = try open(try image("ext4-inline").1)
        #expect(try inline.lookup(path: "/small.txt").layout == .inline)
        #expect(try inline.lookup(path: "/dir/a/b/c").layout == .inline)
        #expect(try inline.lookup(path: "/small.txt").runs.isEmpty)
        let meta = try open(try image("ext4-metabg").1)
        #expect(meta.superblock.hasMetaBG)
        let ext3 = try open(try image("ext3-4k").1)
        #expect(ext3.superblock.journalInode == 8)
    }

    @Test("ncheck finds the same paths for the inodes", arguments: imageNames)
    func pathsMatchNcheck(name: String) throws {
        let (_, img) = try image(name)
        let fs = try open(img)
        let entries = try fs.files().filter { !$0.path.hasPrefix("/htree/") || $0.path.hasSuffix("7") }
        let theirs = try Oracle.ncheck(img.path, entries.map(\.number).filter { $0 != 2 })
        for e in entries where e.number != 2 {
            #expect(theirs[e.number]?.contains(e.path) == true, "ncheck \(e.number) on \(name): \(theirs[e.number] ?? [])")
        }
    }
}
