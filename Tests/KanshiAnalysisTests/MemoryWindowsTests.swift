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
}
