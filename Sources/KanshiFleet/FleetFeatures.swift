import Foundation
import KanshiAnalysis
import KanshiSystem

/// The detectors' window features of every recording in the store, on Spark:
/// per host and recording, the `FeatureTable` that `WindowFeatures.compute`
/// gives on that recording's journal (`kanshi journal features`), so a model
/// can be trained or applied fleet-wide.
///
/// The `features` job of fleet_job.py groups the `blocks` table by host and
/// recording, orders each recording's reads and writes as its journal holds
/// them, and computes the windows with fleet_features.py, a port of
/// KanshiAnalysis's arithmetic step for step: the values are the same float32
/// numbers, bit for bit.
public struct FleetFeatures {
    /// One recording's windows.
    public struct Recording: Sendable {
        public var host: String
        public var recording: String
        public var table: FeatureTable
    }

    /// What the job found for one recording.
    public struct Summary: Sendable, Equatable {
        public var host: String
        public var recording: String
        /// Windows with any I/O (0: the recording has no read or write).
        public var windows: Int
        /// Start of the first and the last window, ns since the epoch.
        public var first: UInt64?
        public var last: UInt64?
    }

    public struct Report: Sendable {
        /// Every recording of the hosts asked for, by host then recording name.
        public var recordings: [Recording]
        public var hosts: [String]
        public var seconds: Double

        public var summaries: [Summary] {
            recordings.map { Summary(host: $0.host, recording: $0.recording, windows: $0.table.rows,
                                     first: $0.table.windowStart.first, last: $0.table.windowStart.last) }
        }
    }

    /// What `write(to:format:)` wrote.
    public struct Written: Sendable {
        public var path: String
        public var recordings: [Summary]
        public var hosts: [String]
        public var rows: Int
        public var seconds: Double
    }

    /// Files the job writes itself: a row per window (host, recording,
    /// window_start_ns, written_bytes, then one float32 column per feature).
    public enum FileFormat: String, Sendable, CaseIterable {
        case parquet
        case jsonLines = "jsonl"

        /// The format a file name asks for (its extension), if it is one of these.
        public init?(path: String) {
            switch (path as NSString).pathExtension.lowercased() {
            case "parquet": self = .parquet
            case "jsonl", "ndjson": self = .jsonLines
            default: return nil
            }
        }
    }

    public let store: FleetStore
    public let job: FleetJob
    /// Only these hosts (empty: every host).
    public var hosts: [String] = []
    public var windowNs: UInt64 = 100_000_000
    /// The features, in the order of the columns (each one of `WindowFeatures.allNames`).
    public var names: [String] = WindowFeatures.extendedNames

    public init(store: FleetStore, job: FleetJob) {
        self.store = store
        self.job = job
    }

