import Crypto
import Foundation
import KanshiCore
import KanshiJournal
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized) struct CrashTests {
    /// A client writes numbered 4 KiB blocks, flushes, keeps writing; the
    /// server is killed with SIGKILL mid-stream. After a restart every write
    /// the client saw acknowledged is in the image and in the journal, and
    /// the journal verifies.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/nbd.py") || Tools.requireAll,
                   "python3-libnbd is not installed (apt-get install python3-libnbd)"))
    func killDashNineMidWrites() throws {
        let s = Scratch("crash")
        let blocks = 8192
        try makeImage(s.file("disk.img"), bytes: blocks * 4096)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let client = """
            import hashlib, sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            def block(i): return hashlib.sha256(str(i).encode()).digest() * 128
            for i in range(256):
                h.pwrite(block(i), i * 4096)
            h.flush()
            print("FLUSHED", flush=True)
            i = 256
            while i < \(blocks):
                h.pwrite(block(i), i * 4096, nbd.CMD_FLAG_FUA if i % 50 == 0 else 0)
                print(i, flush=True)
                i += 1
            """
        _ = FileManager.default.createFile(atPath: s.file("client.py"), contents: Data(client.utf8))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [s.file("client.py"), server.uri]
        _ = FileManager.default.createFile(atPath: s.file("acks"), contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: s.file("acks")))
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Let it get well into the second batch, then crash the server.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let acks = (try? String(contentsOfFile: s.file("acks"), encoding: .utf8)) ?? ""
            if acks.split(separator: "\n").count > 1500 || !p.isRunning { break }
            usleep(5_000)
        }
        server.crash()
        p.waitUntilExit()
        let lines = try String(contentsOfFile: s.file("acks"), encoding: .utf8).split(separator: "\n")
        #expect(lines.first == "FLUSHED")
        let acked = [0..<256].flatMap { Array($0) } + lines.dropFirst().compactMap { Int($0) }
        #expect(acked.count > 1000, "the client got well past the flush before the crash")

        // Restart on the same journal: it opens (cutting a torn tail if any) and serves.
        let again = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        try again.stop()
        let v = try run([Paths.kanshi, "journal", "verify", s.file("j")])
        #expect(v.ok, "\(v.stdout)")

        let img = readFile(s.file("disk.img"))
        var journaled: [UInt64: [UInt8]] = [:]
        var versions: [UInt64: [[UInt8]]] = [:]
        try JournalReader(directory: s.file("j")).forEachBlockEvent { e, d in
            if e.operation == .write {
                journaled[e.lba * 512] = Array(d)
                versions[e.lba * 512, default: []].append(Array(d))
            }
        }
        var missingImage = 0, missingJournal = 0
        for i in acked {
            let expected = Array(python_block(i))
            if Array(img[(i * 4096)..<(i * 4096 + 4096)]) != expected { missingImage += 1 }
            if journaled[UInt64(i * 4096)] != expected { missingJournal += 1 }
        }
        #expect(missingImage == 0, "acknowledged writes missing from the image")
        #expect(missingJournal == 0, "acknowledged writes missing from the journal")
        // Nothing is in the image that the journal does not have. (The journal
        // may hold a last unacknowledged write the kill kept from the image:
        // records go first.)
        for i in 0..<blocks {
            let block = Array(img[(i * 4096)..<(i * 4096 + 4096)])
            guard block.contains(where: { $0 != 0 }) else { continue }
            #expect(versions[UInt64(i * 4096)]?.contains(block) == true, "block \(i) of the image is in no journaled write")
        }
    }
}

/// The journal's disk fills up while a client writes: writes and flushes
/// fail with ENOSPC, the server stays up, and once there is room again a
/// restart writes what the server had left in memory; every write the client
/// saw acknowledged is then in the journal, which verifies.
@Suite(.serialized) struct JournalDiskFullTests {
    @Test(.enabled(if: geteuid() == 0 && (FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/nbd.py") || Tools.requireAll),
                   "needs root (to mount a small tmpfs) and python3-libnbd"))
    func aFullJournalDiskRefusesWritesAndLosesNothingAcknowledged() throws {
        let s = Scratch("full")
        let small = s.file("small")
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        let mounted = try run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", small])
        try #require(mounted.ok, "mount a 3 MiB tmpfs: \(mounted.stderr)")
        defer { _ = try? run(["umount", "-l", small]) }
        try makeImage(s.file("disk.img"), bytes: 64 << 20)
        let journal = small + "/j"
        let server = try KanshiServer(image: s.file("disk.img"), journal: journal, socket: s.file("nbd.sock"))
        let client = """
            import sys, nbd
            h = nbd.NBD()
            h.connect_uri(sys.argv[1])
            for i in range(4000):
                try:
                    h.pwrite(bytes([i % 251]) * 4096, i * 4096)
                except nbd.Error as e:
                    print("ERROR", e, flush=True)
                    break
                print(i, flush=True)
            try:
                h.flush()
                print("FLUSHED")
            except nbd.Error as e:
                print("FLUSH-ERROR", e, flush=True)
            """
        _ = FileManager.default.createFile(atPath: s.file("client.py"), contents: Data(client.utf8))
        let out = try run(["/usr/bin/python3", s.file("client.py"), server.uri], timeout: 120)
        let lines = out.stdout.split(separator: "\n")
        let acked = lines.compactMap { Int($0) }
        #expect(acked.count > 100 && acked.count < 4000, "the 3 MiB journal disk filled up part way (\(acked.count) writes)")
        #expect(lines.contains { $0.hasPrefix("ERROR") && $0.contains("ENOSPC") }, "a write failed with ENOSPC: \(out.stdout.suffix(300))")
        #expect(lines.contains { $0.hasPrefix("FLUSH-ERROR") }, "a flush that cannot be made durable fails")
        #expect(server.process.isRunning, "the server stays up")
        kill(server.process.processIdentifier, SIGTERM)
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus != 0)
        #expect(server.log.contains("No space left on device"), "the reason is named: \(server.log.suffix(400))")

        // Room again: a restart writes what was left in memory.
        let grown = try run(["mount", "-o", "remount,size=256m", small])
        try #require(grown.ok, "\(grown.stderr)")
        let again = try KanshiServer(image: s.file("disk.img"), journal: journal, socket: s.file("nbd2.sock"))
        try again.stop()
        #expect(again.log.contains("journal recovered: wrote"), "\(again.log)")
        let v = try run([Paths.kanshi, "journal", "verify", journal])
        #expect(v.ok, "\(v.stdout)")
        var journaled = Set<UInt64>()
        try JournalReader(directory: journal).forEachBlockEvent { e, d in
            if e.operation == .write, d.allSatisfy({ $0 == UInt8(truncatingIfNeeded: e.lba / 8 % 251) }) { journaled.insert(e.lba * 512) }
        }
        let missing = acked.filter { !journaled.contains(UInt64($0 * 4096)) }
        #expect(missing.isEmpty, "acknowledged writes missing from the journal: \(missing.prefix(10))")
    }
}

