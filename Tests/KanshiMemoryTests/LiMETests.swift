import Foundation
import KanshiSystem
import Testing

@testable import KanshiMemory

/// A scratch directory, removed at the end.
final class Scratch {
    let path: String
    init(_ name: String) {
        path = NSTemporaryDirectory() + "kanshi-memory-test-\(name)-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Guest RAM in a scratch file, filled by the test (a stand-in for the guest's memory only:
/// the code under test reads it exactly as it reads a running guest's).
func makeRAM(_ s: Scratch, mib: UInt64 = 4, seed: UInt64 = 1) throws -> GuestRAM {
    let ram = try GuestRAM(creatingIn: s.path, size: mib << 20)
    var x = seed
    let words = ram.memory.bytes.bindMemory(to: UInt64.self)
    for i in 0..<words.count {
        x = x &* 6364136223846793005 &+ 1442695040888963407
        words[i] = x
    }
    return ram
}

@Suite struct LiMETests {
    @Test func anImageRoundTripsEveryRangeAndByte() throws {
        let s = Scratch("lime")
        let ram = try makeRAM(s)
        #expect(ram.ranges == [0..<0xA0000, 0x100000..<(4 << 20)])
        var told: [UInt64] = []
        let w = try LiME.write(ram, to: s.file("dump.lime")) { told.append($0) }
        #expect(w.ramBytes == ram.totalBytes && w.ranges == 2)
        #expect(told == [0xA0000, ram.totalBytes])
        let size = try SystemFile(path: s.file("dump.lime"), mode: .readOnly).size()
        #expect(size == ram.totalBytes + 2 * UInt64(LiME.headerSize))
        let image = try LiMEImage(path: s.file("dump.lime"))
        #expect(image.ranges == ram.ranges)
        for r in ram.ranges {
            let n = Int(r.upperBound - r.lowerBound)
            #expect(image.read(r.lowerBound, count: n) == ram.read(r.lowerBound, count: n))
        }
        // Outside RAM (the legacy window, past the end, across a range's end): nothing.
        #expect(image.bytes(at: 0xA0000, count: 1) == nil)
        #expect(image.bytes(at: 0x9FFFF, count: 2) == nil)
        #expect(image.bytes(at: 4 << 20, count: 1) == nil)
        #expect(image.u64(at: UInt64.max - 3) == nil)
        // A pattern put in RAM is found at its physical address, in both.
        let pattern = Array("KANSHI-FIND-ME-0123".utf8)
        ram.memory.bytes.baseAddress!.advanced(by: 0x2345_67).copyMemory(from: pattern, byteCount: pattern.count)
        #expect(ram.find(pattern) == [0x2345_67])
    }

    @Test func anExistingFileIsNeverOverwritten() throws {
        let s = Scratch("lime-exists")
        let ram = try makeRAM(s, mib: 2)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: s.file("dump.lime")))
        #expect(throws: MemoryError.exists(path: s.file("dump.lime"))) { try LiME.write(ram, to: s.file("dump.lime")) }
        #expect(FileManager.default.contents(atPath: s.file("dump.lime")) == Data("keep".utf8))
    }

    @Test func aFailedWriteLeavesNoFileAndSaysWhere() throws {
        let s = Scratch("lime-fail")
        let ram = try makeRAM(s, mib: 2)
        let bad = s.file("no/such/dir/dump.lime")
        #expect {
            try LiME.write(ram, to: bad)
        } throws: { e in
            guard case MemoryError.write(let path, _) = e else { return false }
            return path == bad && "\(e)".contains(bad)
        }
        #expect(!FileSystem.exists(bad))
    }

    /// A LiME header for `first...last`, with `magic` and `version`.
    static func header(_ first: UInt64, _ last: UInt64, magic: UInt32 = LiME.magic, version: UInt32 = 1) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: LiME.headerSize)
        withUnsafeBytes(of: magic.littleEndian) { for i in 0..<4 { h[i] = $0[i] } }
        withUnsafeBytes(of: version.littleEndian) { for i in 0..<4 { h[4 + i] = $0[i] } }
        withUnsafeBytes(of: first.littleEndian) { for i in 0..<8 { h[8 + i] = $0[i] } }
        withUnsafeBytes(of: last.littleEndian) { for i in 0..<8 { h[16 + i] = $0[i] } }
        return h
    }

    @Test(arguments: [
        ("bad-magic", header(0, 4095, magic: 0x1234_5678) + [UInt8](repeating: 0, count: 4096), 0, "magic"),
        ("bad-version", header(0, 4095, version: 2) + [UInt8](repeating: 0, count: 4096), 4, "version 2"),
        ("short-header", header(0, 4095) + [UInt8](repeating: 0, count: 4096) + [1, 2, 3], 4128, "less than a range header"),
        ("short-body", header(0, 8191) + [UInt8](repeating: 0, count: 4096), 0, "truncated"),
        ("backwards", header(8192, 4095), 8, "ends before it starts"),
        ("overlap", header(0, 4095) + [UInt8](repeating: 0, count: 4096) + header(4000, 8191) + [UInt8](repeating: 0, count: 4192), 4136, "overlaps"),
    ] as [(String, [UInt8], UInt64, String)])
    func badImagesAreRefusedNamingTheByte(name: String, bytes: [UInt8], offset: UInt64, detail: String) throws {
        let s = Scratch("lime-bad")
        let path = s.file(name + ".lime")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try LiMEImage(path: path)
        } throws: { e in
            guard case MemoryError.notLiME(let p, let at, let d) = e else { return false }
            return p == path && at == offset && d.contains(detail)
        }
    }

    @Test func anEmptyOrMissingFileIsRefused() throws {
        let s = Scratch("lime-empty")
        _ = FileManager.default.createFile(atPath: s.file("empty.lime"), contents: Data())
        #expect(throws: MemoryError.self) { _ = try LiMEImage(path: s.file("empty.lime")) }
        #expect {
            _ = try LiMEImage(path: s.file("missing.lime"))
        } throws: { e in "\(e)".contains("missing.lime") }
    }

    @Test func guestRAMSizesThatCannotBeSharedAreRefused() throws {
        let s = Scratch("ram-size")
        for size: UInt64 in [0, 0x80000, (4 << 20) + 1, 3584 << 20] {
            #expect(throws: MemoryError.badRAMSize(size)) { _ = try GuestRAM(creatingIn: s.path, size: size) }
        }
        #expect(throws: MemoryError.self) { _ = try GuestRAM(creatingIn: s.file("missing-dir"), size: 4 << 20) }
        #expect(throws: MemoryError.self) { _ = try GuestRAM(path: s.file("missing")) }
    }
}

/// A full file system under the dump: a clear error naming the file, and no half image left.
@Suite struct FullDiskTests {
    @Test(.enabled(if: Host.isRoot && FileSystem.exists("/bin/mount"), "needs root to mount a small tmpfs"))
    func aDumpOntoAFullFileSystemFailsCleanly() throws {
        let s = Scratch("lime-full")
        let mountPoint = s.file("small")
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "mount -t tmpfs failed")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [mountPoint]
            try? umount.run()
            umount.waitUntilExit()
        }
        let ram = try makeRAM(s, mib: 4)
        let path = mountPoint + "/dump.lime"
        #expect {
            try LiME.write(ram, to: path)
        } throws: { e in
            guard case MemoryError.write(let p, let reason) = e else { return false }
            return p == path && reason.contains("No space left on device")
        }
        #expect(!FileSystem.exists(path), "a half image was left behind")
    }
}
