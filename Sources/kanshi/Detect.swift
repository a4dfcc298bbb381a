import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiJournal
import KanshiML
import KanshiSystem

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say whether and when ransomware activity shows in a recording.",
        discussion: """
            Reports the alert time, the delay since the first write, and the bytes written \
            between them. With --follow, watches a journal that is still being written \
            (e.g. by `kanshi disk serve`) and prints each alert as a JSON line the moment \
            it fires, until Ctrl-C.
            """)

    @Option(help: "A model from `kanshi train`.")
    var model: String
    @Option(help: "A Kanshi journal directory.")
    var journal: String?
    @Option(help: "A RanSAP run directory (ata_read.csv / ata_write.csv).")
    var dataset: String?
    @Flag(help: "Follow a journal as it grows (live detection).")
    var follow = false
    @Option(help: "With --follow: how often to look for new records, in milliseconds.")
    var pollMs: Int = 200
    @Flag(help: "With --follow: stop after the first alert.")
    var exitOnAlert = false
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if (journal == nil) == (dataset == nil) { throw ValidationError("give exactly one of --journal DIR or --dataset RUN") }
        if follow && journal == nil { throw ValidationError("--follow works on a journal (--journal DIR)") }
        if pollMs < 10 { throw ValidationError("--poll-ms must be at least 10") }
    }

    func run() throws {
        let m = try DetectorModel.load(from: model, for: .blocks)
        if follow { return try followJournal(m) }
        let trace = try journal.map { try BlockTrace.fromJournal($0) } ?? RanSAPReader.read(runDirectory: dataset!)
        let table = m.features(trace)
        let p = try m.predict(table)
        let alert = m.firstAlert(p).map { Alert(model: m, table: table, window: $0, firstWriteNs: trace.writes.first?.timeNs, probability: p[$0]) }
        if json {
            var o: [String: Any] = ["recording": journal ?? dataset!, "detected": alert != nil, "windows": table.rows,
                                    "ransomwareWindows": p.filter { $0 >= m.threshold }.count]
            if let a = alert { o.merge(a.fields) { $1 } }
            Output.line(try Output.json(o))
        } else if let a = alert {
            Output.line("RANSOMWARE ACTIVITY detected in \(journal ?? dataset!)")
            Output.line("  alert at        \(Output.time(a.timeNs)) (\(a.timeNs) ns)")
            if let d = a.delayNs { Output.line(String(format: "  delay           %.2f s after the first write", Double(d) / 1e9)) }
            Output.line("  written before  \(Output.bytes(a.bytesWritten))")
            Output.line("  windows         \(p.filter { $0 >= m.threshold }.count) of \(table.rows) look like ransomware")
        } else {
            Output.line("no ransomware activity detected in \(journal ?? dataset!) (\(p.filter { $0 >= m.threshold }.count) of \(table.rows) windows over the threshold; the run-level rule did not fire)")
        }
    }

    private func followJournal(_ m: DetectorModel) throws {
        let stopped = try LockedFlag.setOnStopSignal()
        let tail = try JournalTail(directory: journal!)
        // The model loaded once; each window predicted once, when it closes.
        let live = try LiveDetector(model: m)
        var firstWriteNs: UInt64?
        var firing = false
        var lastAlertWindow = -1
        Output.error("following \(journal!) (Ctrl-C to stop)")
        while !stopped.value {
            var added = 0
            try tail.poll { r in
                if let (e, _) = try BlockRecords.decode(r) {
                    live.append(e)
                    if e.operation == .write, e.length > 0, firstWriteNs == nil { firstWriteNs = e.timeNs }
                    added += 1
                }
            }
            if added > 0 {
                let w = try live.update()
                let p = w.probabilities
                // Re-evaluate the rule over windows after the last alert.
                let fresh = lastAlertWindow + 1 < p.count ? Array(p[(lastAlertWindow + 1)...]) : []
                if let i = m.firstAlert(fresh) {
                    let at = lastAlertWindow + 1 + i
                    if !firing {
                        let a = Alert(model: m, starts: w.starts, written: w.written, window: at, firstWriteNs: firstWriteNs, probability: p[at])
                        var o: [String: Any] = ["event": "alert", "journal": journal!]
                        o.merge(a.fields) { $1 }
                        let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])
                        Output.line(String(decoding: data, as: UTF8.self))
                        if exitOnAlert { return }
                    }
                    firing = true
                    lastAlertWindow = at
                } else if let last = p.last, last < m.threshold {
                    firing = false
                }
            }
            usleep(useconds_t(pollMs * 1000))
        }
    }
}

/// An alert: when, how long after the first write, how much was written.
struct Alert {
    var timeNs: UInt64
    var delayNs: UInt64?
    var bytesWritten: UInt64
    var window: Int
    var probability: Float

    init(model: DetectorModel, table: FeatureTable, window: Int, firstWriteNs: UInt64?, probability: Float) {
        self.init(model: model, starts: table.windowStart, written: table.writtenBytes, window: window, firstWriteNs: firstWriteNs,
                  probability: probability)
    }

    init(model: DetectorModel, starts: [UInt64], written: [UInt64], window: Int, firstWriteNs: UInt64?, probability: Float) {
        self.window = window
        self.probability = probability
        let t = starts[window] + model.windowNs
        timeNs = t
        delayNs = firstWriteNs.map { t > $0 ? t - $0 : 0 }
        bytesWritten = written[0...window].reduce(0, +)
    }

    var fields: [String: Any] {
        var o: [String: Any] = ["alertTimeNs": timeNs, "alertTime": Output.time(timeNs), "bytesWrittenBeforeAlert": bytesWritten,
                                "window": window, "probability": Double(probability)]
        if let d = delayNs { o["delayNs"] = d }
        return o
    }
}

final class LockedFlag: @unchecked Sendable {
    /// A flag that Ctrl-C or SIGTERM sets, from now on (the signals are
    /// kept until the watching thread takes them).
    static func setOnStopSignal() throws -> LockedFlag {
        let signals = try StopSignals()
        let flag = LockedFlag()
        Thread { _ = signals.wait(); flag.set() }.start()
        return flag
    }

    // SAFETY: `flag` is only touched under `lock`.
    private let lock = NSLock()
    private var flag = false
    func set() { lock.lock(); flag = true; lock.unlock() }
    var value: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}