/// sha256(str(i)) * 128, as the Python client writes.
private func python_block(_ i: Int) -> [UInt8] {
    let digest = Array(SHA256.hash(data: Array(String(i).utf8)))
    return Array([[UInt8]](repeating: digest, count: 128).joined())
}

@Suite(.serialized) struct GuestTests {
    static var guestDir: String {
        ProcessInfo.processInfo.environment["KANSHI_GUEST_DIR"] ?? Paths.root.appendingPathComponent(".build/guest").path
    }

    /// A QEMU guest (TCG, Debian cloud kernel, busybox initramfs built by
    /// scripts/guest/build-guest.sh) mounts an ext4 disk served by
    /// `kanshi disk serve`, writes files and powers off. The journal holds
    /// the writes and verifies; the files are on the disk.
    @Test(.enabled(if: Tools.available("qemu-system-x86_64", "mkfs.ext4", "debugfs", "e2fsck"),
                   "needs qemu-system-x86 and e2fsprogs (apt-get install qemu-system-x86 e2fsprogs)"),
          .timeLimit(.minutes(10)))
    func qemuGuestWritesThroughKanshi() throws {
        let build = try run([Paths.root.appendingPathComponent("scripts/guest/build-guest.sh").path, Self.guestDir], timeout: 600)
        try #require(build.ok, "guest build failed: \(build.stderr)")
        let s = Scratch("guest")
        try makeImage(s.file("disk.img"), bytes: 64 << 20)
        let mkfs = try run(["mkfs.ext4", "-q", "-F", "-b", "4096", s.file("disk.img")])
        try #require(mkfs.ok, "\(mkfs.stderr)")
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let job = """
            set -e
            dd if=/dev/urandom of=/mnt/random.bin bs=1M count=4 2>/dev/null
            echo "hello from the guest" > /mnt/hello.txt
            mkdir -p /mnt/docs
            i=0; while [ $i -lt 20 ]; do echo "document $i" > /mnt/docs/doc$i.txt; i=$((i+1)); done
            sha256sum /mnt/random.bin > /mnt/random.sha256
            sync
            exit 7
            """
        _ = FileManager.default.createFile(atPath: s.file("job.sh"), contents: Data(job.utf8))
        let guest = try run([Paths.root.appendingPathComponent("scripts/guest/run-guest.sh").path,
                             "--guest-dir", Self.guestDir, "--nbd-socket", s.file("nbd.sock"),
                             "--job", s.file("job.sh"), "--timeout", "300"], timeout: 330)
        try server.stop()
        #expect(guest.status == 7, "the job's exit status reaches the host: \(guest.stdout.suffix(2000))\(guest.stderr.suffix(1000))")

        let v = try run([Paths.kanshi, "journal", "verify", s.file("j")])
        #expect(v.ok, "\(v.stdout)")
        #expect(try run(["e2fsck", "-fn", s.file("disk.img")]).ok)
        let hello = try run(["debugfs", "-R", "cat /hello.txt", s.file("disk.img")])
        #expect(hello.stdout == "hello from the guest\n")
        // The random file's blocks are in the journal, byte for byte.
        let dump = try run(["debugfs", "-R", "dump /random.bin \(s.file("random.bin"))", s.file("disk.img")])
        #expect(dump.ok)
        let random = readFile(s.file("random.bin"))
        try #require(random.count == 4 << 20)
        var blocks = Set<[UInt8]>()
        var flushes = 0
        try JournalReader(directory: s.file("j")).forEachBlockEvent { e, d in
            if e.operation == .flush { flushes += 1 }
            guard e.operation == .write else { return }
            var o = 0
            while o + 4096 <= d.count { blocks.insert(Array(d[o..<o + 4096])); o += 4096 }
        }
        var found = 0
        for o in stride(from: 0, to: random.count, by: 4096) where blocks.contains(Array(random[o..<o + 4096])) { found += 1 }
        #expect(found == 1024, "all 1024 blocks of the guest's file are journaled")
        #expect(flushes > 0, "the guest's flushes are journaled")
    }
}
