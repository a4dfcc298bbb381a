import Foundation
import KanshiCore
import KanshiJournal
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Journaled writes: (byte offset, data), in journal order.
func journaledWrites(_ dir: String) throws -> [(UInt64, [UInt8])] {
    var out: [(UInt64, [UInt8])] = []
    try JournalReader(directory: dir).forEachBlockEvent { e, d in
        if e.operation == .write { out.append((e.lba * 512, Array(d))) }
    }
    return out
}

/// Applies journaled writes (and zeroing) to a zero image of `size` bytes: what the journal says the disk holds.
func replay(_ dir: String, size: Int) throws -> [UInt8] {
    var img = [UInt8](repeating: 0, count: size)
    try JournalReader(directory: dir).forEachBlockEvent { e, d in
        let o = Int(e.lba * 512)
        switch e.operation {
        case .write: img.replaceSubrange(o..<o + d.count, with: d)
        case .trim, .writeZeroes: img.replaceSubrange(o..<o + Int(e.length), with: repeatElement(0, count: Int(e.length)))
        default: break
        }
    }
    return img
}

@Suite(.serialized) struct PeerClientTests {
    @Test(.enabled(if: Tools.available("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)"))
    func qemuIO() throws {
        let s = Scratch("qemuio")
        try makeImage(s.file("disk.img"), bytes: 32 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let r = try run(["qemu-io", "-f", "raw", server.uri,
                         "-c", "write -P 0x5a 0 64k",
                         "-c", "write -P 0xa5 -f 1M 128k",
                         "-c", "write -z 4M 64k",
                         "-c", "discard 8M 64k",
                         "-c", "flush",
                         "-c", "read -P 0x5a 0 64k",
                         "-c", "read -P 0xa5 1M 128k",
                         "-c", "read -P 0 4M 64k"])
        #expect(r.ok, "\(r.stdout)\(r.stderr)")
        #expect(!r.stdout.contains("Pattern verification failed"), "\(r.stdout)")
        try server.stop()
        let img = readFile(s.file("disk.img"))
        #expect(img[0..<65536].allSatisfy { $0 == 0x5a })
        #expect(img[(1 << 20)..<(1 << 20) + 131072].allSatisfy { $0 == 0xa5 })
        let writes = try journaledWrites(s.file("j"))
        #expect(writes.reduce(0) { $0 + $1.1.count } == 65536 + 131072)
        #expect(writes.allSatisfy { w in w.1.allSatisfy { $0 == (w.0 < 1 << 20 ? 0x5a : 0xa5) } })
        #expect(try replay(s.file("j"), size: 32 << 20) == img)
        let v = try run([Paths.kanshi, "journal", "verify", s.file("j")])
        #expect(v.ok, "\(v.stdout)")
    }

    @Test(.enabled(if: Tools.available("qemu-img"), "qemu-img is not installed (apt-get install qemu-utils)"))
    func qemuImgConvertAndCompare() throws {
        let s = Scratch("qemuimg")
        var src = randomBytes(16 << 20, seed: 1)
        src.replaceSubrange((4 << 20)..<(6 << 20), with: repeatElement(0, count: 2 << 20))  // a hole
        _ = FileManager.default.createFile(atPath: s.file("src.img"), contents: Data(src))
        try makeImage(s.file("disk.img"), bytes: 16 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let c = try run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", s.file("src.img"), server.uri])
        #expect(c.ok, "\(c.stderr)")
        let cmp = try run(["qemu-img", "compare", "-f", "raw", "-F", "raw", s.file("src.img"), server.uri])
        #expect(cmp.ok, "\(cmp.stdout)\(cmp.stderr)")
        try server.stop()
        #expect(readFile(s.file("disk.img")) == src)
        #expect(try replay(s.file("j"), size: 16 << 20) == src)
    }

    @Test(.enabled(if: Tools.available("nbdcopy"), "nbdcopy is not installed (apt-get install libnbd-bin)"))
    func nbdcopyBothWays() throws {
        let s = Scratch("nbdcopy")
        let src = randomBytes(24 << 20, seed: 2)
        _ = FileManager.default.createFile(atPath: s.file("src.img"), contents: Data(src))
        try makeImage(s.file("disk.img"), bytes: 24 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let up = try run(["nbdcopy", "--flush", s.file("src.img"), server.uri])
        #expect(up.ok, "\(up.stderr)")
        let down = try run(["nbdcopy", server.uri, s.file("back.img")])
        #expect(down.ok, "\(down.stderr)")
        try server.stop()
        #expect(readFile(s.file("back.img")) == src)
        #expect(readFile(s.file("disk.img")) == src)
        for (offset, data) in try journaledWrites(s.file("j")) {
            #expect(Array(src[Int(offset)..<Int(offset) + data.count]) == data)
        }
        #expect(try replay(s.file("j"), size: 24 << 20) == src)
        var reads: UInt64 = 0
        try JournalReader(directory: s.file("j")).forEachBlockEvent { e, _ in if e.operation == .read { reads += UInt64(e.length) } }
        #expect(reads >= 24 << 20, "every byte nbdcopy read is journaled")
    }

    @Test(.enabled(if: Tools.available("nbdsh"), "nbdsh is not installed (apt-get install libnbd-bin python3-libnbd)"))
    func nbdshScript() throws {
        let s = Scratch("nbdsh")
        try makeImage(s.file("disk.img"), bytes: 8 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let script = """
            assert h.get_size() == 8 * 1024 * 1024
            assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_multi_conn()
            buf = bytes(range(256)) * 16
            h.pwrite(buf, 8192)
            h.pwrite(buf, 16384, nbd.CMD_FLAG_FUA)
            assert h.pread(4096, 8192) == buf
            h.zero(4096, 8192)
            assert h.pread(4096, 8192) == bytes(4096)
            h.flush()
            try:
                h.pread(512, 8 * 1024 * 1024)
                raise SystemExit("read past the end succeeded")
            except nbd.Error as e:
                print("refused:", e.errno)
            print("ok")
            """
        // nbdsh is `python3 -m nbd`; Debian's module lives with Debian's python3.
        let r = try run(["/usr/bin/python3", "-m", "nbd", "-u", server.uri, "-c", script])
        #expect(r.ok && r.stdout.contains("ok"), "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("refused: EINVAL"), "\(r.stdout)")
        try server.stop()
        let writes = try journaledWrites(s.file("j"))
        #expect(writes.map(\.0) == [8192, 16384])
    }

    @Test(.enabled(if: Tools.available("fio"), "fio is not installed (apt-get install fio)"))
    func fioNBDEngineWithVerify() throws {
        let s = Scratch("fio")
        try makeImage(s.file("disk.img"), bytes: 16 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let r = try run(["fio", "--name=verify", "--ioengine=nbd", "--uri=\(server.uri)", "--rw=randwrite", "--bs=4k",
                         "--size=8M", "--iodepth=8", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
                         "--output-format=json"])
        #expect(r.ok, "\(r.stderr)")
        try server.stop()
        let writes = try journaledWrites(s.file("j"))
        #expect(writes.count == 2048, "fio writes 8 MiB in 4 KiB blocks")
        #expect(Set(writes.map(\.0)).count == 2048)
        #expect(try replay(s.file("j"), size: 16 << 20) == readFile(s.file("disk.img")))
    }

    @Test(.enabled(if: Tools.available("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)"))
    func tcpAndReadOnly() throws {
        let s = Scratch("tcp")
        let content = randomBytes(1 << 20, seed: 3)
        _ = FileManager.default.createFile(atPath: s.file("disk.img"), contents: Data(content))
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("tcp"), tcp: true,
                                      extra: ["--read-only"])
        #expect(server.uri.hasPrefix("nbd://127.0.0.1:"), "\(server.uri)")
        let r = try run(["qemu-io", "-f", "raw", "-r", server.uri, "-c", "read -v 0 16"])
        #expect(r.ok, "\(r.stderr)")
        let hex = content[0..<16].map { String(format: "%02x", $0) }.joined(separator: " ")
        #expect(r.stdout.contains(hex), "\(r.stdout)")
        let w = try run(["qemu-io", "-f", "raw", server.uri, "-c", "write -P 1 0 4k"])
        #expect(!w.ok || w.stdout.contains("failed") || w.stderr.contains("read-only") || w.stderr.contains("Operation not permitted"),
                "a write to a read-only export must fail: \(w.stdout)\(w.stderr)")
        try server.stop()
        #expect(readFile(s.file("disk.img")) == content)
        var reads = 0
        try JournalReader(directory: s.file("j")).forEachBlockEvent { e, _ in if e.operation == .read { reads += 1 } }
        #expect(reads > 0)
        #expect(try journaledWrites(s.file("j")).isEmpty)
    }

    @Test func badImagesAreRefusedClearly() throws {
        let s = Scratch("badimg")
        _ = FileManager.default.createFile(atPath: s.file("odd.img"), contents: Data(count: 1000))
        let odd = try run([Paths.kanshi, "disk", "serve", "--image", s.file("odd.img"), "--journal", s.file("j"), "--socket", s.file("a.sock")])
        #expect(!odd.ok && odd.stderr.contains("not a whole number of 512-byte sectors"), "\(odd.stderr)")
        let missing = try run([Paths.kanshi, "disk", "serve", "--image", s.file("nope.img"), "--journal", s.file("j"), "--socket", s.file("a.sock")])
        #expect(!missing.ok && missing.stderr.contains("nope.img"), "\(missing.stderr)")
        let noSocket = try run([Paths.kanshi, "disk", "serve", "--image", s.file("odd.img"), "--journal", s.file("j")])
        #expect(!noSocket.ok && noSocket.stderr.contains("--socket"), "\(noSocket.stderr)")
        _ = FileManager.default.createFile(atPath: s.file("file-not-dir"), contents: Data([1]))
        try makeImage(s.file("ok.img"), bytes: 1 << 20)
        let badJournal = try run([Paths.kanshi, "disk", "serve", "--image", s.file("ok.img"), "--journal", s.file("file-not-dir"), "--socket", s.file("a.sock")])
        #expect(!badJournal.ok && badJournal.stderr.contains("not a directory"), "\(badJournal.stderr)")
    }

    @Test func aStopSignalRightAfterStartIsHonoured() throws {
        for signal in [SIGINT, SIGTERM] {
            let s = Scratch("signal")
            try makeImage(s.file("disk.img"), bytes: 1 << 20)
            let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("a.sock"))
            kill(server.process.processIdentifier, signal)
            let deadline = Date().addingTimeInterval(10)
            while server.process.isRunning && Date() < deadline { usleep(10_000) }
            #expect(!server.process.isRunning, "signal \(signal) was lost")
            server.process.waitUntilExit()
            #expect(server.process.terminationStatus == 0)
            #expect(!FileManager.default.fileExists(atPath: s.file("a.sock")), "the socket is removed")
            var notes: [String] = []
            try JournalReader(directory: s.file("j")).forEachRecord { r in
                if r.kind == .note { notes.append(String(decoding: r.payload, as: UTF8.self)) }
            }
            #expect(notes.contains { $0.contains("serve-stop") }, "\(notes)")
        }
    }

    @Test func aJournalInUseIsRefused() throws {
        let s = Scratch("inuse")
        try makeImage(s.file("disk.img"), bytes: 1 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("a.sock"))
        let second = try run([Paths.kanshi, "disk", "serve", "--image", s.file("disk.img"), "--journal", s.file("j"), "--socket", s.file("b.sock")])
        #expect(!second.ok && second.stderr.contains("in use by another process"), "\(second.stderr)")
        try server.stop()
    }
}
