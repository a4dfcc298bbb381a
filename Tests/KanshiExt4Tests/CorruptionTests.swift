import Foundation
import Testing
@testable import KanshiExt4

/// A small image held in memory so tests can damage it.
struct SmallImage {
    var bytes: [UInt8]
    var fs: Ext4FileSystem { get throws { try Ext4FileSystem(reader: MemoryImageReader(bytes: bytes)) } }

    /// 8 MiB, a fragmented file (extent index node), nested dirs, 300-entry directory.
    static func make(blockSize: Int, extraArgs: [String] = []) throws -> SmallImage {
        let dir = TempDir()
        let src = dir.path + "/src"
        mkdirs(src + "/dir/sub")
        mkdirs(src + "/many")
        writeFile(src + "/f.txt", Array("small file\n".utf8))
        writeFile(src + "/dir/sub/x.txt", pseudoRandom(5000, seed: 3))
        writeSparseIslands(src + "/frag.bin", count: 120, island: blockSize, stride: 2 * blockSize)
        for i in 0..<300 { writeFile(src + "/many/\(i)", Array("\(i)".utf8)) }
        let img = dir.path + "/small.img"
        try run(Tools.mkfs!, ["-q", "-F", "-t", "ext4", "-b", "\(blockSize)"] + extraArgs + ["-d", src, img, "8M"])
        try fsckOptimizeDirectories(img)
        return SmallImage(bytes: [UInt8](FileManager.default.contents(atPath: img)!))
    }

