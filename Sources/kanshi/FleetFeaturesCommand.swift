import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiFleet

struct FleetFeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "The detectors' block features per window of every recording, to train or apply a model fleet-wide.",
        discussion: """
            For every host and recording in the store: the rows `kanshi journal features` gives \
            on that recording's journal (the same windows, written bytes and float32 values, \
            bit for bit), computed on Spark. Prints a summary per recording (its windows, the \
            first and the last); --json prints every row ({store, spark, windowMs, features, \
            hosts, seconds, recordings: [{host, recording, windows, rows: [{windowStartNs, \
            writtenBytes, values}]}]}). --out FILE writes a row per window (host, recording, \
            window_start_ns, written_bytes, then the features): FILE.csv, or FILE.parquet and \
            FILE.jsonl, which the job writes itself (for many recordings: the rows do not pass \
            through kanshi).

              kanshi fleet features --spark 'local[2]' --data srv --features context --out windows.parquet
            """)

    @OptionGroup var fleet: FleetOptions

    @OptionGroup var window: WindowFeatureOptions

    @Option(help: "Write every window to this file: .csv, .parquet or .jsonl.")
    var out: String?

    @Flag(help: "Print JSON instead of text (with --out: the summary only).")
    var json = false

    /// How --out is written.
    enum Destination {
        case csv(String), job(String, FleetFeatures.FileFormat)
    }

    var destination: Destination? {
        guard let out else { return nil }
        if let f = FleetFeatures.FileFormat(path: out) { return .job(out, f) }
        return .csv(out)
    }

    func validate() throws {
        if let out, FleetFeatures.FileFormat(path: out) == nil, (out as NSString).pathExtension.lowercased() != "csv" {
            throw ValidationError("--out \(out): name a .csv, .parquet or .jsonl file")
        }
    }

    func run() throws {
        let (store, job) = try fleet.job()
        var features = FleetFeatures(store: store, job: job)
        features.hosts = fleet.hosts
        features.windowNs = window.windowNs
        features.names = window.names
        if isatty(2) != 0 { Output.error("kanshi: computing \(window.features.rawValue) features of \(store.root) on Spark (\(fleet.spark))…") }
        var head: [String: Any] = ["store": store.root, "spark": fleet.spark, "windowMs": window.windowMs, "features": window.names]
        do {
            if case .job(let path, let format) = destination {
                let w = try features.write(to: path, format: format)
                head.merge(["hosts": w.hosts, "seconds": w.seconds, "out": path, "rows": w.rows,
                            "recordings": w.recordings.map(Self.summaryJSON)]) { $1 }
                if json { Output.line(try Output.json(head)) } else {
                    printSummary(w.recordings, hosts: w.hosts, root: store.root, seconds: w.seconds)
                    Output.line("wrote \(w.rows) window\(w.rows == 1 ? "" : "s") to \(path)")
                }
                return
            }
            if case .csv(let path) = destination { try features.check(destination: path) }
            let report = try features.run()
            if case .csv(let path) = destination {
                try FleetFeatures.writeCSV(report.recordings, names: window.names, to: path)
            }
            head.merge(["hosts": report.hosts, "seconds": report.seconds]) { $1 }
            if json {
                head["recordings"] = zip(report.recordings, report.summaries).map { r, s -> [String: Any] in
                    var d = Self.summaryJSON(s)
                    if out == nil { d["rows"] = FeatureRows.json(r.table) }
                    return d
                }
                if let out { head["out"] = out }
                Output.line(try Output.json(head))
                return
            }
            printSummary(report.summaries, hosts: report.hosts, root: store.root, seconds: report.seconds)
            if let out {
                let rows = report.recordings.reduce(0) { $0 + $1.table.rows }
                Output.line("wrote \(rows) window\(rows == 1 ? "" : "s") to \(out)")
            }
        } catch let e as FleetError {
            throw CLIError("\(e)")
        }
    }

    static func summaryJSON(_ s: FleetFeatures.Summary) -> [String: Any] {
        var d: [String: Any] = ["host": s.host, "recording": s.recording, "windows": s.windows]
        if let f = s.first { d["firstWindowStartNs"] = f }
        if let l = s.last { d["lastWindowStartNs"] = l }
        return d
    }

    func printSummary(_ recordings: [FleetFeatures.Summary], hosts: [String], root: String, seconds: Double) {
        let windowsTotal = recordings.reduce(0) { $0 + $1.windows }
        Output.line("\(window.features.rawValue) features (\(window.names.count)) of \(recordings.count) recording\(recordings.count == 1 ? "" : "s") on \(hosts.count) host\(hosts.count == 1 ? "" : "s") in \(root), \(window.windowMs) ms windows, on \(fleet.spark) in \(String(format: "%.1f", seconds)) s: \(windowsTotal) window\(windowsTotal == 1 ? "" : "s") with I/O")
        for r in recordings {
            let span = r.windows == 0 ? "no reads or writes" : "\(r.windows) window\(r.windows == 1 ? "" : "s"), first \(Output.time(r.first)), last \(Output.time(r.last))"
            Output.line("  host \(r.host), recording \(r.recording): \(span)")
        }
    }
}
