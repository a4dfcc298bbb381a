import Crypto
import Foundation
import Testing

/// Time travel on a real file system: a QEMU guest creates, overwrites,
/// deletes and finally destroys files on an ext4 disk journaled by Kanshi;
/// the disk is restored at moments between the steps and every file is
/// compared with what it was, the destruction is rolled back, and a deleted
/// file is found by its sector hashes.
@Suite(.serialized) struct TimeTravelGuestTests {
    /// Every regular file under `dir`, relative path -> SHA-256.
    func tree(_ dir: String) -> [String: String] {
        var out: [String: String] = [:]
        let e = FileManager.default.enumerator(atPath: dir)
        while let rel = e?.nextObject() as? String {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue else { continue }
            let data = FileManager.default.contents(atPath: dir + "/" + rel) ?? Data()
            out[rel] = SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        }
        return out
    }

    /// The files of an ext4 image, copied out with debugfs (read-only, no mount).
    func files(of image: String, _ s: Scratch, _ tag: String) throws -> [String: String] {
        let out = s.file("files-\(tag)")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let r = try run(["debugfs", "-R", "rdump /data \(out)", image])
        #expect(r.ok, "\(r.stderr)")
        return tree(out + "/data")
    }

    func lastSequence(_ journal: String) throws -> Int {
        let r = try run([Paths.kanshi, "journal", "info", journal, "--json"])
        let o = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        return ((o["segments"] as! [[String: Any]]).last!["lastSequence"] as! Int)
    }

    func guestStep(_ disk: String, _ g: String, _ script: String) throws {
        let r = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--timeout", "300", "--", script], timeout: 360)
        #expect(r.status == 0, "\(r.stdout.suffix(1500))\(r.stderr.suffix(600))")
    }

    @Test(.enabled(if: SandboxTests.peers, "needs qemu-system-x86 and e2fsprogs"), .timeLimit(.minutes(15)))
    func restoreRollBackAndSearchOnExt4() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("tt-guest")
        let disk = try SandboxTests.disk(s, mib: 96)
        let journal = disk + ".journal"

        // Step 1: files of many sizes.
        try guestStep(disk, g, """
            set -e; mkdir -p data/docs data/photos
            i=1; while [ $i -le 40 ]; do head -c $((i * 3000)) /dev/urandom > data/docs/doc$i.bin; i=$((i+1)); done
            dd if=/dev/urandom of=data/photos/big.raw bs=1M count=3 2>/dev/null
            echo "first version" > data/notes.txt
            sync
            """)
        let seq1 = try lastSequence(journal)
        try FileManager.default.copyItem(atPath: disk, toPath: s.file("after1.img"))
        let files1 = try files(of: disk, s, "1")
        #expect(files1.count == 42)

        // Step 2: overwrite some, delete some, add one.
        try guestStep(disk, g, """
            set -e
            echo "second version, longer than the first" > data/notes.txt
            dd if=/dev/urandom of=data/docs/doc5.bin bs=3000 count=5 conv=notrunc 2>/dev/null
            rm data/docs/doc7.bin data/photos/big.raw
            head -c 50000 /dev/urandom > data/new.bin
            sync
            """)
        let seq2 = try lastSequence(journal)
        let files2 = try files(of: disk, s, "2")
        #expect(files2.count == 41 && files2["notes.txt"] != files1["notes.txt"])

        // Step 3: destruction (every file overwritten in place).
        try guestStep(disk, g, """
            for f in $(find data -type f); do n=$(wc -c < $f); dd if=/dev/urandom of=$f bs=$n count=1 conv=notrunc 2>/dev/null; done; sync
            """)
        let files3 = try files(of: disk, s, "3")
        #expect(files3.keys.sorted() == files2.keys.sorted())
        #expect(files3.allSatisfy { files2[$0.key] != $0.value })

        // Restore at the moments between the steps: every file as it was.
        for (seq, expected, tag) in [(seq1, files1, "r1"), (seq2, files2, "r2")] {
            let out = s.file("\(tag).img")
            let r = try run([Paths.kanshi, "disk", "restore", "--journal", journal, "--at", "seq:\(seq)", "-o", out])
            #expect(r.ok, "\(r.stderr)")
            #expect(try run(["e2fsck", "-fn", out]).ok, "restored image at seq \(seq) is not clean")
            #expect(try files(of: out, s, tag) == expected, "files restored at seq \(seq)")
        }

        // The diff from step 1 to step 2 lists changes; its JSON parses.
        let diff = try run([Paths.kanshi, "disk", "diff", "--journal", journal, "--from", "seq:\(seq1)", "--to", "seq:\(seq2)", "--json"])
        #expect(diff.ok && diff.stdout.contains("\"ranges\""))
        let owners = ((try JSONSerialization.jsonObject(with: Data(diff.stdout.utf8)) as! [String: Any])["owners"] as! [[String: Any]])
        let named = Set(owners.compactMap { $0["path"] as? String })
        #expect(named.isSuperset(of: ["/data/new.bin", "/data/docs/doc5.bin", "/data/notes.txt"]), "\(named)")
        let text = try run([Paths.kanshi, "disk", "diff", "--journal", journal, "--from", "seq:\(seq1)", "--to", "seq:\(seq2)"])
        #expect(text.stdout.contains("in the file system (ext4)") && text.stdout.contains("/data/new.bin"), "\(text.stdout)")

        // Roll back the destruction in place: clean, every file back.
        let rb = try run([Paths.kanshi, "disk", "rollback", "--journal", journal, "--to", "seq:\(seq2)"])
        #expect(rb.ok, "\(rb.stderr)")
        #expect(try run(["e2fsck", "-fn", disk]).ok)
        #expect(try files(of: disk, s, "rb") == files2)

        // The deleted photo is found: every sector, a complete copy that ended.
        let deleted = s.file("files-1/data/photos/big.raw")
        let found = try run([Paths.kanshi, "search", "--journal", journal, deleted, "--json"])
        #expect(found.ok, "\(found.stderr)")
        let f = ((try JSONSerialization.jsonObject(with: Data(found.stdout.utf8)) as! [String: Any])["files"] as! [[String: Any]])[0]
        #expect(f["coverage"] as? Double == 1)
        #expect((f["completeCopies"] as? [[String: Any]])?.isEmpty == false)
        #expect(try run([Paths.kanshi, "journal", "verify", journal]).ok)
    }
}