    mutating func put32(_ offset: UInt64, _ v: UInt32) {
        for i in 0..<4 { bytes[Int(offset) + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
    mutating func put16(_ offset: UInt64, _ v: UInt16) {
        for i in 0..<2 { bytes[Int(offset) + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }
}

/// Everything a caller might do with an image; must throw or succeed, never crash or hang.
func exerciseEverything(_ reader: any ImageReader) -> Ext4Error? {
    do {
        let fs = try Ext4FileSystem(reader: reader)
        let files = try fs.files()
        for f in files where f.type == .regular || f.type == .symlink {
            _ = try fs.contents(of: f.inode, limit: 1 << 20)
        }
        _ = try BlockOwnerMap(fileSystem: fs)
        _ = try fs.lookup(path: "/dir/sub/x.txt")
        return nil
    } catch {
        return error
    }
}

@Suite(.enabled(if: Tools.available, Tools.missingReason))
struct CorruptionTests {
    @Test("zeros are not an ext file system")
    func zeros() {
        #expect(throws: Ext4Error.notExtFileSystem(magic: 0)) {
            try Ext4FileSystem(reader: MemoryImageReader(bytes: [UInt8](repeating: 0, count: 1 << 20)))
        }
        #expect(throws: Ext4Error.readPastEnd(structure: "superblock", offset: 1024, length: 1024, imageSize: 100)) {
            try Ext4FileSystem(reader: MemoryImageReader(bytes: [UInt8](repeating: 0, count: 100)))
        }
    }

    @Test("a truncated image is refused up front")
    func truncated() throws {
        let img = try SmallImage.make(blockSize: 4096)
        let cut = MemoryImageReader(bytes: Array(img.bytes.prefix(1 << 20)))
        do {
            _ = try Ext4FileSystem(reader: cut)
            Issue.record("truncated image accepted")
        } catch {
            guard case .readPastEnd(_, _, let length, let size) = error else { Issue.record("\(error)"); return }
            #expect(length == 8 << 20 && size == 1 << 20)
            #expect(error.description.contains("truncated"))
        }
        // A view that lies about nothing but stops early: every read past it fails cleanly.
        let slice = SliceImageReader(base: MemoryImageReader(bytes: img.bytes), offset: 0, size: 1 << 20)
        #expect(exerciseEverything(slice) != nil)
    }

    @Test("bad magic and unsupported features are named")
    func superblockDamage() throws {
        var img = try SmallImage.make(blockSize: 1024)
        let good = img.bytes
        img.bytes[1080] = 0x00
        #expect(throws: Ext4Error.notExtFileSystem(magic: 0xEF00)) { try img.fs }
        img.bytes = good
        img.put32(1024 + 0x60, LE(good).u32(1024 + 0x60) | 0x1)
        #expect(throws: Ext4Error.unsupportedFeature("incompat compression")) { try img.fs }
        img.bytes = good
        img.put32(1024 + 0x60, LE(good).u32(1024 + 0x60) | 0x10000)
        #expect(throws: Ext4Error.unsupportedFeature("incompat encrypt")) { try img.fs }
        img.bytes = good
        img.put32(1024 + 0x20, 0)  // s_blocks_per_group
        #expect { try img.fs } throws: { ($0 as? Ext4Error)?.description.contains("s_blocks_per_group") == true }
    }

    @Test("a corrupt extent header names the inode and offset", arguments: [1024, 4096])
    func extentDamage(blockSize: Int) throws {
        var img = try SmallImage.make(blockSize: blockSize)
        let fs = try img.fs
        let frag = try fs.lookup(path: "/frag.bin")
        guard case .extents(let depth) = frag.layout, depth >= 1 else { Issue.record("frag.bin has no index node"); return }
        let good = img.bytes
        // Root header in the inode.
        img.put16(frag.offset + 0x28, 0x1234)
        #expect(throws: Ext4Error.corruptExtentTree(inode: frag.number, offset: frag.offset + 0x28,
                                                    reason: "bad extent header magic 0x1234 (expected 0xf30a)")) {
            try img.fs.inode(frag.number)
        }
        #expect(exerciseEverything(MemoryImageReader(bytes: img.bytes)) != nil)
        // A leaf block.
        img.bytes = good
        let leaf = frag.mappingBlocks[0] * UInt64(blockSize)
        img.put16(leaf, 0)
        #expect(throws: Ext4Error.corruptExtentTree(inode: frag.number, offset: leaf,
                                                    reason: "bad extent header magic 0x0 (expected 0xf30a)")) {
            try img.fs.inode(frag.number)
        }
        // Entry count above the node's room.
        img.bytes = good
        img.put16(leaf + 2, 60000)
        #expect { try img.fs.inode(frag.number) } throws: { ($0 as? Ext4Error)?.description.contains("entries") == true }
        // A leaf extent pointing past the end of the file system.
        img.bytes = good
        img.put32(leaf + 12 + 8, 0xFFFF_FF00)
        #expect { try img.fs.inode(frag.number) } throws: {
            guard case .blockPastEnd(let i, _, _, _)? = $0 as? Ext4Error else { return false }
            return i == frag.number
        }
        // An index entry pointing back at the root's own child (a cycle).
        img.bytes = good
        img.put16(leaf + 6, 1)  // leaf claims depth 1 ...
        img.put32(leaf + 12 + 4, UInt32(frag.mappingBlocks[0]))  // ... and points at itself
        #expect(throws: Ext4Error.self) { try img.fs.inode(frag.number) }
    }

    @Test("rec_len 0 and directory loops are errors, not hangs")
    func directoryDamage() throws {
        var img = try SmallImage.make(blockSize: 4096)
        let fs = try img.fs
        let dir = try fs.lookup(path: "/dir/sub")
        let block = dir.runs[0].physicalBlock * 4096
        let good = img.bytes
        img.put16(block + 4, 0)  // rec_len of "."
        #expect(throws: Ext4Error.corruptDirectoryEntry(directory: dir.number, offset: block, reason: "rec_len 0 is less than 8")) {
            try img.fs.lookup(path: "/dir/sub/x.txt")
        }
        #expect(exerciseEverything(MemoryImageReader(bytes: img.bytes)) != nil)
        // rec_len past the block.
        img.bytes = good
        img.put16(block + 4, 8000)
        #expect { try img.fs.entries(ofDirectory: dir) } throws: { ($0 as? Ext4Error)?.description.contains("rec_len 8000") == true }
        // x.txt's entry now names /dir: /dir/sub/x.txt is /dir again.
        img.bytes = good
        let parent = try fs.lookup(path: "/dir")
        let entries = LE(Array(good[Int(block)..<Int(block) + 4096]))
        var o = 0
        while o < 4096 {
            if entries.u8(o + 6) == 5 && entries.slice(o + 8, 5) == Array("x.txt".utf8) { break }
            o += Int(entries.u16(o + 4))
        }
        img.put32(block + UInt64(o), parent.number)
        #expect(throws: Ext4Error.directoryLoop(inode: parent.number, path: "/dir/sub/x.txt")) { try img.fs.files() }
        #expect(exerciseEverything(MemoryImageReader(bytes: img.bytes)) != nil)
    }

    // The limit is generous because the whole suite shares two cores; a hang
    // is caught per case below, where one damaged image must read in seconds.
    @Test("random damage to metadata never crashes or hangs", .timeLimit(.minutes(10)), arguments: [1024, 4096])
    func fuzz(blockSize: Int) throws {
        let img = try SmallImage.make(blockSize: blockSize)
        let fs = try img.fs
        // Damage what the reader parses: superblock, descriptors, the used
        // part of the inode table, directory and extent blocks.
        var targets: [Range<Int>] = [1024..<2048]
        let bs = blockSize
        let gdt = Int(fs.superblock.firstDataBlock + 1) * bs
        targets.append(gdt..<gdt + bs)
        let table = Int(fs.groups[0].inodeTable) * bs
        targets.append(table..<table + 32 * Int(fs.superblock.inodeSize))
        for f in try fs.files() where f.type == .directory || !f.inode.mappingBlocks.isEmpty {
            for b in f.inode.mappingBlocks { targets.append(Int(b) * bs..<Int(b) * bs + bs) }
            if f.type == .directory, let r = f.inode.runs.first { targets.append(Int(r.physicalBlock) * bs..<Int(r.physicalBlock) * bs + bs) }
        }
        var rng = SystemRandomNumberGenerator()
        var failures = 0
        for _ in 0..<500 {
            var bytes = img.bytes
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let t = targets.randomElement(using: &rng)!
                bytes[Int.random(in: t, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            let start = ContinuousClock.now
            let e = exerciseEverything(MemoryImageReader(bytes: bytes))
            if e != nil { failures += 1 }
            let took = ContinuousClock.now - start
            if took > .milliseconds(200) { print("slow fuzz case \(took): \(e.map { "\($0)" } ?? "read")") }
            #expect(took < .seconds(20), "one damaged image took \(took) to read")
        }
        print("ext4 fuzz (\(blockSize)-byte blocks): 500 damaged images, \(failures) refused with an Ext4Error, the rest read")
    }
}
