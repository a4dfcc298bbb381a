import Foundation
import KanshiJournal

/// Memory-access features per time window, from the memory sensor's page records in a journal
/// (`sandbox run --memory-watch`), in the spirit of the RanSMAP dataset's memory columns:
/// how many pages the watched processes wrote, how many of those were executable, how random
/// the written pages were.
///
/// A page is *written* when a record stores new content for a virtual page the same process
/// had before; a page seen for the first time is *new*; an unmapped one is *gone*. A window
/// runs from a record's time rounded down to the window size; windows without records are left out.
public enum MemoryWindows {
    public static let names = [
        "mem_pages_written", "mem_pages_new", "mem_pages_gone", "mem_bytes_written_per_s",
        "mem_exec_pages_written", "mem_written_entropy", "mem_high_entropy_written", "mem_processes",
        "mem_exec_samples", "mem_exec_pages",
    ]

    /// A window of the VM sensor's execution samples (user code a timer interrupt stopped).
    public typealias ExecutionWindow = (startNs: UInt64, samples: Int, pages: Int)

    /// Pages at least this random (normalized entropy; 7.5 bits per byte) count as encrypted or compressed.
    public static let highEntropy: Float = 7.5 / 8
    /// Bit of a record's page flags: executable (`PageWalker.Flags.executable`).
    public static let executableFlag: UInt32 = 4

    struct Counters {
        var written = 0, new = 0, gone = 0, bytesWritten: UInt64 = 0, exec = 0, highEntropy = 0
        var entropySum: Float = 0
        var pids: Set<Int32> = []
    }

    struct PageKey: Hashable { var pid: Int32; var virtual: UInt64 }

    /// The journal's memory records as windows of `windowNs` (optionally only process `pid`'s),
    /// with the VM sensor's execution samples of the same windows (`execution`, windows of
    /// `windowNs`; a window with samples but no page record has zeros for the pages).
    public static func table(journal: String, windowNs: UInt64 = 1_000_000_000, pid: Int32? = nil,
                             execution: [ExecutionWindow] = []) throws -> FeatureTable {
        precondition(windowNs > 0)
        var windows: [UInt64: Counters] = [:]
        var seen: Set<PageKey> = []
        try JournalReader(directory: journal).forEachRecord { r in
            guard let p = try MemoryRecords.decode(r), pid == nil || p.pid == pid else { return }
            let start = p.timeNs - p.timeNs % windowNs
            var c = windows[start] ?? Counters()
            c.pids.insert(p.pid)
            let key = PageKey(pid: p.pid, virtual: p.virtual)
            if p.gone {
                c.gone += 1
                seen.remove(key)
            } else if seen.insert(key).inserted {
                c.new += 1
            } else {
                c.written += 1
                c.bytesWritten += UInt64(p.size)
                c.entropySum += p.entropy
                if p.entropy >= highEntropy { c.highEntropy += 1 }
                if p.flags & executableFlag != 0 { c.exec += 1 }
            }
            windows[start] = c
        }
        var executed: [UInt64: (samples: Int, pages: Int)] = [:]
        for w in execution {
            let start = w.startNs - w.startNs % windowNs
            let old = executed[start] ?? (0, 0)
            executed[start] = (old.samples + w.samples, old.pages + w.pages)
            if windows[start] == nil { windows[start] = Counters() }
        }
        var values: [Float] = [], starts: [UInt64] = [], written: [UInt64] = []
        let seconds = Float(windowNs) / 1e9
        for start in windows.keys.sorted() {
            let c = windows[start]!
            let x = executed[start] ?? (0, 0)
            values += [Float(c.written), Float(c.new), Float(c.gone), Float(c.bytesWritten) / seconds, Float(c.exec),
                       c.written > 0 ? c.entropySum / Float(c.written) : 0, Float(c.highEntropy), Float(c.pids.count),
                       Float(x.samples), Float(x.pages)]
            starts.append(start)
            written.append(c.bytesWritten)
        }
        return FeatureTable(names: names, values: values, windowStart: starts, writtenBytes: written)
    }

    /// The table as CSV: a header (`window_start_ns` then `names`), a row per window.
    public static func csv(_ t: FeatureTable) -> String {
        var out = (["window_start_ns"] + t.names).joined(separator: ",") + "\n"
        for r in 0..<t.rows { out += (["\(t.windowStart[r])"] + t.row(r).map { "\($0)" }).joined(separator: ",") + "\n" }
        return out
    }

