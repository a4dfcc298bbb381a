import Foundation
import Testing

/// `kanshi disk restore | rollback | diff`, `disk serve --at` and `search`,
/// driven as a user would, with qemu-io and qemu-img as the NBD clients.
@Suite(.serialized) struct TimeTravelTests {
    static let peers = Tools.available("qemu-io", "qemu-img")

    func nowRFC3339() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }

    func qemuIO(_ uri: String, _ commands: [String]) throws {
        let r = try run(["qemu-io", "-f", "raw", uri] + commands.flatMap { ["-c", $0] })
        #expect(r.ok && !r.stdout.contains("failed"), "\(r.stdout)\(r.stderr)")
    }

    /// A copy of the disk as a client sees it now.
    func snapshot(_ uri: String, _ out: String) throws {
        let r = try run(["qemu-img", "convert", "-f", "raw", "-O", "raw", uri, out])
        #expect(r.ok, "\(r.stderr)")
    }

    @Test(.enabled(if: peers, "qemu-io / qemu-img are not installed (apt-get install qemu-utils)"))
    func restoreServePastDiffAndRollBack() throws {
        let s = Scratch("timetravel")
        let image = s.file("disk.img"), journal = s.file("j")
        // A disk that already holds data before recording starts.
        let initial = randomBytes(8 << 20, seed: 1)
        _ = FileManager.default.createFile(atPath: image, contents: Data(initial))
        var server = try KanshiServer(image: image, journal: journal, socket: s.file("nbd.sock"))
        try qemuIO(server.uri, ["write -P 0x11 0 64k", "write -P 0x22 1M 512", "flush"])
        try snapshot(server.uri, s.file("t1.img"))
        usleep(20_000)
        let t1 = nowRFC3339()
        usleep(20_000)
        try qemuIO(server.uri, ["write -P 0x33 4096 8k", "write -z 1M 4k", "discard 2M 64k", "write -P 0x44 1536 512", "flush"])
        try snapshot(server.uri, s.file("t2.img"))

        // A read-only view of t1 served while the live server keeps running.
        let past = try KanshiServer(image: image, journal: journal, socket: s.file("past.sock"), extra: ["--at", t1])
        try snapshot(past.uri, s.file("past.img"))
        #expect(readFile(s.file("past.img")) == readFile(s.file("t1.img")))
        let refused = try run(["qemu-io", "-f", "raw", past.uri, "-c", "write -P 0x55 0 4k"])
        #expect(!refused.ok && (refused.stderr + refused.stdout).contains("Permission denied"), "a past view took a write: \(refused.stdout)\(refused.stderr)")
        try past.stop()
        try server.stop()

        // Restore: at t1 (RFC 3339), before anything (seq:0), and at the end.
        for (at, expected) in [(t1, "t1.img"), ("seq:0", nil), ("seq:999999", "t2.img")] {
            let out = s.file("restored.img")
            let r = try run([Paths.kanshi, "disk", "restore", "--journal", journal, "--at", at, "-o", out])
            #expect(r.ok, "\(r.stderr)")
            #expect(readFile(out) == (expected.map { readFile(s.file($0)) } ?? initial), "restore at \(at)")
        }

        // Diff between t1 and the end: the ranges qemu-io changed after t1.
        let d = try run([Paths.kanshi, "disk", "diff", "--journal", journal, "--from", t1, "--json"])
        #expect(d.ok, "\(d.stderr)")
        let diff = try JSONSerialization.jsonObject(with: Data(d.stdout.utf8)) as! [String: Any]
        let ranges = diff["ranges"] as! [[String: Any]]
        #expect(ranges.map { $0["lba"] as! Int } == [0, 2048, 4096])
        #expect(ranges.map { $0["bytes"] as! Int } == [12288, 4096, 65536])

        // Roll the disk back to t1 in place, check, then undo the rollback.
        let rb = try run([Paths.kanshi, "disk", "rollback", "--journal", journal, "--to", t1, "--json"])
        #expect(rb.ok, "\(rb.stderr)")
        #expect(readFile(image) == readFile(s.file("t1.img")))
        let undo = (try JSONSerialization.jsonObject(with: Data(rb.stdout.utf8)) as! [String: Any])["undo"] as! String
        let un = try run([Paths.kanshi, "disk", "rollback", "--journal", journal, "--to", undo])
        #expect(un.ok, "\(un.stderr)")
        #expect(readFile(image) == readFile(s.file("t2.img")))
        #expect(try run([Paths.kanshi, "journal", "verify", journal]).ok)

        // A rollback while the server runs is refused, naming the lock; nothing changes.
        server = try KanshiServer(image: image, journal: journal, socket: s.file("nbd.sock"))
        let busy = try run([Paths.kanshi, "disk", "rollback", "--journal", journal, "--to", t1])
        #expect(busy.status == 1 && busy.stderr.contains("LOCK"), "\(busy.stderr)")
        try server.stop()
        #expect(readFile(image) == readFile(s.file("t2.img")))
    }

    @Test(.enabled(if: peers, "qemu-io is not installed (apt-get install qemu-utils)"))
    func searchFindsAFileWrittenByAClient() throws {
        let s = Scratch("search")
        try makeImage(s.file("disk.img"), bytes: 16 << 20)
        let evidence = randomBytes(24576, seed: 9)
        _ = FileManager.default.createFile(atPath: s.file("evidence.bin"), contents: Data(evidence))
        _ = FileManager.default.createFile(atPath: s.file("absent.bin"), contents: Data(randomBytes(4096, seed: 10)))
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        try qemuIO(server.uri, ["write -s \(s.file("evidence.bin")) 3M 24k", "write -P 0x77 3M 4k", "flush"])
        try server.stop()
        let r = try run([Paths.kanshi, "search", "--journal", s.file("j"), s.file("evidence.bin"), s.file("absent.bin"), "--json"])
        #expect(r.ok, "\(r.stderr)")
        let files = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any])["files"] as! [[String: Any]]
        #expect(files[0]["coverage"] as? Double == 1)
        let blocks = files[0]["blocks"] as! [[String: Any]]
        let first = (blocks[0]["wholeBlock"] as! [[String: Any]])[0]
        #expect(first["lba"] as? Int == 6144)
        #expect(first["overwritten"] != nil)
        #expect((files[0]["completeCopies"] as! [Any]).count == 1)
        #expect(files[1]["coverage"] as? Double == 0)
        let text = try run([Paths.kanshi, "search", "--journal", s.file("j"), s.file("evidence.bin")])
        #expect(text.stdout.contains("coverage 100.0%") && text.stdout.contains("LBA 6144-"), "\(text.stdout)")
    }

    @Test func badTimeTravelInputsAreNamed() throws {
        let s = Scratch("ttbad")
        try makeImage(s.file("disk.img"), bytes: 1 << 20)
        let cases: [([String], String)] = [
            (["disk", "restore", "--journal", s.file("none"), "--at", "seq:1", "-o", s.file("o.img")], "no such directory"),
            (["disk", "restore", "--journal", s.path, "--at", "yesterday", "-o", s.file("o.img")], "is not a time"),
            (["disk", "rollback", "--journal", s.file("none"), "--to", "2026-13-01T00:00:00Z"], "out of range"),
            (["disk", "serve", "--image", s.file("disk.img"), "--socket", s.file("x.sock"), "--no-journal", "--at", "seq:1"], "--at needs --journal"),
            (["search", "--journal", s.file("none"), s.file("missing.bin")], "no such file"),
            (["search", "--journal", s.file("none"), s.path], "is a directory"),
        ]
        for (args, message) in cases {
            let r = try run([Paths.kanshi] + args)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // Restoring over the disk's own image is refused.
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        try server.stop()
        let own = try run([Paths.kanshi, "disk", "restore", "--journal", s.file("j"), "--at", "seq:1", "-o", s.file("disk.img")])
        #expect(own.status == 1 && own.stderr.contains("rollback"), "\(own.stderr)")
        let backwards = try run([Paths.kanshi, "disk", "diff", "--journal", s.file("j"), "--from", "seq:5", "--to", "seq:2"])
        #expect(backwards.status == 1 && backwards.stderr.contains("is after --to"), "\(backwards.stderr)")
    }
}
