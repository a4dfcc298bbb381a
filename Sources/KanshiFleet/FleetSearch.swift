import Foundation
import KanshiHistory
import KanshiSystem

/// Where the fleet's tables are: a server's data directory (its `fleet/`)
/// or a directory that holds `blocks/` and `hashes/` itself.
public struct FleetStore: Sendable {
    public let root: String

    public init(data: String) throws {
        let fleet = data + "/fleet"
        if FileSystem.isDirectory(fleet + "/" + FleetFormat.hashesTable) || FileSystem.isDirectory(fleet + "/" + FleetFormat.blocksTable) {
            root = fleet
        } else if FileSystem.isDirectory(data + "/" + FleetFormat.hashesTable) || FileSystem.isDirectory(data + "/" + FleetFormat.blocksTable) {
            root = data
        } else if !FileSystem.exists(data) {
            throw FleetError("\(data): no such directory")
        } else {
            throw FleetError("\(data): no fleet tables here (neither \(data)/fleet/ nor \(data)/blocks/ and hashes/); a server writes them as recordings arrive, `kanshi journal export --parquet DIR` writes them for one journal")
        }
    }

    /// The hosts with data in a table.
    public func hosts(_ table: String = FleetFormat.hashesTable) -> [String] {
        ((try? FileSystem.list(root + "/" + table)) ?? []).filter { $0.hasPrefix("host=") }.map { String($0.dropFirst(5)) }.sorted()
    }

    /// Refuses hosts that have no data, naming those that do.
    public func check(hosts wanted: [String]) throws {
        let have = Set(hosts(FleetFormat.blocksTable)).union(hosts(FleetFormat.hashesTable))
        if have.isEmpty { throw FleetError("\(root): no host has any data yet") }
        for h in wanted where !have.contains(h) {
            throw FleetError("host \(h) has no data in \(root) (hosts with data: \(have.sorted().joined(separator: ", ")))")
        }
    }
}

/// Runs one of the PySpark jobs (fleet_job.py).
public struct FleetJob: Sendable {
    public var master: String
    public var python: FleetPython

    public init(master: String, python: FleetPython) throws {
        guard Self.validMaster(master) else {
            throw FleetError("--spark \(master): give local, local[N], local[*] or spark://HOST:PORT")
        }
        self.master = master
        self.python = python
    }

    static func validMaster(_ m: String) -> Bool {
        if m == "local" || m == "local[*]" { return true }
        if m.hasPrefix("local["), m.hasSuffix("]"), let n = Int(m.dropFirst(6).dropLast()), n >= 1 { return true }
        if m.hasPrefix("spark://"), m.dropFirst(8).contains(":") { return true }
        return false
    }

    /// Runs `job` with these arguments; its standard output.
    func run(_ job: String, _ arguments: [String]) throws -> String {
        _ = try FleetPython.java()
        try python.require(["pyspark", "pyarrow"], for: "kanshi fleet (Spark)")
        // KANSHI_FLEET_TIMING=1: the job's steps and Spark's own messages on standard error.
        let p = try PythonProcess(python: python, script: try FleetPython.script("fleet_job.py"),
                                  arguments: [job, "--master", master] + arguments,
                                  passStderr: ProcessInfo.processInfo.environment["KANSHI_FLEET_TIMING"] == "1")
        return try p.finish()
    }
}

/// `kanshi search` over every host's journals, on Spark.
public struct FleetSearch {
    /// The search's answer for one recording: one result per file, as `kanshi search` gives it on that recording's journal.
    public struct Recording: Sendable {
        public var host: String
        public var recording: String
        public var files: [FileSearchResult]
    }

    public struct Report: Sendable {
        public var recordings: [Recording]
        /// Hosts whose data was searched.
        public var hosts: [String]
        public var hits: Int
        public var seconds: Double
    }

    public let store: FleetStore
    public let job: FleetJob
    public var hosts: [String] = []
    public var maxOccurrences = 256

    public init(store: FleetStore, job: FleetJob) {
        self.store = store
        self.job = job
    }