    /// Reads a table written by `csv` / `export` (a run's `memory.csv`) with windows of `windowNs`
    /// (each start on a window boundary); errors name the file and line.
    public static func read(csv path: String, windowNs: UInt64 = 1_000_000_000) throws -> FeatureTable {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw AnalysisError.missingFile(path) }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        let expected = (["window_start_ns"] + names).joined(separator: ",")
        guard let header = lines.first, header == expected else {
            throw AnalysisError.malformed(file: path, line: 1, reason: "expected the header \(expected)")
        }
        var values: [Float] = [], starts: [UInt64] = [], written: [UInt64] = []
        let bytesColumn = names.firstIndex(of: "mem_bytes_written_per_s")!
        for (i, line) in lines.enumerated().dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count == names.count + 1 else {
                throw AnalysisError.malformed(file: path, line: i + 1, reason: "\(fields.count) fields, expected \(names.count + 1)")
            }
            guard let start = UInt64(fields[0]) else {
                throw AnalysisError.malformed(file: path, line: i + 1, reason: "window_start_ns '\(fields[0])' is not a time in ns")
            }
            guard start % windowNs == 0 else {
                throw AnalysisError.malformed(file: path, line: i + 1, reason: "window \(start) does not start on a \(windowNs / 1_000_000) ms boundary (memory.csv has windows of that length)")
            }
            if let last = starts.last, start <= last {
                throw AnalysisError.malformed(file: path, line: i + 1, reason: "window \(start) does not come after \(last)")
            }
            var row: [Float] = []
            for (k, f) in fields.dropFirst().enumerated() {
                guard let v = Float(f), v.isFinite, v >= 0 else {
                    throw AnalysisError.malformed(file: path, line: i + 1, reason: "\(names[k]) '\(f)' is not a non-negative number")
                }
                row.append(v)
            }
            values += row
            starts.append(start)
            written.append(UInt64(Double(row[bytesColumn]) * Double(windowNs) / 1e9))
        }
        return FeatureTable(names: names, values: values, windowStart: starts, writtenBytes: written)
    }

    /// `block` with the memory columns added: each block window gets the memory window that had
    /// ended by the block window's end (windows of `memoryWindowNs`, as `export` writes them), so
    /// no row sees memory activity from after it; a memory window without records is all zeros.
    public static func joined(_ block: FeatureTable, blockWindowNs: UInt64, memory: FeatureTable,
                              memoryWindowNs: UInt64 = 1_000_000_000) -> FeatureTable {
        precondition(blockWindowNs > 0 && memoryWindowNs > 0)
        let byStart = Dictionary(uniqueKeysWithValues: memory.windowStart.enumerated().map { ($1, $0) })
        let zeros = [Float](repeating: 0, count: memory.columns)
        var values: [Float] = []
        values.reserveCapacity(block.rows * (block.columns + memory.columns))
        for r in 0..<block.rows {
            values += block.row(r)
            let end = block.windowStart[r] + blockWindowNs
            let complete = end - end % memoryWindowNs
            if complete >= memoryWindowNs, let m = byStart[complete - memoryWindowNs] {
                values += memory.row(m)
            } else {
                values += zeros
            }
        }
        return FeatureTable(names: block.names + memory.names, values: values, windowStart: block.windowStart,
                            writtenBytes: block.writtenBytes)
    }

    /// Writes the windows of the journal's memory records from `fromNs` on to `path` as CSV;
    /// returns the number of windows.
    @discardableResult
    public static func export(journal: String, to path: String, fromNs: UInt64 = 0, windowNs: UInt64 = 1_000_000_000,
                              execution: [ExecutionWindow] = []) throws -> Int {
        var t = try table(journal: journal, windowNs: windowNs, execution: execution)
        let keep = (0..<t.rows).filter { t.windowStart[$0] + windowNs > fromNs }
        t = FeatureTable(names: t.names, values: keep.flatMap { Array(t.row($0)) }, windowStart: keep.map { t.windowStart[$0] },
                         writtenBytes: keep.map { t.writtenBytes[$0] })
        try Data(csv(t).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        return t.rows
    }
}
