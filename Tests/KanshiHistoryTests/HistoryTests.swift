import Foundation
import KanshiBlock
import KanshiCore
import KanshiHistory
import KanshiJournal
import KanshiSystem
import Logging
import Testing

final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "kanshi-history-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let quiet: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .critical
    return l
}()

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

func contents(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }

/// A disk image with a journal, driven through JournaledDisk as the NBD server does.
final class Recorder {
    let dir = TempDir()
    var image: String { dir.path + "/disk.img" }
    var journal: String { dir.path + "/journal" }
    var writer: JournalWriter!
    var disk: JournaledDisk!
    let size: Int

    init(size: Int, initial: [UInt8]? = nil) throws {
        self.size = size
        _ = FileManager.default.createFile(atPath: dir.path + "/disk.img", contents: Data(initial ?? [UInt8](repeating: 0, count: size)))
        try open()
    }

    func open() throws {
        writer = try JournalWriter(directory: journal, logger: quiet)
        disk = try JournaledDisk(imagePath: image, journal: writer, readOnly: false)
    }

    func close() throws {
        try writer.close()
        writer = nil
        disk = nil
    }

    /// Random writes (any 512-byte multiple, unaligned to 4 KiB), trims and zeroing.
    func randomChanges(_ n: Int, rng: inout SplitMix) throws {
        for _ in 0..<n {
            let sectors = 1 + rng.below(24)
            let lba = UInt64(rng.below(size / 512 - sectors))
            switch rng.below(10) {
            case 0:
                try disk.trim(offset: lba * 512, length: UInt32(sectors * 512), fua: false, connection: 1)
            case 1:
                try disk.writeZeroes(offset: lba * 512, length: UInt32(sectors * 512), fua: false, connection: 1)
            case 2:
                let a = rng.bytes(sectors * 512), b = rng.bytes(512)
                try a.withUnsafeBytes { pa in
                    try b.withUnsafeBytes { pb in
                        try disk.write(batch: [(pa, lba * 512), (pb, UInt64(rng.below(size / 512)) * 512)], connection: 2)
                    }
                }
            default:
                let a = rng.bytes(sectors * 512)
                try a.withUnsafeBytes { try disk.write($0, at: lba * 512, fua: false, connection: 1) }
            }
        }
        try disk.flush(connection: 1)
    }

    var lastSequence: UInt64 { get throws { try VersionIndex(journal: journal).lastSequence } }
}

@Suite struct TimePointTests {
    @Test func parsesEveryForm() throws {
        #expect(try TimePoint(parsing: "seq:42") == .sequence(42))
        #expect(try TimePoint(parsing: "#7") == .sequence(7))
        #expect(try TimePoint(parsing: "1234") == .sequence(1234))
        #expect(try TimePoint(parsing: "1763789400123456789") == .time(ns: 1_763_789_400_123_456_789))
        #expect(try TimePoint(parsing: "1970-01-01T00:00:01Z") == .time(ns: 1_000_000_000))
        #expect(try TimePoint(parsing: "2026-11-22T05:30:00.25Z") == .time(ns: 1_795_325_400_250_000_000))
        #expect(try TimePoint(parsing: "2026-11-22T14:30:00.25+09:00") == .time(ns: 1_795_325_400_250_000_000))
        #expect(try TimePoint(parsing: "2026-11-22T05:30:00.123456789123Z") == .time(ns: 1_795_325_400_123_456_789))
        let ns: UInt64 = 1_795_325_400_000_000_042
        #expect(try TimePoint(parsing: RFC3339.format(ns)) == .time(ns: ns))
    }

    @Test(arguments: ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-22T05:30:00", "2026-11-22T05:30:00.Z",
                      "2026-11-22 05:30", "seq:x", "2026-11-22T05:30:00Z trailing", "99999999999999999999"])
    func refusesBadTimes(_ text: String) {
        #expect {
            _ = try TimePoint(parsing: text)
        } throws: { error in
            "\(error)".contains("is not a time") && "\(error)".contains("RFC 3339")
        }
    }
}