    public func run(files: [String]) throws -> Report {
        let started = Date()
        try store.check(hosts: hosts)
        let digests = try files.map { f -> FileDigest in
            do { return try FileDigest(file: f) } catch { throw FleetError("\(error)") }
        }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("kanshi-fleet-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        // Each hash once, with whether it is a whole 4 KiB piece's (the job joins on both).
        struct Wanted: Hashable { var hash: UInt64; var whole: Bool }
        var seen = Set<Wanted>()
        var wanted = ""
        for d in digests {
            for p in d.pieces {
                for w in p.sectors.map({ Wanted(hash: $0, whole: false) }) + (p.whole.map { [Wanted(hash: $0, whole: true)] } ?? [])
                where seen.insert(w).inserted {
                    wanted += "{\"hash\":\(Int64(bitPattern: w.hash)),\"whole\":\(w.whole)}\n"
                }
            }
        }
        try Data(wanted.utf8).write(to: URL(fileURLWithPath: tmp + "/hashes.jsonl"))
        var args = ["--root", store.root, "--hashes", tmp + "/hashes.jsonl", "--out", tmp + "/hits.csv",
                    "--max-occurrences", String(maxOccurrences)]
        if !hosts.isEmpty { args += ["--hosts", hosts.joined(separator: ",")] }
        _ = try job.run("search", args)

        // Per recording: the occurrences of each hash, and the hashes too common to tell.
        struct Found { var sectors: [UInt64: [FileSearchResult.Occurrence]] = [:]; var wholes: [UInt64: [FileSearchResult.Occurrence]] = [:]; var common = Set<UInt64>() }
        var found: [String: Found] = [:]
        var hits = 0
        let table = try HitTable(path: tmp + "/hits.csv")
        for row in table.rows {
            let key = row.text("host") + "/" + row.text("recording")
            guard let hash = row.int("hash") else { throw FleetError("the search job wrote a row without a hash: \(row.line)") }
            let h = UInt64(bitPattern: hash)
            if row.int("common") != nil { found[key, default: Found()].common.insert(h); continue }
            func u64(_ k: String) -> UInt64 { row.int(k).map { UInt64(bitPattern: $0) } ?? 0 }
            let base = row.text("op") == FleetFormat.Op.base.name
            let occ = FileSearchResult.Occurrence(lba: u64("lba"), timeNs: base ? 0 : u64("time_ns"), sequence: u64("seq"),
                                                  goneNs: row.int("gone_ns").map { UInt64(bitPattern: $0) })
            if row.text("whole") == "true" { found[key, default: Found()].wholes[h, default: []].append(occ) }
            else { found[key, default: Found()].sectors[h, default: []].append(occ) }
            hits += 1
        }
        var out: [Recording] = []
        for key in found.keys.sorted() {
            let f = found[key]!
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            let results = digests.map { d in
                FileSearchResult(d, sectorHits: { h in f.common.contains(h) ? nil : f.sectors[h] ?? [] },
                                 wholeHits: { h in f.wholes[h] ?? [] })
            }
            out.append(Recording(host: parts[0], recording: parts[1], files: results))
        }
        let searched = hosts.isEmpty ? store.hosts() : hosts
        return Report(recordings: out, hosts: searched, hits: hits, seconds: Date().timeIntervalSince(started))
    }
}

/// The CSV the search job writes (pyarrow's: a header, strings quoted, nulls empty). Host and
/// recording names hold no commas or quotes (`RecordingName`), numbers none either.
struct HitTable {
    struct Row {
        let fields: [Substring]
        let columns: [String: Int]
        var line: String { fields.joined(separator: ",") }
        func text(_ name: String) -> String {
            guard let i = columns[name], i < fields.count else { return "" }
            let f = fields[i]
            return f.hasPrefix("\"") && f.hasSuffix("\"") && f.count >= 2 ? String(f.dropFirst().dropLast()) : String(f)
        }
        func int(_ name: String) -> Int64? { Int64(text(name)) }
    }

    let rows: [Row]

    init(path: String) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch { throw FleetError("the search job's answer \(path) cannot be read: \(error)") }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { throw FleetError("the search job's answer \(path) is empty (not even a header)") }
        let header = lines.removeFirst().split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        let columns = Dictionary(header.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        for needed in ["host", "recording", "hash"] where columns[needed] == nil {
            throw FleetError("the search job's answer \(path) has no \(needed) column (columns: \(header.joined(separator: ", ")))")
        }
        rows = lines.map { Row(fields: $0.split(separator: ",", omittingEmptySubsequences: false), columns: columns) }
    }
}
