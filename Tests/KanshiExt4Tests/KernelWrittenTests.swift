import Foundation
import Testing
@testable import KanshiExt4

/// Images written by the kernel's ext4 driver (through a loop mount), so the
/// allocator, not mke2fs, decides the layout: fragmented files and unwritten
/// extents from fallocate(2).
enum LoopMount {
    static var available: Bool {
        getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") && Tools.find("mount") != nil
    }
    static let reason: Comment = "needs root and loop devices to mount an image"
}

@Suite(.enabled(if: Tools.available && LoopMount.available, LoopMount.reason))
struct KernelWrittenTests {
    @Test("a file fragmented by the kernel allocator and a fallocated file", .timeLimit(.minutes(10)))
    func fragmentedByKernel() throws {
        let dir = TempDir()
        let img = dir.path + "/k.img", mnt = dir.path + "/mnt", out = dir.path + "/out"
        mkdirs(mnt); mkdirs(out)
        try run(Tools.mkfs!, ["-q", "-F", "-t", "ext4", "-b", "4096", img, "48M"])
        // Fill the disk with 16 KiB files, free every other one, then write a
        // file that can only go into the holes.
        let script = """
            set -e
            trap 'umount \(mnt) 2>/dev/null || true' EXIT
            mount -o loop \(img) \(mnt)
            mkdir \(mnt)/fill
            i=0
            while head -c 16384 /dev/urandom > \(mnt)/fill/$i 2>/dev/null; do i=$((i+1)); done
            rm -f \(mnt)/fill/$i
            sync
            rm -f \(mnt)/fill/*[02468]
            sync
            head -c 6M /dev/urandom > \(mnt)/frag.bin
            fallocate -l 256K \(mnt)/prealloc
            ln -s frag.bin \(mnt)/link
            cp \(mnt)/frag.bin \(mnt)/fill/1 \(out)/
            sync
            umount \(mnt)
            """
        try run("/bin/sh", ["-c", script])
        let fs = try Ext4FileSystem(reader: try FileImageReader(path: img))
        let frag = try fs.lookup(path: "/frag.bin")
        #expect(frag.runs.count > 20, "the kernel had to split frag.bin (\(frag.runs.count) extents)")
        guard case .extents(let depth) = frag.layout else { Issue.record("frag.bin: \(frag.layout)"); return }
        #expect(depth >= 1)
        #expect(try fs.contents(of: frag) == [UInt8](FileManager.default.contents(atPath: out + "/frag.bin")!))
        #expect(try fs.read(path: "/fill/1") == [UInt8](FileManager.default.contents(atPath: out + "/1")!))
        let pre = try fs.lookup(path: "/prealloc")
        #expect(pre.size == 256 << 10 && pre.runs.allSatisfy(\.uninitialized))
        #expect(try fs.contents(of: pre) == [UInt8](repeating: 0, count: 256 << 10))
        #expect(try fs.symlinkTarget(of: try fs.lookup(path: "/link")) == "frag.bin")
        for path in ["/frag.bin", "/prealloc", "/fill/1", "/fill"] {
            let inode = try fs.lookup(path: path)
            var ours = Set(inode.mappingBlocks)
            for r in inode.runs { for b in r.physicalBlock..<r.physicalBlock + r.count { ours.insert(b) } }
            #expect(ours == (try Oracle.blocks(img, path)), "\(path)")
        }
        let map = try BlockOwnerMap(fileSystem: fs)
        let runs = map.runs
        #expect(runs.filter { $0.owner == .allocatedUnowned }.isEmpty, "\(runs.filter { $0.owner == .allocatedUnowned }.prefix(5))")
        let free = runs.filter { $0.owner == .free }.reduce(0) { $0 + $1.count }
        #expect(free == fs.groups.reduce(0) { $0 + UInt64($1.freeBlocksCount) })
        for r in frag.runs {
            #expect(map.owner(ofBlock: r.physicalBlock) == .file(inode: frag.number, path: "/frag.bin", fileBlock: r.fileBlock))
        }
        let leafOwners = frag.mappingBlocks.map { map.owner(ofBlock: $0) }
        #expect(leafOwners.allSatisfy { $0 == .extentTree(inode: frag.number) })
        let sample = Array(stride(from: UInt64(0), to: fs.blocksCount, by: 7)) + frag.mappingBlocks
        let theirs = try Oracle.icheck(img, sample)
        var bad: [String] = []
        for b in sample {
            let expected: UInt32?
            switch map.owner(ofBlock: b) {
            case let .file(i, _, _), let .journal(i, _), let .extentTree(i), let .indirect(i), let .xattr(i): expected = i
            case .reservedGDT: expected = theirs[b] ?? nil
            default: expected = nil
            }
            if theirs[b] != .some(expected) { bad.append("\(b): \(map.owner(ofBlock: b)) vs \(String(describing: theirs[b]))") }
        }
        #expect(bad.isEmpty, "\(bad.prefix(10))")
        print("kernel-written image: frag.bin has \(frag.runs.count) extents, depth \(depth); \(map.runCount) owner runs")
    }
}