@Suite struct RestoreTests {
    /// The past image at every step equals a snapshot taken then, across a
    /// reopened journal, a saved-then-extended index and a deleted index.
    @Test func everyPastStateIsRebuiltExactly() throws {
        var rng = SplitMix(state: 7)
        let size = 1 << 20
        let r = try Recorder(size: size, initial: rng.bytes(size))
        var snapshots: [(UInt64, [UInt8])] = [(0, contents(r.image))]
        for step in 0..<6 {
            try r.randomChanges(40, rng: &rng)
            snapshots.append((try r.lastSequence, contents(r.image)))
            if step == 2 { try r.close(); try r.open() }  // a second session
        }
        func check() throws {
            let index = try VersionIndex(journal: r.journal)
            for (seq, expected) in snapshots {
                let past = try PastImage(index: index, at: .sequence(seq), imagePath: r.image)
                let out = r.dir.path + "/restored-\(seq).img"
                let report = try Restore.write(past, to: out)
                #expect(report.blocksUnknown == 0)
                #expect(contents(out) == expected, "restore at seq \(seq)")
                // Reading arbitrary unaligned ranges gives the same bytes.
                var buf = [UInt8](repeating: 0, count: 12_345)
                try buf.withUnsafeMutableBytes { try past.read(into: $0, at: 3_000) }
                #expect(buf == Array(expected[3_000..<3_000 + 12_345]))
            }
        }
        try check()
        try check()  // from the saved index
        try FileManager.default.removeItem(atPath: r.journal + "/" + VersionIndex.fileName)
        try check()  // rebuilt
        // A damaged index file is rebuilt, not trusted.
        _ = FileManager.default.createFile(atPath: r.journal + "/" + VersionIndex.fileName, contents: Data(repeating: 0xAB, count: 500))
        try check()
        #expect(try JournalVerifier.verify(directory: r.journal).ok)
    }

    @Test func rollbackRevertsAndCanBeUndone() throws {
        var rng = SplitMix(state: 11)
        let size = 512 * 1024
        let r = try Recorder(size: size, initial: rng.bytes(size))
        try r.randomChanges(30, rng: &rng)
        let good = contents(r.image)
        let goodSeq = try r.lastSequence
        try r.randomChanges(50, rng: &rng)  // the "attack"
        let damaged = contents(r.image)
        #expect(damaged != good)
        let report = try r.disk.rollBack(to: .sequence(goodSeq))
        #expect(report.blocks > 0 && report.blocksUnknown == 0)
        #expect(contents(r.image) == good)
        // Undo: back to the moment before the rollback started.
        let undo = try r.disk.rollBack(to: .sequence(report.startSequence - 1))
        #expect(undo.blocks == report.blocks)
        #expect(contents(r.image) == damaged)
        // Rolling back to where it already is changes nothing.
        #expect(try r.disk.rollBack(to: .sequence(report.startSequence - 1)).blocks == 0)
        try r.close()
        #expect(try JournalVerifier.verify(directory: r.journal).ok)
    }

    @Test func diffListsChangedRangesOnly() throws {
        let r = try Recorder(size: 256 * 1024)
        let a = [UInt8](repeating: 0x41, count: 8192)
        try a.withUnsafeBytes { try r.disk.write($0, at: 16384, fua: false, connection: 1) }
        let t1 = try r.lastSequence
        try a.withUnsafeBytes { try r.disk.write($0, at: 16384, fua: false, connection: 1) }  // same content again
        var rng = SplitMix(state: 3)
        let b = rng.bytes(4096 * 3)
        try b.withUnsafeBytes { try r.disk.write($0, at: 65536, fua: false, connection: 1) }
        try r.disk.trim(offset: 16384, length: 4096, fua: false, connection: 1)
        let index = try VersionIndex(journal: r.journal)
        let diff = try DiskDiff.between(PastImage(index: index, at: .sequence(t1), imagePath: r.image),
                                        PastImage(index: index, at: .sequence(index.lastSequence), imagePath: r.image))
        #expect(diff.ranges.map(\.lba) == [32, 128])
        #expect(diff.ranges.map(\.bytes) == [4096, 12288])
        #expect(diff.rewrittenUnchanged == 1)
        #expect(diff.ranges[0].meanEntropy == 0)
        #expect(diff.ranges[1].meanEntropy > 0.95)
    }

