import Foundation
import KanshiCore
import Testing
@testable import KanshiJournal

@Suite struct MemoryRecordTests {
    static func appendPage(_ w: JournalWriter, pid: Int32, virtual: UInt64, data: [UInt8], gone: Bool = false, time: UInt64) throws {
        let prefix = MemoryRecords.prefix(pid: pid, flags: 0b101, virtual: virtual, physical: virtual >> 8, size: 4096,
                                          entropy: 0.5, hash: 0xfeed)
        try prefix.withUnsafeBytes { p in
            try data.withUnsafeBytes { d in
                _ = try w.append(kind: .memoryPage, flags: gone ? MemoryRecords.flagGone : 0, timeNs: time, parts: [p, d])
            }
        }
    }

    @Test func pagesRoundTripAndAreCountedVerifiedAndExported() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path + "/j", logger: testLogger)
        let a = (0..<4096).map { UInt8($0 % 251) }, b = [UInt8](repeating: 7, count: 4096)
        try Self.appendPage(w, pid: 42, virtual: 0x7f00_0000_1000, data: a, time: 1_000_000_001)
        try appendWrite(w, lba: 8, data: [UInt8](repeating: 1, count: 4096))  // block records beside them
        try Self.appendPage(w, pid: 42, virtual: 0x7f00_0000_1000, data: b, time: 2_000_000_002)
        try Self.appendPage(w, pid: 42, virtual: 0x7f00_0000_1000, data: [], gone: true, time: 3_000_000_003)
        try w.close()
        var pages: [(UInt64, Int32, UInt64, Bool, [UInt8])] = []
        try JournalReader(directory: dir.path + "/j").forEachRecord { r in
            if let p = try MemoryRecords.decode(r) { pages.append((p.timeNs, p.pid, p.virtual, p.gone, Array(p.data))) }
        }
        #expect(pages.map(\.0) == [1_000_000_001, 2_000_000_002, 3_000_000_003])
        #expect(pages.allSatisfy { $0.1 == 42 && $0.2 == 0x7f00_0000_1000 })
        #expect(pages.map(\.3) == [false, false, true])
        #expect(pages[0].4 == a && pages[1].4 == b && pages[2].4.isEmpty)
        let report = try JournalVerifier.verify(directory: dir.path + "/j")
        #expect(report.ok && report.kinds["memory-page"] == 3 && report.kinds["write"] == 1)
        let s = try MemoryExport.export(journal: JournalReader(directory: dir.path + "/j"), csv: dir.path + "/memory.csv",
                                        pagesDirectory: dir.path + "/pages")
        #expect(s == MemoryExport.Summary(rows: 3, pages: 2, bytes: 8192))
        let csv = try String(contentsOfFile: dir.path + "/memory.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 4)
        #expect(csv[1] == "1,1,1,42,0x7f0000001000,0x7f00000010,4096,rwx,0.5,feed,stored")
        #expect(csv[3].hasSuffix(",gone"))
        #expect(FileManager.default.contents(atPath: dir.path + "/pages/42-7f0000001000-3.page") == Data(b))
    }

    @Test func aRecordWhoseDataDisagreesWithItsSizeIsCorrupt() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        try Self.appendPage(w, pid: 1, virtual: 0x1000, data: [1, 2, 3], time: 5)  // says 4096 bytes, carries 3
        try Self.appendPage(w, pid: 1, virtual: 0x1000, data: [1], gone: true, time: 6)  // gone, yet data
        try w.close()
        var errors: [String] = []
        try JournalReader(directory: dir.path).forEachRecord { r in
            do { _ = try MemoryRecords.decode(r) } catch { errors.append("\(error)") }
        }
        #expect(errors.count == 2)
        #expect(errors[0].contains("says 4096 bytes but carries 3"))
        #expect(errors[1].contains("a gone page"))
    }
}
