import ArgumentParser
import KanshiFleet
import Foundation
import KanshiAnalysis
import KanshiJournal
import KanshiSystem

struct Journal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, verify and export journals.",
        subcommands: [JournalInfo.self, JournalVerify.self, JournalExport.self, JournalMemoryFeatures.self, JournalFeatures.self])
}

struct JournalInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Summarise a journal: segments, records by kind, time span, size.")

    @Argument(help: "Journal directory.")
    var journal: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let report = try runReport(journal)
        if json {
            Output.line(try Output.json(reportJSON(report)))
            return
        }
        let first = report.segments.compactMap(\.firstTimeNs).first
        let last = report.segments.compactMap(\.lastTimeNs).last
        Output.line("journal   \(report.directory)")
        Output.line("segments  \(report.segments.count) (\(report.segments.filter(\.sealed).count) sealed)")
        Output.line("records   \(report.records)")
        Output.line("size      \(Output.bytes(report.bytes))")
        Output.line("from      \(Output.time(first))")
        Output.line("to        \(Output.time(last))")
        for (kind, n) in report.kinds.sorted(by: { $0.key < $1.key }) {
            Output.line("  \(kind.padding(toLength: 13, withPad: " ", startingAt: 0)) \(n)")
        }
        if let p = report.problem { Output.line("DAMAGED   \(p) (run `kanshi journal verify`)") }
        if let t = report.tornTail { Output.line("torn tail \(t) (cut off when the journal is next opened for writing)") }
        if let staged = JournalWriter.stagingFile(of: report.directory) {
            Output.line("staging   \(staged) (a server is writing this journal, or was killed: its last records are written when the journal is next opened for writing)")
        }
    }
}

struct JournalVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every record checksum, sequence number and the SHA-256 chain of segments.",
        discussion: "Exits 0 when the journal is intact, 1 naming the first bad record and why.")

    @Argument(help: "Journal directory.")
    var journal: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let report = try runReport(journal)
        if json {
            Output.line(try Output.json(reportJSON(report)))
        } else {
            for s in report.segments {
                let span = s.lastSequence.map { "#\(s.firstSequence)-#\($0)" } ?? "empty"
                let state = s.sealed ? "sealed \(s.hash!.prefix(16))…" : "open, \(s.uncoveredBytes) bytes after last checkpoint"
                Output.line("segment \(s.index): \(s.records) records \(span), \(Output.bytes(s.bytes)), \(state)")
            }
            if let t = report.tornTail {
                Output.line("note: torn record at the end: \(t) (a crash; cut off when next opened for writing)")
            }
            if let p = report.problem {
                Output.line("FAILED: \(p)")
            } else {
                Output.line("OK: \(report.records) records in \(report.segments.count) segments; checksums, sequence and hash chain intact")
            }
        }
        if !report.ok { throw ExitCode(1) }
    }
}

struct JournalExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export block events as RanSAP-compatible CSV, as the fleet's Parquet tables, and memory pages as CSV.",
        discussion: """
            --out: rows are one per 4096-byte piece of each request: \
            seconds,nanoseconds,LBA,size for reads, plus entropy #1 and #2 for writes \
            (the columns of the RanSAP dataset; LBA in 512-byte sectors).

            --parquet DIR: the journal is verified, then its block records and the sector \
            hashes `kanshi search` uses go into DIR/blocks/ and DIR/hashes/ as Parquet, \
            partitioned by host and UTC day (DIR/blocks/host=H/day=YYYY-MM-DD/...), for \
            `kanshi fleet` (Spark). Columns: recording, seq, time_ns, op, lba, length, \
            entropy, segment, record_offset, data_offset, entropies (blocks); recording, seq, \
            time_ns, op, lba, piece (0-7 a sector of its 4 KiB block, 8 the whole block), hash \
            (XXH3-64; zeros and repeated patterns left out), segment, data_offset (hashes). \
            Exporting a recording again replaces its files; a failed export changes nothing. \
            Needs pyarrow (scripts/setup.sh installs it in .build/python).
            """)

    @Argument(help: "Journal directory.")
    var journal: String

    @Option(name: [.short, .long], help: "Output directory for ata_read.csv and ata_write.csv.")
    var out: String?

    @Option(help: "Write the block records and sector hashes as Parquet under this directory (the fleet's tables).")
    var parquet: String?

    @Option(help: "With --parquet: the host the journal came from (default: this machine's name).")
    var host: String?

    @Option(help: "With --parquet: the recording's name (default: the journal directory's name).")
    var recording: String?

    @Option(help: "With --parquet: the Python with pyarrow (default: KANSHI_PYTHON, then .build/python beside kanshi, then python3).")
    var python: String?

    @Option(help: "Write the memory sensor's page records (sandbox run --memory-watch) to this CSV: seconds,nanoseconds,sequence,pid,virtual,physical,size,permissions,entropy,hash,state.")
    var memory: String?

    @Option(help: "With --memory: also write each stored page's bytes to DIR/<pid>-<virtual>-<sequence>.page.")
    var memoryPages: String?

    func validate() throws {
        if out == nil && memory == nil && parquet == nil {
            throw ValidationError("give --out DIR (block events as CSV), --parquet DIR (the fleet's tables) and/or --memory FILE (memory pages)")
        }
        if parquet == nil && (host != nil || recording != nil || python != nil) { throw ValidationError("--host, --recording and --python go with --parquet DIR") }
        if memoryPages != nil && memory == nil { throw ValidationError("--memory-pages needs --memory FILE") }
    }

    func run() throws {
        if let parquet {
            let name = recording ?? URL(fileURLWithPath: FileSystem.absolutePath(journal)).lastPathComponent
            let s: FleetExport.Summary
            do {
                let export = try FleetExport(root: parquet, host: host ?? ProcessInfo.processInfo.hostName, recording: name, python: try FleetPython(python))
                s = try export.export(journal: journal) { segment, segments in
                    if isatty(2) != 0 { Output.error("kanshi: exporting segment \(segment) of \(segments)") }
                }
            } catch { throw CLIError("\(error)") }
            Output.line("exported \(s.records) block records and \(s.hashes) sector hashes of \(journal) to \(parquet) in \(s.files) files: " +
                        "\(Output.bytes(s.journalBytes)) of journal in \(String(format: "%.2f", s.seconds)) s (\(String(format: "%.1f", Double(s.journalBytes) / 1e6 / max(s.seconds, 1e-9))) MB/s)")
        }
        guard out != nil || memory != nil else { return }
        let reader = try JournalReader(directory: journal)
        if let out {
            let s = try RanSAPExport.export(journal: reader, to: out)
            Output.line("wrote \(s.readRows) rows to \(out)/ata_read.csv and \(s.writeRows) rows to \(out)/ata_write.csv" +
                        (s.skipped > 0 ? " (\(s.skipped) trim/zero/flush events have no RanSAP column)" : ""))
        }
        if let memory {
            let m = try MemoryExport.export(journal: reader, csv: memory, pagesDirectory: memoryPages)
            Output.line("wrote \(m.rows) memory records to \(memory)" + (memoryPages.map { ", \(m.pages) pages (\(Output.bytes(m.bytes))) to \($0)" } ?? ""))
        }
    }
}