    @Test func anEmptyJournalIsNamed() throws {
        let d = TempDir()
        try FileManager.default.createDirectory(atPath: d.path + "/j", withIntermediateDirectories: true)
        #expect { _ = try VersionIndex(journal: d.path + "/j") } throws: { "\($0)".contains("holds no segment") }
        #expect { _ = try VersionIndex(journal: d.path + "/missing") } throws: { "\($0)".contains("no such directory") }
    }
}

@Suite struct SearchTests {
    @Test func findsAFileItsCopiesAndWhenItWasComplete() throws {
        var rng = SplitMix(state: 5)
        let size = 4 << 20
        let r = try Recorder(size: size)
        let file = rng.bytes(40_000)
        let path = r.dir.path + "/evidence.bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data(file))
        var padded = file
        padded += [UInt8](repeating: 0, count: 40_960 - file.count)
        // Written at 1 MiB, copied unaligned (sector 3 of a block) at 2 MiB + 1536, then the first copy overwritten.
        try padded.withUnsafeBytes { try r.disk.write($0, at: 1 << 20, fua: false, connection: 1) }
        try padded.withUnsafeBytes { try r.disk.write($0, at: (2 << 20) + 1536, fua: false, connection: 1) }
        let noise = rng.bytes(8192)
        try noise.withUnsafeBytes { try r.disk.write($0, at: 1 << 20, fua: false, connection: 1) }
        // Zeros and patterns are never indexed.
        try [UInt8](repeating: 0, count: 4096).withUnsafeBytes { try r.disk.write($0, at: 3 << 20, fua: false, connection: 1) }
        try [UInt8]((0..<4096).map { UInt8($0 % 16) }).withUnsafeBytes { try r.disk.write($0, at: 3 << 20, fua: false, connection: 1) }
        let index = try SectorHashIndex(versions: VersionIndex(journal: r.journal))
        let found = try index.search(file: path)
        #expect(found.coverage == 1)
        #expect(found.probativeSectors == 79)  // 40000 bytes: 78 full sectors and a partial one
        #expect(found.blocks[0].wholeBlock.map(\.lba) == [2048])
        #expect(found.blocks[0].wholeBlock[0].goneNs != nil)
        #expect(found.blocks[0].sectors[0].map(\.lba).sorted() == [2048, 4099])
        #expect(found.blocks[2].wholeBlock.first?.goneNs == nil)
        #expect(found.completeCopies.count == 1 && found.completeCopies[0].to == nil)
        // No entry for the zero or pattern blocks.
        let versions = index.versions
        for e in index.entries { #expect(versions.versions[e.version].block != 768) }
        // A file never written is not found; a saved index gives the same answer.
        let other = r.dir.path + "/other.bin"
        _ = FileManager.default.createFile(atPath: other, contents: Data(rng.bytes(9000)))
        let again = try SectorHashIndex(versions: VersionIndex(journal: r.journal))
        #expect(again.entries.count == index.entries.count)
        #expect(try again.search(file: other).foundSectors == 0)
        #expect(try again.search(file: path).coverage == 1)
    }

    @Test func contentOnTheDiskBeforeRecordingIsFoundThroughBases() throws {
        var rng = SplitMix(state: 9)
        let size = 1 << 20
        var initial = [UInt8](repeating: 0, count: size)
        let file = rng.bytes(8192)
        initial.replaceSubrange(65536..<65536 + 8192, with: file)
        let r = try Recorder(size: size, initial: initial)
        let path = r.dir.path + "/old.bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data(file))
        // Overwrite it (a ransomware-like in-place change): its base keeps the old content.
        let enc = rng.bytes(8192)
        try enc.withUnsafeBytes { try r.disk.write($0, at: 65536, fua: false, connection: 1) }
        let found = try SectorHashIndex(versions: VersionIndex(journal: r.journal)).search(file: path)
        #expect(found.coverage == 1)
        #expect(found.completeCopies.count == 1)
        #expect(found.completeCopies.first?.from == 0)
        #expect(found.completeCopies.first?.to != nil)
    }
}