    /// Every recording's table, read back from the job's JSON lines.
    public func run() throws -> Report {
        let started = Date()
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("kanshi-fleet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let file = tmp + "/features.jsonl"
        let summaries = try runJob(out: file, format: .jsonLines)
        let tables = try Self.readJSONLines(file, names: names)
        var recordings: [Recording] = []
        for s in summaries {
            let key = Key(host: s.host, recording: s.recording)
            let table = tables[key] ?? FeatureTable(names: names, values: [], windowStart: [], writtenBytes: [])
            guard table.rows == s.windows else {
                throw FleetError("the features job wrote \(table.rows) windows of host \(s.host), recording \(s.recording) but counted \(s.windows)")
            }
            recordings.append(Recording(host: s.host, recording: s.recording, table: table))
        }
        if let stray = tables.keys.first(where: { k in !summaries.contains { $0.host == k.host && $0.recording == k.recording } }) {
            throw FleetError("the features job wrote windows of host \(stray.host), recording \(stray.recording) that its summary does not list")
        }
        return Report(recordings: recordings, hosts: searchedHosts, seconds: Date().timeIntervalSince(started))
    }

    /// Has the job write every window to `path` (Parquet or JSON lines; replaced
    /// whole, only once complete); each recording's number of windows.
    public func write(to path: String, format: FileFormat) throws -> Written {
        let started = Date()
        try check(destination: path)
        let summaries = try runJob(out: FileSystem.absolutePath(path), format: format)
        return Written(path: path, recordings: summaries, hosts: searchedHosts, rows: summaries.reduce(0) { $0 + $1.windows },
                       seconds: Date().timeIntervalSince(started))
    }

    /// Refuses a file to write the features to in a directory that does not
    /// exist, or in the store (which the jobs only read).
    public func check(destination path: String) throws {
        func standard(_ p: String) -> String { URL(fileURLWithPath: FileSystem.absolutePath(p)).standardizedFileURL.path }
        let dir = (standard(path) as NSString).deletingLastPathComponent
        guard FileSystem.isDirectory(dir) else { throw FleetError("\(path): no directory \(dir) to write it in") }
        guard !(dir + "/").hasPrefix(standard(store.root) + "/") else {
            throw FleetError("\(path): inside the store \(store.root), which the jobs only read; write the features elsewhere")
        }
    }

    /// Writes the recordings' windows as CSV (host, recording, window_start_ns,
    /// written_bytes, then the features), replacing `path` only once complete.
    public static func writeCSV(_ recordings: [Recording], names: [String], to path: String) throws {
        var out = (["host", "recording", "window_start_ns", "written_bytes"] + names).joined(separator: ",") + "\n"
        for r in recordings {
            let t = r.table.selecting(names)
            for i in 0..<t.rows {
                out += "\(r.host),\(r.recording),\(t.windowStart[i]),\(t.writtenBytes[i])"
                for v in t.row(i) { out += ",\(v)" }
                out += "\n"
            }
        }
        do { try Data(out.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw FleetError("\(path): cannot write the features: \(error.localizedDescription)")
        }
    }

    private var searchedHosts: [String] { hosts.isEmpty ? store.hosts(FleetFormat.blocksTable) : hosts }

    private struct Key: Hashable {
        var host: String
        var recording: String
    }

    /// Runs the job; its summary of every recording, by host then recording.
    private func runJob(out: String, format: FileFormat) throws -> [Summary] {
        guard windowNs > 0 else { throw FleetError("a feature window must be at least 1 ns long") }
        guard !names.isEmpty else { throw FleetError("no features asked for") }
        let unknown = WindowFeatures.unknown(names)
        guard unknown.isEmpty else {
            throw FleetError("\(unknown.joined(separator: ", ")): not block features this kanshi computes (they are: \(WindowFeatures.allNames.joined(separator: ", ")))")
        }
        try store.check(hosts: hosts)
        var args = ["--root", store.root, "--window-ns", String(windowNs), "--features", names.joined(separator: ","),
                    "--out", out, "--format", format.rawValue]
        if !hosts.isEmpty { args += ["--hosts", hosts.joined(separator: ",")] }
        let stdout = try job.run("features", args)
        guard let line = stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let list = o["recordings"] as? [[String: Any]] else {
            throw FleetError("the features job printed no summary kanshi can read: \(stdout.suffix(300))")
        }
        return try list.map { r in
            guard let host = r["host"] as? String, let rec = r["recording"] as? String, let n = (r["windows"] as? NSNumber)?.intValue else {
                throw FleetError("the features job's summary has an entry kanshi cannot read: \(r)")
            }
            return Summary(host: host, recording: rec, windows: n, first: (r["first"] as? NSNumber)?.uint64Value,
                           last: (r["last"] as? NSNumber)?.uint64Value)
        }
    }

    /// The job's JSON lines as a table per recording, rows in window order.
    private static func readJSONLines(_ path: String, names: [String]) throws -> [Key: FeatureTable] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw FleetError("\(path): the features job's output cannot be read: \(error.localizedDescription)") }
        var rows: [Key: [(start: UInt64, written: UInt64, values: [Float])]] = [:]
        for (i, line) in text.split(separator: "\n").enumerated() {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let host = o["host"] as? String, let rec = o["recording"] as? String,
                  let start = (o["window_start_ns"] as? NSNumber)?.uint64Value,
                  let written = (o["written_bytes"] as? NSNumber)?.uint64Value else {
                throw FleetError("\(path) line \(i + 1): not a row of the features job: \(line.prefix(200))")
            }
            // Each value is a float32 written as the double it equals: converting back is exact.
            let values = try names.map { n -> Float in
                guard let v = (o[n] as? NSNumber)?.doubleValue else { throw FleetError("\(path) line \(i + 1): no value for \(n)") }
                return Float(v)
            }
            rows[Key(host: host, recording: rec), default: []].append((start, written, values))
        }
        return rows.mapValues { list in
            let sorted = list.enumerated().sorted { ($0.element.start, $0.offset) < ($1.element.start, $1.offset) }.map(\.element)
            return FeatureTable(names: names, values: sorted.flatMap(\.values), windowStart: sorted.map(\.start), writtenBytes: sorted.map(\.written))
        }
    }
}
