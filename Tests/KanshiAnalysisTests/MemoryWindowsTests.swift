import Foundation
import KanshiAnalysis
import KanshiJournal
import Logging
import Testing

@Suite struct MemoryWindowsTests {
    static func page(_ w: JournalWriter, pid: Int32, virtual: UInt64, flags: UInt32, entropy: Float, gone: Bool = false, at t: UInt64) throws {
        let data = gone ? [] : [UInt8](repeating: 1, count: 4096)
        let prefix = MemoryRecords.prefix(pid: pid, flags: flags, virtual: virtual, physical: 0x1000, size: 4096, entropy: entropy, hash: 1)
        try prefix.withUnsafeBytes { p in
            try data.withUnsafeBytes { d in _ = try w.append(kind: .memoryPage, flags: gone ? MemoryRecords.flagGone : 0, timeNs: t, parts: [p, d]) }
        }
    }

    /// A fresh journal in a temporary directory (the caller removes it).
    static func journal() throws -> (String, JournalWriter) {
        let dir = NSTemporaryDirectory() + "kanshi-memwin-" + UUID().uuidString
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return (dir, try JournalWriter(directory: dir, logger: logger))
    }

    @Test func pagesAreCountedAsNewWrittenOrGoneInTheirWindow() throws {
        let (dir, w) = try Self.journal()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s: UInt64 = 1_000_000_000, base: UInt64 = 50 * s
        // Window 0: two pages first seen (one executable), another process's page.
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 1, entropy: 0.2, at: base + 100)
        try Self.page(w, pid: 7, virtual: 0x2000, flags: 4, entropy: 0.3, at: base + 200)
        try Self.page(w, pid: 8, virtual: 0x1000, flags: 1, entropy: 0.1, at: base + 300)
        // Window 1: both of pid 7's pages rewritten: one random, the executable one plain.
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 1, entropy: 0.99, at: base + s + 10)
        try Self.page(w, pid: 7, virtual: 0x2000, flags: 4, entropy: 0.5, at: base + s + 20)
        // Window 3 (none in 2): one gone, then mapped again (new).
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 0, entropy: 0, gone: true, at: base + 3 * s)
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 1, entropy: 0.4, at: base + 3 * s + 5)
        try w.close()

        let t = try MemoryWindows.table(journal: dir)
        #expect(t.windowStart == [base, base + s, base + 3 * s])
        func v(_ row: Int, _ name: String) -> Float { t.row(row)[t.row(row).startIndex + t.names.firstIndex(of: name)!] }
        #expect(v(0, "mem_pages_new") == 3 && v(0, "mem_pages_written") == 0 && v(0, "mem_processes") == 2)
        #expect(v(1, "mem_pages_written") == 2 && v(1, "mem_exec_pages_written") == 1 && v(1, "mem_high_entropy_written") == 1)
        #expect(abs(v(1, "mem_written_entropy") - 0.745) < 1e-4)
        #expect(v(1, "mem_bytes_written_per_s") == 8192 && t.writtenBytes[1] == 8192)
        #expect(v(2, "mem_pages_gone") == 1 && v(2, "mem_pages_new") == 1 && v(2, "mem_pages_written") == 0)
        // One process only.
        let only8 = try MemoryWindows.table(journal: dir, pid: 8)
        #expect(only8.rows == 1 && only8.row(0)[only8.names.firstIndex(of: "mem_pages_new")!] == 1)
        #expect(v(0, "mem_exec_samples") == 0 && v(0, "mem_exec_pages") == 0)
        // With the VM sensor's execution samples: joined to the page windows; a window with
        // samples and no page record (2) has zeros for the pages.
        let x = try MemoryWindows.table(journal: dir, execution: [(base + 10, 250, 31), (base + 2 * s, 120, 9)])
        func xv(_ row: Int, _ name: String) -> Float { x.row(row)[x.row(row).startIndex + x.names.firstIndex(of: name)!] }
        #expect(x.windowStart == [base, base + s, base + 2 * s, base + 3 * s])
        #expect(xv(0, "mem_exec_samples") == 250 && xv(0, "mem_exec_pages") == 31 && xv(0, "mem_pages_new") == 3)
        #expect(xv(2, "mem_exec_samples") == 120 && xv(2, "mem_pages_new") == 0 && xv(3, "mem_exec_samples") == 0)
    }

    @Test func aJournalWithoutMemoryRecordsHasNoWindowsAndAMissingOneIsAnError() throws {
        let (dir, w) = try Self.journal()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try w.appendNote("{\"event\":\"test\"}")
        try w.close()
        let t = try MemoryWindows.table(journal: dir)
        #expect(t.rows == 0 && t.names == MemoryWindows.names)
        #expect(MemoryWindows.csv(t) == "window_start_ns," + MemoryWindows.names.joined(separator: ",") + "\n")
        #expect(throws: (any Error).self) { _ = try MemoryWindows.table(journal: dir + "-missing") }
    }

    @Test func theCSVReadsBackAndJoinsOntoBlockWindowsWithoutLookingAhead() throws {
        let (dir, w) = try Self.journal()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s: UInt64 = 1_000_000_000, base: UInt64 = 50 * s
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 1, entropy: 0.2, at: base + 100)
        try Self.page(w, pid: 7, virtual: 0x1000, flags: 1, entropy: 0.9, at: base + s + 100)
        try Self.page(w, pid: 7, virtual: 0x2000, flags: 1, entropy: 0.9, at: base + s + 200)
        try w.close()
        let csv = dir + ".memory.csv"
        defer { try? FileManager.default.removeItem(atPath: csv) }
        #expect(try MemoryWindows.export(journal: dir, to: csv) == 2)
        let m = try MemoryWindows.read(csv: csv)
        let t = try MemoryWindows.table(journal: dir)
        #expect(m.names == t.names && m.values == t.values && m.windowStart == t.windowStart && m.writtenBytes == t.writtenBytes)

        // Block windows of 500 ms from base to base + 3.5 s, one column.
        let ms500 = s / 2
        let starts = (0..<7).map { base + UInt64($0) * ms500 }
        let block = FeatureTable(names: ["x"], values: starts.map { Float($0 - base) }, windowStart: starts, writtenBytes: starts.map { _ in 0 })
        let j = MemoryWindows.joined(block, blockWindowNs: ms500, memory: m)
        #expect(j.names == ["x"] + MemoryWindows.names && j.rows == 7 && j.windowStart == starts)
        let newColumn = j.names.firstIndex(of: "mem_pages_new")!, writtenColumn = j.names.firstIndex(of: "mem_pages_written")!
        // A window sees the last whole memory second that had ended by its own end: the first
        // (ending half-way through base's second) none; the next two base's second; then base + 1 s's.
        let news = (0..<7).map { j.row($0)[j.row($0).startIndex + newColumn] }
        let writes = (0..<7).map { j.row($0)[j.row($0).startIndex + writtenColumn] }
        #expect(news == [0, 1, 1, 1, 1, 0, 0])
        #expect(writes == [0, 0, 0, 1, 1, 0, 0])
        #expect((0..<7).map { j.row($0).first! } == block.values)
    }

    @Test func aBadMemoryCSVIsRefusedNamingTheLine() throws {
        let dir = NSTemporaryDirectory() + "kanshi-memcsv-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let header = "window_start_ns," + MemoryWindows.names.joined(separator: ",")
        let row = { (start: String, v: String) in ([start] + MemoryWindows.names.map { _ in v }).joined(separator: ",") }
        let cases: [(String, String)] = [
            ("window_start_ns,x\n", ":1: expected the header"),
            (header + "\n" + row("1000000000", "1") + "\n1,2,3\n", ":3: 3 fields"),
            (header + "\n" + row("soon", "1") + "\n", ":2: window_start_ns 'soon'"),
            (header + "\n" + row("1000000000", "-1") + "\n", ":2: mem_pages_written '-1'"),
            (header + "\n" + row("2000000000", "1") + "\n" + row("1000000000", "1") + "\n", ":3: window 1000000000 does not come after 2000000000"),
            (header + "\n" + row("1500000000", "1") + "\n", ":2: window 1500000000 does not start on a 1000 ms boundary"),
        ]
        for (i, (text, message)) in cases.enumerated() {
            let path = dir + "/bad-\(i).csv"
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            do {
                _ = try MemoryWindows.read(csv: path)
                Issue.record("\(path) was accepted")
            } catch {
                #expect("\(error)".contains(path + message), "\(error)")
            }
        }
        #expect(throws: (any Error).self) { _ = try MemoryWindows.read(csv: dir + "/none.csv") }
    }
}
