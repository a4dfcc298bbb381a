import Foundation
import KanshiCore
import KanshiJournal
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What `kanshi disk mount` needs here; nil when all is present.
enum MountCapability {
    static let missing: String? = {
        if geteuid() != 0 { return "kanshi disk mount needs root" }
        if !FileManager.default.fileExists(atPath: "/dev/fuse") { return "/dev/fuse is missing (modprobe fuse)" }
        for tool in ["losetup", "blkid", "mount", "umount", "mkfs.ext4", "e2fsck", "setpriv", "unshare"] where sbin(tool) == nil {
            return "\(tool) is not installed (apt-get install util-linux mount e2fsprogs)"
        }
        return nil
    }()
    /// Runs the test when everything is here, and always under KANSHI_REQUIRE_PEERS=1 (where a gap fails it).
    static var usable: Bool { Tools.requireAll || missing == nil }
    static var reason: Comment { Comment(rawValue: missing ?? "") }

    /// A tool's path, looking in the sbin directories too.
    static func sbin(_ name: String) -> String? {
        Tools.which(name) ?? ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func tool(_ name: String) -> String { sbin(name) ?? name }
}

/// `kanshi disk mount` as a child process, up once it prints what it mounted.
final class MountSession {
    let process = Process()
    let logPath: String

    init(_ args: [String], log: String, environment: [String: String]? = nil) throws {
        logPath = log
        process.executableURL = URL(fileURLWithPath: Paths.kanshi)
        process.arguments = ["disk", "mount"] + args
        if let environment { process.environment = environment }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = h
        process.standardError = h
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while !self.log.contains("kanshi: mounted") {
            if !process.isRunning { throw Failure("kanshi disk mount exited (\(process.terminationStatus)): \(self.log)") }
            if Date() > deadline { throw Failure("kanshi disk mount did not mount within 60 s: \(self.log)") }
            usleep(20_000)
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The loop device and the FUSE file named in the "mounted" line.
    var loopDevice: String { word(after: " via ") }
    var fuseFile: String { word(after: " and ").replacingOccurrences(of: ";", with: "") }
    var privateDirectory: String { (fuseFile as NSString).deletingLastPathComponent }

    private func word(after marker: String) -> String {
        guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("kanshi: mounted") }),
              let r = line.range(of: marker) else { return "" }
        return String(line[r.upperBound...].split(separator: " ")[0])
    }

    /// Sends `signal` (unless 0) and waits for a clean exit.
    func stop(_ signal: Int32 = SIGINT, timeout: Double = 60) throws {
        if signal != 0 && process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            throw Failure("kanshi disk mount did not stop within \(Int(timeout)) s: \(log)")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure("kanshi disk mount exited \(process.terminationStatus): \(log)") }
    }

    /// A test that failed half-way still takes everything down before the next one.
    deinit {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGINT)
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(20_000) }
    }
}

/// What `kanshi disk mount` sets up on the host — FUSE mounts, loop devices
/// over its FUSE files, private directories — to show nothing was left
/// behind. (Other tests may mount and attach their own things meanwhile:
/// only ours are counted; each test also checks its own mount point.)
struct HostState: Equatable {
    var kanshiMounts: [String]
    var loops: [String]
    var privateDirectories: [String]

    static func now() -> HostState {
        let mounts = mountInfo().filter { $0.contains("fuse.kanshi") }
        let loops = ((try? run([MountCapability.tool("losetup"), "-a"]))?.stdout ?? "")
            .split(separator: "\n").map(String.init).filter { $0.contains("/run/kanshi/") }
        let dirs = (try? FileManager.default.contentsOfDirectory(atPath: "/run/kanshi")) ?? []
        return HostState(kanshiMounts: mounts.sorted(), loops: loops.sorted(), privateDirectories: dirs.sorted())
    }

