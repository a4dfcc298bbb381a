import Foundation
import Testing
@testable import KanshiExt4

@Suite(.enabled(if: Tools.available, Tools.missingReason))
struct JournalReplayTests {
    func block(_ fs: Ext4FileSystem, _ n: UInt64) throws -> [UInt8] { try fs.readBlock(n) }

    @Test("committed transactions are replayed, revoked blocks are not (debugfs journal writes)")
    func replayAndRevoke() throws {
        let dir = TempDir()
        let img = dir.path + "/j.img"
        try run(Tools.mkfs!, ["-q", "-F", "-t", "ext4", "-b", "4096", img, "32M"])
        let a = pseudoRandom(4096, seed: 11), b = pseudoRandom(4096, seed: 12)
        var escaped = pseudoRandom(4096, seed: 13)
        escaped[0] = 0xC0; escaped[1] = 0x3B; escaped[2] = 0x39; escaped[3] = 0x98  // jbd2 must escape this block
        writeFile(dir.path + "/a", a); writeFile(dir.path + "/b", b); writeFile(dir.path + "/e", escaped)
        let cmds = "jo\njw -b 5000 \(dir.path)/a\njw -b 5001 \(dir.path)/b\njw -b 5002 \(dir.path)/e\njc\njo\njw -r 5001\njc\n"
        writeFile(dir.path + "/cmds", Array(cmds.utf8))
        try run(Tools.debugfs!, ["-w", "-f", dir.path + "/cmds", img])

        let replayed = try Ext4FileSystem(reader: try FileImageReader(path: img))
        let raw = try Ext4FileSystem(reader: try FileImageReader(path: img), replayJournal: false)
        #expect(raw.superblock.needsRecovery)
        #expect(replayed.replayedJournalBlocks >= 2)
        #expect(try block(replayed, 5000) == a)
        #expect(try block(replayed, 5002) == escaped)
        #expect(try block(replayed, 5001) == (try block(raw, 5001)), "revoked in a later transaction")
        #expect(try block(raw, 5000) != a)
        // The oracle: e2fsck replays the journal into a copy.
        let fixed = dir.path + "/fixed.img"
        try FileManager.default.copyItem(atPath: img, toPath: fixed)
        try fsckOptimizeDirectories(fixed)
        let after = try Ext4FileSystem(reader: try FileImageReader(path: fixed))
        for n: UInt64 in [5000, 5001, 5002] { #expect(try block(after, n) == (try block(replayed, n)), "block \(n)") }
    }

    @Test("an image copied while mounted reads like the recovered file system", .timeLimit(.minutes(10)),
          .enabled(if: LoopMount.available, LoopMount.reason))
    func snapshotWhileMounted() throws {
        let dir = TempDir()
        let img = dir.path + "/live.img", snap = dir.path + "/snap.img", mnt = dir.path + "/mnt"
        mkdirs(mnt)
        try run(Tools.mkfs!, ["-q", "-F", "-t", "ext4", "-b", "4096", img, "64M"])
        // Metadata of new files reaches the journal within a commit interval;
        // its home blocks are written back only after ~30 s, so a copy taken
        // now needs recovery and, without replay, shows almost nothing.
        let script = """
            set -e
            trap 'umount \(mnt) 2>/dev/null || true' EXIT
            mount -o loop,commit=1 \(img) \(mnt)
            mkdir -p \(mnt)/victim/sub
            for i in $(seq 1 200); do echo "file $i" > \(mnt)/victim/sub/f$i; done
            head -c 300000 /dev/urandom > \(mnt)/victim/data.bin
            sync \(mnt)/victim/data.bin
            sleep 3
            cp --sparse=never \(img) \(snap)
            umount \(mnt)
            """
        try run("/bin/sh", ["-c", script])
        let replayed = try Ext4FileSystem(reader: try FileImageReader(path: snap))
        let fixed = dir.path + "/fixed.img"
        try FileManager.default.copyItem(atPath: snap, toPath: fixed)
        try fsckOptimizeDirectories(fixed)
        let recovered = try Ext4FileSystem(reader: try FileImageReader(path: fixed))
        let ours = try replayed.files().map { "\($0.path) \($0.size)" }.sorted()
        let theirs = try recovered.files().map { "\($0.path) \($0.size)" }.sorted()
        #expect(ours == theirs)
        #expect(ours.count > 200)
        #expect(try replayed.read(path: "/victim/data.bin") == (try recovered.read(path: "/victim/data.bin")))
        #expect(try replayed.read(path: "/victim/data.bin").count == 300_000, "fsynced before the copy")
        #expect(try replayed.read(path: "/victim/sub/f17") == (try recovered.read(path: "/victim/sub/f17")))
        let map = try BlockOwnerMap(fileSystem: replayed)
        #expect(map.runs.filter { $0.owner == .allocatedUnowned }.isEmpty)
        let rawFiles = (try? Ext4FileSystem(reader: try FileImageReader(path: snap), replayJournal: false).files().count).map(String.init) ?? "unreadable"
        print("snapshot while mounted: needs_recovery \(replayed.superblock.needsRecovery), \(replayed.replayedJournalBlocks) blocks replayed from the journal; \(ours.count) entries with replay, \(rawFiles) without")
    }
}
