import Foundation
import KanshiBlock
import KanshiCore
import KanshiJournal
import KanshiMount
import Logging
import Testing

/// DiskFile without FUSE: the byte-addressed view of a journaled disk, and
/// how it widens unaligned requests to whole sectors.
@Suite struct DiskFileTests {
    final class Fixture {
        let dir: String
        let imagePath: String
        let journalPath: String
        let writer: JournalWriter
        let file: DiskFile
        let size: Int

        init(size: Int = 64 << 10, fill: UInt8 = 0x11, readOnly: Bool = false) throws {
            dir = NSTemporaryDirectory() + "kanshi-diskfile-" + UUID().uuidString.prefix(8)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            imagePath = dir + "/disk.img"
            journalPath = dir + "/j"
            self.size = size
            _ = FileManager.default.createFile(atPath: imagePath, contents: Data(repeating: fill, count: size))
            writer = try JournalWriter(directory: journalPath, logger: Logger(label: "test"))
            file = DiskFile(disk: try JournaledDisk(imagePath: imagePath, journal: writer, readOnly: readOnly))
        }

        var image: [UInt8] { [UInt8](FileManager.default.contents(atPath: imagePath) ?? Data()) }

        /// Closes the journal and returns its block events with their data.
        func events() throws -> [(BlockEvent, [UInt8])] {
            try writer.close()
            var out: [(BlockEvent, [UInt8])] = []
            try JournalReader(directory: journalPath).forEachBlockEvent { e, d in out.append((e, Array(d))) }
            return out
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test func alignedWriteIsJournaledAsIs() throws {
        let f = try Fixture()
        let data = [UInt8](repeating: 0xab, count: 8192)
        #expect(try data.withUnsafeBytes { try f.file.write($0, at: 4096) } == 8192)
        #expect(Array(f.image[4096..<12288]) == data)
        let writes = try f.events().filter { $0.0.operation == .write }
        #expect(writes.count == 1)
        #expect(writes[0].0.lba == 8 && writes[0].0.length == 8192 && writes[0].1 == data)
    }

    @Test func unalignedWriteIsWidenedToWholeSectors() throws {
        let f = try Fixture()
        let data = [UInt8](repeating: 0x5a, count: 1000)
        #expect(try data.withUnsafeBytes { try f.file.write($0, at: 100) } == 1000)
        var expected = [UInt8](repeating: 0x11, count: f.size)
        expected.replaceSubrange(100..<1100, with: data)
        #expect(f.image == expected)
        let writes = try f.events().filter { $0.0.operation == .write }
        #expect(writes.count == 1)
        // Sectors 0–2 (bytes 0..<1536), with the old bytes around the new ones.
        #expect(writes[0].0.lba == 0 && writes[0].0.length == 1536)
        #expect(writes[0].1 == Array(expected[0..<1536]))
    }

    @Test func unalignedWriteWithinOneSector() throws {
        let f = try Fixture()
        #expect(try [UInt8]([1, 2, 3]).withUnsafeBytes { try f.file.write($0, at: 513) } == 3)
        var expected = [UInt8](repeating: 0x11, count: f.size)
        expected.replaceSubrange(513..<516, with: [1, 2, 3])
        #expect(f.image == expected)
        let writes = try f.events().filter { $0.0.operation == .write }
        #expect(writes.map { $0.0.lba } == [1] && writes[0].1 == Array(expected[512..<1024]))
    }

    @Test func unalignedReadReturnsTheBytesAndJournalsTheSectors() throws {
        let f = try Fixture()
        let data = [UInt8]((0..<4096).map { UInt8(truncatingIfNeeded: $0 * 7) })
        _ = try data.withUnsafeBytes { try f.file.write($0, at: 0) }
        var out = [UInt8](repeating: 0, count: 700)
        #expect(try out.withUnsafeMutableBytes { try f.file.read(into: $0, at: 300) } == 700)
        #expect(out == Array(data[300..<1000]))
        let reads = try f.events().filter { $0.0.operation == .read }
        #expect(reads.count == 1 && reads[0].0.lba == 0 && reads[0].0.length == 1024)
    }

    @Test func theEndOfTheDisk() throws {
        let f = try Fixture(size: 8192)
        var buf = [UInt8](repeating: 0, count: 4096)
        #expect(try buf.withUnsafeMutableBytes { try f.file.read(into: $0, at: 6144) } == 2048)
        #expect(try buf.withUnsafeMutableBytes { try f.file.read(into: $0, at: 8192) } == 0)
        #expect(try buf.withUnsafeBytes { try f.file.write($0, at: 6144) } == 2048, "a write running past the end writes what fits")
        #expect(throws: MountError.self) { try buf.withUnsafeBytes { try f.file.write($0, at: 8192) } }
        #expect(f.image.count == 8192)
    }

    @Test func punchHoleTrimsWholeSectorsAndZeroesTheEdges() throws {
        let f = try Fixture()
        try f.file.punchHole(offset: 1000, length: 5000)  // bytes 1000..<6000
        var expected = [UInt8](repeating: 0x11, count: f.size)
        expected.replaceSubrange(1000..<6000, with: repeatElement(0, count: 5000))
        #expect(f.image == expected)
        let events = try f.events()
        let trims = events.filter { $0.0.operation == .trim }
        #expect(trims.count == 1 && trims[0].0.lba == 2 && trims[0].0.length == 4608)
        let writes = events.filter { $0.0.operation == .write }.map { ($0.0.lba, $0.0.length) }
        #expect(writes.count == 2 && writes[0] == (1, 512) && writes[1] == (11, 512))
    }

    @Test func zeroRangeIsWriteZeroes() throws {
        let f = try Fixture()
        try f.file.zeroRange(offset: 4096, length: 8192)
        var expected = [UInt8](repeating: 0x11, count: f.size)
        expected.replaceSubrange(4096..<12288, with: repeatElement(0, count: 8192))
        #expect(f.image == expected)
        let zeros = try f.events().filter { $0.0.operation == .writeZeroes }
        #expect(zeros.count == 1 && zeros[0].0.lba == 8 && zeros[0].0.length == 8192)
    }

    @Test func syncRecordsAFlush() throws {
        let f = try Fixture()
        try f.file.sync()
        #expect(try f.events().filter { $0.0.operation == .flush }.count == 1)
    }

    @Test func readOnlyRefusesWrites() throws {
        let f = try Fixture(readOnly: true)
        #expect(throws: BlockError.self) { try [UInt8](repeating: 1, count: 512).withUnsafeBytes { try f.file.write($0, at: 0) } }
        #expect(throws: BlockError.self) { try f.file.punchHole(offset: 0, length: 4096) }
        #expect(f.image.allSatisfy { $0 == 0x11 })
    }

    @Test func concurrentUnalignedWritesToOneSectorLoseNothing() throws {
        let f = try Fixture(size: 4096)
        // 64 writers, each owning 8 bytes of sector 0, all at once.
        let file = f.file
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let bytes = [UInt8](repeating: UInt8(i), count: 8)
            _ = try? bytes.withUnsafeBytes { try file.write($0, at: UInt64(i * 8)) }
        }
        let img = f.image
        for i in 0..<64 { #expect(Array(img[(i * 8)..<(i * 8 + 8)]) == [UInt8](repeating: UInt8(i), count: 8)) }
    }
}
