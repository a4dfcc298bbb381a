import Foundation
import KanshiBlock
import KanshiExt4
import KanshiHistory
import KanshiJournal
import KanshiMount
import KanshiSandbox
import Logging
import Testing

/// Selective undo on a real ext4 disk written through the kernel: only the named files go
/// back to a past moment, every other change stays, and the undo is journaled like any write.
@Suite(.serialized)
struct SelectiveUndoTests {
    static let logger = Logger(label: "test")

    /// An ext4 image of docs/a.txt ... docs/e.txt, journaled from the start.
    static func disk(_ s: Scratch) throws -> (JournaledDisk, JournalWriter) {
        let tree = s.file("tree/docs")
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        for n in ["a", "b", "c", "d", "e"] {
            try Data(String(repeating: "\(n) original line\n", count: 500 + n.unicodeScalars.first!.hashValue % 7).utf8)
                .write(to: URL(fileURLWithPath: "\(tree)/\(n).txt"))
        }
        let img = s.file("disk.img")
        try makeImage(img, bytes: 32 << 20)
        let mkfs = try run([MountCapability.tool("mkfs.ext4"), "-q", "-F", "-b", "4096", "-d", s.file("tree"), img])
        guard mkfs.ok else { throw Failure("mkfs.ext4: \(mkfs.stderr)") }
        let writer = try JournalWriter(directory: s.file("journal"), logger: logger)
        return (try JournaledDisk(imagePath: img, journal: writer, readOnly: false), writer)
    }