private func runReport(_ journal: String) throws -> VerifyReport {
    do {
        return try JournalVerifier.verify(directory: journal)
    } catch let e as JournalError {
        throw CLIError(e.description)
    }
}

private func reportJSON(_ r: VerifyReport) -> [String: Any] {
    var out: [String: Any] = [
        "journal": r.directory, "ok": r.ok, "records": r.records, "bytes": r.bytes, "kinds": r.kinds,
        "segments": r.segments.map { s -> [String: Any] in
            var d: [String: Any] = ["index": s.index, "path": s.path, "bytes": s.bytes, "records": s.records,
                                    "firstSequence": s.firstSequence, "sealed": s.sealed,
                                    "uncoveredBytes": s.uncoveredBytes]
            if let v = s.lastSequence { d["lastSequence"] = v }
            if let v = s.firstTimeNs { d["firstTimeNs"] = v }
            if let v = s.lastTimeNs { d["lastTimeNs"] = v }
            if let v = s.hash { d["sha256"] = v }
            return d
        },
    ]
    func problem(_ p: VerifyReport.Problem) -> [String: Any] {
        var d: [String: Any] = ["segment": p.location.segmentPath, "offset": p.location.offset, "reason": p.reason]
        if let q = p.location.sequence { d["sequence"] = q }
        return d
    }
    if let p = r.problem { out["problem"] = problem(p) }
    if let t = r.tornTail { out["tornTail"] = problem(t) }
    return out
}

struct JournalMemoryFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory-features",
        abstract: "Memory-access features per window from the memory sensor's page records (sandbox run --memory-watch).",
        discussion: """
            Per window: pages written (a page stored again with new content), new (first seen) \
            and gone, bytes written per second, executable pages written, the mean entropy of \
            written pages (0..1) and how many were at least 7.5 bits per byte, and the number \
            of processes. CSV with a header (window start in ns first), or JSON.
            """)

    @Argument(help: "Journal directory.")
    var journal: String

    @Option(help: "Window length in milliseconds.")
    var windowMs: Int = 1000

    @Option(help: "Only this guest process's pages.")
    var pid: Int32?

    @Flag(help: "Print JSON rows.")
    var json = false

    func validate() throws {
        if windowMs < 1 || windowMs > 3_600_000 { throw ValidationError("--window-ms must be from 1 ms to an hour") }
    }

    func run() throws {
        let t: FeatureTable
        do { t = try MemoryWindows.table(journal: journal, windowNs: UInt64(windowMs) * 1_000_000, pid: pid) } catch {
            throw CLIError("journal memory-features \(journal): \(error)")
        }
        if json {
            Output.line(try Output.json((0..<t.rows).map { r -> [String: Any] in
                var d: [String: Any] = ["windowStartNs": t.windowStart[r]]
                for (name, v) in zip(t.names, t.row(r)) { d[name] = Double(v) }
                return d
            }))
            return
        }
        print(MemoryWindows.csv(t), terminator: "")
        if t.rows == 0 {
            Output.error("journal memory-features: no memory records\(pid.map { " of pid \($0)" } ?? "") in \(journal) (record them with sandbox run --memory-watch)")
        }
    }
}