    static func mountInfo() -> [String] {
        ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Whether anything is mounted at `path` (a path without spaces).
    static func isMounted(_ path: String) -> Bool {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        return mountInfo().contains { $0.split(separator: " ").count > 4 && String($0.split(separator: " ")[4]) == real }
    }
}

/// Whether two images are equal; a mismatch is reported by its first
/// differing byte, not by printing megabytes.
func same(_ a: [UInt8], _ b: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    if a == b { return true }
    let first = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
    Issue.record("images differ: \(a.count) vs \(b.count) bytes, first difference at byte \(first)", sourceLocation: sourceLocation)
    return false
}

/// Applies the journal's writes, trims and zeroing, in order, to `base`.
func replay(_ dir: String, onto base: [UInt8]) throws -> [UInt8] {
    var img = base
    try img.withUnsafeMutableBytes { out in
        try JournalReader(directory: dir).forEachBlockEvent { e, d in
            let o = Int(e.lba * 512)
            switch e.operation {
            case .write: UnsafeMutableRawBufferPointer(rebasing: out[o..<o + d.count]).copyMemory(from: d)
            case .trim, .writeZeroes: memset(out.baseAddress! + o, 0, Int(e.length))
            default: break
            }
        }
    }
    return img
}

@Suite(.serialized) struct DiskMountTests {
    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func writeThroughTheJournalUnmountAndRemount() throws {
        let s = Scratch("mount")
        let img = s.file("disk.img"), j = s.file("j"), mnt = s.file("mnt")
        try makeImage(img, bytes: 64 << 20)
        #expect(try run([MountCapability.tool("mkfs.ext4"), "-q", "-F", "-b", "4096", img]).ok)
        let base = readFile(img)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let a = randomBytes(3 << 20, seed: 11), b = randomBytes(2 << 20, seed: 12)
        _ = FileManager.default.createFile(atPath: s.file("a.bin"), contents: Data(a))
        _ = FileManager.default.createFile(atPath: s.file("b.bin"), contents: Data(b))
        let before = HostState.now()

        let m = try MountSession(["--image", img, "--journal", j, mnt], log: s.file("mount.log"))
        // The loop device: direct I/O, 4096-byte sectors, over the FUSE file.
        let info = try run([MountCapability.tool("losetup"), "--list", "--noheadings", "-O", "DIO,LOG-SEC,BACK-FILE", m.loopDevice])
        #expect(info.stdout.split(separator: " ", omittingEmptySubsequences: true).map(String.init).prefix(2) == ["1", "4096"], "\(info.stdout)")
        #expect(info.stdout.contains(m.fuseFile))
        #expect(try run(["cp", s.file("a.bin"), mnt + "/a.bin"]).ok)
        let dd = try run(["dd", "if=" + s.file("b.bin"), "of=" + mnt + "/b.bin", "bs=1M", "conv=fsync"])
        #expect(dd.ok, "\(dd.stderr)")
        #expect(try run(["sync"]).ok)
        #expect(same(readFile(mnt + "/a.bin"), a))
        try m.stop(SIGINT)
        #expect(m.log.contains("kanshi: unmounted"))
        #expect(HostState.now() == before, "no mount, loop device or private directory is left")
        #expect(!HostState.isMounted(mnt))
        #expect(!FileManager.default.fileExists(atPath: m.privateDirectory))

        let v = try run([Paths.kanshi, "journal", "verify", j])
        #expect(v.ok, "\(v.stdout)\(v.stderr)")
        // Every write arrived as whole 4 KiB blocks, and every block of both files is in the journal.
        var blocks = Set<[UInt8]>()
        var writes = 0
        try JournalReader(directory: j).forEachBlockEvent { e, d in
            guard e.operation == .write else { return }
            writes += 1
            #expect(e.lba % 8 == 0 && d.count % 4096 == 0, "write at LBA \(e.lba), \(d.count) bytes")
            for o in stride(from: 0, to: d.count, by: 4096) { blocks.insert(Array(d[o..<o + 4096])) }
        }
        #expect(writes > 0)
        for file in [a, b] {
            let missing = stride(from: 0, to: file.count, by: 4096).filter { !blocks.contains(Array(file[$0..<$0 + 4096])) }
            #expect(missing.isEmpty, "\(missing.count) blocks of a written file are not in the journal")
        }
        let after = readFile(img)
        #expect(same(try replay(j, onto: base), after), "the journal holds every change to the image")
        let fsck = try run([MountCapability.tool("e2fsck"), "-fn", img])
        #expect(fsck.ok, "\(fsck.stdout)\(fsck.stderr)")

        // Read-only, and stopped by `umount MOUNTPOINT`: the files are there, nothing is written.
        let r = try MountSession(["--image", img, "--journal", j, "--read-only", mnt], log: s.file("mount2.log"))
        #expect(r.log.contains("read-only"))
        #expect(same(readFile(mnt + "/a.bin"), a))
        #expect(same(readFile(mnt + "/b.bin"), b))
        let u = try run([MountCapability.tool("umount"), mnt])
        #expect(u.ok, "\(u.stderr)")
        try r.stop(0)
        #expect(HostState.now() == before)
        #expect(!HostState.isMounted(mnt))
        #expect(same(readFile(img), after), "a read-only mount changes nothing")
        var writesAfter = 0, reads = 0
        try JournalReader(directory: j).forEachBlockEvent { e, _ in
            if e.operation == .write { writesAfter += 1 }
            if e.operation == .read { reads += 1 }
        }
        #expect(writesAfter == writes && reads > 0)
        #expect(try run([Paths.kanshi, "journal", "verify", j]).ok)
        // Session notes: both mounts, their devices, and how each ended.
        var notes: [String] = []
        try JournalReader(directory: j).forEachRecord { r in
            if r.kind == .note { notes.append(String(decoding: r.payload, as: UTF8.self)) }
        }
        #expect(notes.filter { $0.contains("\"mount-start\"") }.count == 2, "\(notes)")
        #expect(notes.filter { $0.contains("\"mounted\"") && $0.contains("\"fstype\":\"ext4\"") }.count == 2, "\(notes)")
        #expect(notes.contains { $0.contains("\"mount-stop\"") && $0.contains("\"signal\":2") }, "\(notes)")
        #expect(notes.contains { $0.contains("\"mount-stop\"") && $0.contains("\"reason\":\"unmounted\"") }, "\(notes)")
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func mkfsFormatsThroughTheJournal() throws {
        let s = Scratch("mkfs")
        let img = s.file("blank.img"), j = s.file("j"), mnt = s.file("mnt")
        try makeImage(img, bytes: 32 << 20)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let before = HostState.now()
        let m = try MountSession(["--image", img, "--journal", j, "--mkfs", mnt], log: s.file("mount.log"))
        #expect(m.log.contains("ext4") && m.log.contains("formatted"), "\(m.log)")
        let dd = try run(["dd", "if=/dev/zero", "of=" + mnt + "/zeros", "bs=64k", "count=16", "conv=fsync"])
        #expect(dd.ok, "\(dd.stderr)")
        try m.stop(SIGTERM)
        #expect(HostState.now() == before)
        #expect(!HostState.isMounted(mnt))
        // The image started empty: the journal alone rebuilds it, file system and all.
        #expect(same(try replay(j, onto: [UInt8](repeating: 0, count: 32 << 20)), readFile(img)))
        let fsck = try run([MountCapability.tool("e2fsck"), "-fn", img])
        #expect(fsck.ok, "\(fsck.stdout)\(fsck.stderr)")
        #expect(try run([Paths.kanshi, "journal", "verify", j]).ok)
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func withoutAJournal() throws {
        let (s, img, mnt) = try fixture("nojournal")
        let before = HostState.now()
        let m = try MountSession(["--image", img, "--no-journal", mnt], log: s.file("mount.log"))
        #expect(m.log.contains("without a journal"))
        let data = randomBytes(1 << 20, seed: 31)
        _ = FileManager.default.createFile(atPath: s.file("data"), contents: Data(data))
        #expect(try run(["cp", s.file("data"), mnt + "/data"]).ok)
        try m.stop(SIGTERM)
        #expect(HostState.now() == before)
        #expect(!HostState.isMounted(mnt))
        let check = try MountSession(["--image", img, "--no-journal", "--read-only", mnt], log: s.file("mount2.log"))
        #expect(same(readFile(mnt + "/data"), data))
        try check.stop(SIGINT)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path).sorted() == ["data", "disk.img", "mnt", "mount.log", "mount2.log"])
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func aBusyFileSystemIsWaitedFor() throws {
        let (s, img, mnt) = try fixture("inuse")
        let before = HostState.now()
        let m = try MountSession(["--image", img, "--journal", s.file("j"), mnt], log: s.file("mount.log"))
        // A process whose working directory is on the mounted file system, for 3 s.
        let user = Process()
        user.executableURL = URL(fileURLWithPath: "/bin/sleep")
        user.arguments = ["3"]
        user.currentDirectoryURL = URL(fileURLWithPath: mnt)
        try user.run()
        usleep(300_000)
        try m.stop(SIGINT, timeout: 60)
        user.waitUntilExit()
        #expect(m.log.contains("is busy") && m.log.contains("fuser -vm"), "\(m.log)")
        #expect(m.log.contains("kanshi: unmounted"))
        #expect(HostState.now() == before)
        #expect(!HostState.isMounted(mnt))
    }

    /// The FUSE file itself, as another program (root) may use it: unaligned
    /// writes and reads, a refused truncate, punch-hole and zero-range — in the
    /// last 4 MiB of an image whose ext4 file system covers only the first 12.
    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func theFuseFileTakesAnyByteRange() throws {
        let s = Scratch("fusefile")
        let img = s.file("disk.img"), j = s.file("j"), mnt = s.file("mnt")
        try makeImage(img, bytes: 16 << 20)
        #expect(try run([MountCapability.tool("mkfs.ext4"), "-q", "-F", "-b", "4096", img, "3072"]).ok)
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let base = readFile(img)
        let data = randomBytes(3000, seed: 21)
        _ = FileManager.default.createFile(atPath: s.file("data"), contents: Data(data))
        let before = HostState.now()
        let m = try MountSession(["--image", img, "--journal", j, mnt], log: s.file("mount.log"))
        let fuse = m.fuseFile
        let at = (13 << 20) + 100
        // Three 1000-byte writes, none of them sector-aligned.
        let w = try run(["dd", "if=" + s.file("data"), "of=" + fuse, "bs=1000", "seek=\(at)", "oflag=seek_bytes", "conv=notrunc"])
        #expect(w.ok, "\(w.stderr)")
        let r = try run(["dd", "if=" + fuse, "of=" + s.file("back"), "bs=777", "count=1", "skip=\(at + 5)", "iflag=skip_bytes"])
        #expect(r.ok, "\(r.stderr)")
        #expect(readFile(s.file("back")) == Array(data[5..<782]))
        let t = try run(["truncate", "-s", "1M", fuse])
        #expect(!t.ok, "the disk's size is fixed")
        #expect(try run(["fallocate", "-p", "-o", "\((14 << 20) + 100)", "-l", "10000", fuse]).ok)
        #expect(try run(["fallocate", "-z", "-o", "\(15 << 20)", "-l", "8192", fuse]).ok)
        try m.stop(SIGINT)
        #expect(HostState.now() == before)
        #expect(!HostState.isMounted(mnt))

        var expected = base
        expected.replaceSubrange(at..<at + 3000, with: data)
        expected.replaceSubrange((14 << 20) + 100..<(14 << 20) + 10100, with: repeatElement(0, count: 10000))
        expected.replaceSubrange((15 << 20)..<(15 << 20) + 8192, with: repeatElement(0, count: 8192))
        let after = readFile(img)
        #expect(after.count == 16 << 20)
        // (The first 12 MiB changed too: mounting ext4 updates its superblock.)
        let tail = (12 << 20)..<(16 << 20)
        #expect(same(Array(after[tail]), Array(expected[tail])), "the raw writes, trim and zeroing landed exactly")
        #expect(same(try replay(j, onto: base), after), "the journal holds every change to the image")
        var kinds: [BlockEvent.Operation: Int] = [:]
        try JournalReader(directory: j).forEachBlockEvent { e, d in
            kinds[e.operation, default: 0] += 1
            if e.operation == .write { #expect(d.count % 512 == 0) }
        }
        #expect(kinds[.trim, default: 0] >= 1 && kinds[.writeZeroes, default: 0] >= 1, "\(kinds)")
        #expect(try run([Paths.kanshi, "journal", "verify", j]).ok)
        #expect(try run([MountCapability.tool("e2fsck"), "-fn", img]).ok, "the file system was not touched")
    }

    // MARK: - bad input: one clear line, exit 1, nothing left behind

    /// Runs `kanshi disk mount` expecting a refusal whose message contains `phrase`.
    private func expectRefused(_ args: [String], phrase: String, wrap: [String] = [], environment: [String: String]? = nil,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = HostState.now()
        let r: RunResult
        if let environment {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Paths.kanshi)
            p.arguments = ["disk", "mount"] + args
            p.environment = environment
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            let data = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            r = RunResult(status: p.terminationStatus, stdout: "", stderr: String(decoding: data, as: UTF8.self))
        } else {
            r = try run(wrap + [Paths.kanshi, "disk", "mount"] + args, timeout: 60)
        }
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains(" info ") }
        #expect(lines.count == 1, "one line: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.contains(phrase), "\(r.stderr)", sourceLocation: sourceLocation)
        #expect(HostState.now() == before, "nothing left mounted or attached", sourceLocation: sourceLocation)
        if let mnt = args.last { #expect(!HostState.isMounted(mnt), sourceLocation: sourceLocation) }
    }

    /// A scratch directory with a formatted image and an empty mount point.
    private func fixture(_ name: String) throws -> (Scratch, img: String, mnt: String) {
        let s = Scratch(name)
        try makeImage(s.file("disk.img"), bytes: 16 << 20)
        #expect(try run([MountCapability.tool("mkfs.ext4"), "-q", "-F", "-b", "4096", s.file("disk.img")]).ok)
        try FileManager.default.createDirectory(atPath: s.file("mnt"), withIntermediateDirectories: true)
        return (s, s.file("disk.img"), s.file("mnt"))
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesAnImageWithoutAFileSystem() throws {
        let (s, _, mnt) = try fixture("nofs")
        try makeImage(s.file("blank.img"), bytes: 16 << 20)
        try expectRefused(["--image", s.file("blank.img"), "--journal", s.file("j"), mnt], phrase: "holds no file system")
        #expect(try run([Paths.kanshi, "journal", "verify", s.file("j")]).ok, "the failed attempt is journaled intact")
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesAMissingImage() throws {
        let (s, _, mnt) = try fixture("noimg")
        try expectRefused(["--image", s.file("nope.img"), "--journal", s.file("j"), mnt], phrase: "does not exist")
        #expect(!FileManager.default.fileExists(atPath: s.file("j")), "no journal is created for a refused mount")
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesAnImageOfTheWrongSize() throws {
        let (s, _, mnt) = try fixture("oddsize")
        try makeImage(s.file("odd.img"), bytes: 1000)
        try expectRefused(["--image", s.file("odd.img"), "--journal", s.file("j"), mnt], phrase: "not a whole number of 512-byte sectors")
        try makeImage(s.file("odd4k.img"), bytes: 4608)
        try expectRefused(["--image", s.file("odd4k.img"), "--journal", s.file("j"), mnt], phrase: "--sector-size 512")
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesAMissingMountPoint() throws {
        let (s, img, _) = try fixture("nomnt")
        try expectRefused(["--image", img, "--journal", s.file("j"), s.file("absent")], phrase: "does not exist or is not a directory")
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesABusyMountPoint() throws {
        let (s, img, mnt) = try fixture("busy")
        #expect(try run([MountCapability.tool("mount"), "-t", "tmpfs", "none", mnt]).ok)
        defer { _ = try? run([MountCapability.tool("umount"), mnt]) }
        let r = try run([Paths.kanshi, "disk", "mount", "--image", img, "--journal", s.file("j"), mnt], timeout: 60)
        #expect(r.status == 1 && r.stderr.contains("is busy"), "\(r.stderr)")
        #expect(!HostState.now().loops.contains { $0.contains(s.path) })
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesWhenNoLoopDeviceIsFree() throws {
        let (s, img, mnt) = try fixture("noloop")
        // A losetup that answers as the real one does when every device is taken.
        let bin = s.file("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try "#!/bin/sh\necho 'losetup: cannot find an unused loop device' >&2\nexit 1\n"
            .write(toFile: bin + "/losetup", atomically: true, encoding: .utf8)
        chmod(bin + "/losetup", 0o755)
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        try expectRefused(["--image", img, "--journal", s.file("j"), mnt], phrase: "no free loop device", environment: env)
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesWithoutRoot() throws {
        let (s, img, mnt) = try fixture("noroot")
        chmod(s.path, 0o777)
        try expectRefused(["--image", img, "--journal", s.file("j"), mnt], phrase: "must run as root",
                          wrap: [MountCapability.tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"])
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason))
    func refusesWithoutDevFuse() throws {
        let (s, img, mnt) = try fixture("nofuse")
        // In a mount namespace of its own, /dev/fuse is hidden under a plain file.
        _ = FileManager.default.createFile(atPath: s.file("not-fuse"), contents: nil)
        let script = "mount --bind \"$1\" /dev/fuse && shift && exec \"$@\""
        try expectRefused(["--image", img, "--journal", s.file("j"), mnt], phrase: "/dev/fuse is missing",
                          wrap: [MountCapability.tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script, "sh", s.file("not-fuse")])
    }
}