    /// Changes made through the kernel's ext4 on the journaled disk.
    static func mounted(_ disk: JournaledDisk, _ s: Scratch, _ body: (String) throws -> Void) throws {
        let mp = s.file("mnt-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let m = try DiskMounter.mount(file: DiskFile(disk: disk), options: MountOptions(mountPoint: mp), logger: logger)
        do { try body(m.mountPoint) } catch { try? m.unmount(); throw error }
        try m.unmount()
    }

    static func read(_ fs: Ext4FileSystem, _ path: String) -> String? {
        (try? fs.read(path: path)).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test(.enabled(if: MountCapability.usable, MountCapability.reason), .timeLimit(.minutes(10)))
    func onlyTheNamedFilesGoBackAndOtherChangesStay() throws {
        let s = Scratch("undo")
        let (disk, writer) = try Self.disk(s)
        defer { try? writer.close() }
        let original = try Ext4FileSystem(reader: FileImageReader(path: disk.image.path))
        let before = ["a", "b", "c", "d", "e"].map { Self.read(original, "/docs/\($0).txt") }
        let moment = UInt64(Date().timeIntervalSince1970 * 1e9)
        usleep(2000)
        try Self.mounted(disk, s) { root in
            // The attacker: overwrites a and b, encrypts c to c.locked, leaves a note.
            try Data("ENCRYPTED a".utf8).write(to: URL(fileURLWithPath: root + "/docs/a.txt"))
            try Data("ENCRYPTED b".utf8).write(to: URL(fileURLWithPath: root + "/docs/b.txt"))
            try Data("ENCRYPTED c".utf8).write(to: URL(fileURLWithPath: root + "/docs/c.txt"))
            try FileManager.default.moveItem(atPath: root + "/docs/c.txt", toPath: root + "/docs/c.txt.locked")
            try FileManager.default.createDirectory(atPath: root + "/ransom", withIntermediateDirectories: true)
            try Data("pay".utf8).write(to: URL(fileURLWithPath: root + "/ransom/note.txt"))
            // Someone else, at the same time: a new file and an edit.
            try Data("kept".utf8).write(to: URL(fileURLWithPath: root + "/keep.txt"))
            try Data("e edited by its owner".utf8).write(to: URL(fileURLWithPath: root + "/docs/e.txt"))
        }
        let report = try SelectiveUndo.run(disk: disk, paths: ["/docs/a.txt", "/docs/b.txt", "/docs/c.txt", "/docs/c.txt.locked",
                                                               "/ransom/note.txt", "/ransom", "/docs/d.txt", "/docs/../etc/passwd"],
                                           to: .time(ns: moment), logger: Self.logger)
        #expect(Set(report.restored) == ["/docs/a.txt", "/docs/b.txt", "/docs/c.txt"])
        #expect(Set(report.removed) == ["/docs/c.txt.locked", "/ransom/note.txt", "/ransom"])
        #expect(report.unchanged == 1)  // d was never touched
        #expect(report.skipped.map { $0.path } == ["/docs/../etc/passwd"])
        #expect(report.bytesRestored == UInt64(before[0...2].map { $0?.utf8.count ?? 0 }.reduce(0, +)))

        let now = try Ext4FileSystem(reader: FileImageReader(path: disk.image.path))
        #expect(Self.read(now, "/docs/a.txt") == before[0] && Self.read(now, "/docs/b.txt") == before[1] && Self.read(now, "/docs/c.txt") == before[2])
        #expect(Self.read(now, "/docs/d.txt") == before[3])
        #expect(Self.read(now, "/docs/c.txt.locked") == nil && Self.read(now, "/ransom/note.txt") == nil)
        #expect(Self.read(now, "/keep.txt") == "kept", "another process's new file stays")
        #expect(Self.read(now, "/docs/e.txt") == "e edited by its owner", "another process's edit stays")
        let e2fsck = try run([MountCapability.tool("e2fsck"), "-fn", disk.image.path])
        #expect(e2fsck.ok, "\(e2fsck.stdout)\(e2fsck.stderr)")

        // The undo went through the journal: rolling back to just before it brings the attack back.
        _ = try disk.rollBack(to: .sequence(report.startSequence - 1))
        let again = try Ext4FileSystem(reader: FileImageReader(path: disk.image.path))
        #expect(Self.read(again, "/docs/c.txt.locked") == "ENCRYPTED c")
        #expect(Self.read(again, "/keep.txt") == "kept")
    }

    /// Paths that are directories then or now are left alone with the reason, and nothing else moves.
    @Test(.enabled(if: MountCapability.usable, MountCapability.reason), .timeLimit(.minutes(10)))
    func directoriesAreLeftAloneWithTheReason() throws {
        let s = Scratch("undo-dirs")
        let (disk, writer) = try Self.disk(s)
        defer { try? writer.close() }
        let moment = UInt64(Date().timeIntervalSince1970 * 1e9)
        usleep(2000)
        try Self.mounted(disk, s) { root in
            // A file replaced by a directory of the same name.
            try FileManager.default.removeItem(atPath: root + "/docs/d.txt")
            try FileManager.default.createDirectory(atPath: root + "/docs/d.txt/inside", withIntermediateDirectories: true)
        }
        let report = try SelectiveUndo.run(disk: disk, paths: ["/docs", "/docs/d.txt"], to: .time(ns: moment), logger: Self.logger)
        #expect(report.restored.isEmpty && report.removed.isEmpty)
        let why = Dictionary(uniqueKeysWithValues: report.skipped.map { ($0.path, $0.reason) })
        #expect(why["/docs"]?.contains("a directory then") == true, "\(why)")
        #expect(why["/docs/d.txt"]?.contains("a directory now, a file then") == true, "\(why)")
        let now = try Ext4FileSystem(reader: FileImageReader(path: disk.image.path))
        #expect(Self.read(now, "/docs/a.txt") != nil && (try? now.lookup(path: "/docs/d.txt/inside")) != nil)
    }

    @Test func aDiskWithoutJournalIsRefused() throws {
        let s = Scratch("undo-bad")
        let img = s.file("disk.img")
        try makeImage(img, bytes: 1 << 20)
        let disk = try JournaledDisk(imagePath: img, journal: nil, readOnly: false)
        #expect { try SelectiveUndo.run(disk: disk, paths: ["/a"], to: .sequence(1), logger: Self.logger) } throws: {
            "\($0)".contains("no journal")
        }
    }
}
