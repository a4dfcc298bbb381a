import Foundation
import GRDB
import KanshiCore
import KanshiJournal
import KanshiRules
import KanshiTrace

/// What the dashboard asks of a recording, answered from rows the server writes as chunks arrive
/// (block records and notes of the journal, events of the behaviour log), so no request reads a
/// whole recording: tables are paged by sequence number, charts are aggregated in SQLite.
extension ServerStore {
    static func indexMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v2-index") { db in
            try db.execute(sql: """
                CREATE TABLE blocks(recording INTEGER NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, op TEXT NOT NULL,
                    lba INTEGER NOT NULL, length INTEGER NOT NULL, entropy REAL, segment INTEGER NOT NULL, offset INTEGER NOT NULL);
                CREATE INDEX blocks_seq ON blocks(recording, seq);
                CREATE INDEX blocks_time ON blocks(recording, time_ns);
                CREATE TABLE notes(recording INTEGER NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, json TEXT NOT NULL);
                CREATE INDEX notes_seq ON notes(recording, seq);
                CREATE TABLE events(recording INTEGER NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL, ev TEXT NOT NULL,
                    pid INTEGER NOT NULL, child INTEGER, path TEXT, path2 TEXT, managed INTEGER NOT NULL, blocked INTEGER NOT NULL,
                    reason TEXT, json TEXT NOT NULL);
                CREATE INDEX events_seq ON events(recording, seq);
                CREATE INDEX events_time ON events(recording, time_ns);
                CREATE INDEX events_pid ON events(recording, pid, seq);
                """)
        }
    }

    /// A journal record as an index row.
    struct BlockRow {
        var seq: UInt64, timeNs: UInt64, op: String, lba: UInt64, length: UInt32, entropy: Double?, segment: UInt64, offset: UInt64
    }

    struct NoteRow {
        var seq: UInt64, timeNs: UInt64, json: String
    }

    /// One journal record decoded once, as the rules, the disk detector and the index each take it.
    struct DecodedRecord {
        var rule: RuleEvent?
        var block: BlockEvent?
        var row: BlockRow?
        var note: NoteRow?
    }

    static func decode(_ r: JournalRecord) throws -> DecodedRecord {
        if r.kind == .note {
            return DecodedRecord(rule: try RuleRun.event(r), note: NoteRow(seq: r.sequence, timeNs: r.timeNs, json: String(decoding: r.payload, as: UTF8.self)))
        }
        guard let (b, _) = try BlockRecords.decode(r) else { return DecodedRecord() }
        return DecodedRecord(rule: RuleRun.event(b, of: r), block: b, row: row(b, of: r))
    }

    static func row(_ b: BlockEvent, of r: JournalRecord) -> BlockRow {
        let op: String
        switch b.operation {
        case .read: op = "read"
        case .write: op = "write"
        case .trim: op = "trim"
        case .writeZeroes: op = "zero"
        case .flush: op = "flush"
        }
        return BlockRow(seq: r.sequence, timeNs: b.timeNs, op: op, lba: b.lba, length: b.length, entropy: b.meanEntropyBits, segment: r.segment, offset: r.offset)
    }

    static func insert(_ db: Database, recording: Int64, blocks: [BlockRow], notes: [NoteRow]) throws {
        let b = try db.cachedStatement(sql: "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for r in blocks {
            try b.execute(arguments: [recording, Int64(r.seq), Int64(r.timeNs), r.op, Int64(r.lba), Int64(r.length), r.entropy, Int64(r.segment), Int64(r.offset)])
        }
        let n = try db.cachedStatement(sql: "INSERT INTO notes VALUES (?, ?, ?, ?)")
        for r in notes { try n.execute(arguments: [recording, Int64(r.seq), Int64(r.timeNs), r.json]) }
    }

    static func insert(_ db: Database, recording: Int64, events: [(TraceEvent, String)]) throws {
        let s = try db.cachedStatement(sql: "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        for (e, json) in events {
            try s.execute(arguments: [recording, Int64(e.seq), Int64(e.time), e.kind.rawValue, Int64(e.pid), e.child.map { Int64($0) },
                                      e.path, e.path2, e.managed ? 1 : 0, e.blocked ? 1 : 0, e.reason, json])
        }
    }

    // MARK: queries

    /// Time and LBA ranges of a recording's indexed rows.
    public struct Extent: Codable, Sendable {
        public var fromNs: UInt64?
        public var toNs: UInt64?
        public var maxLba: UInt64
    }

    public func extent(recording: Int64) throws -> Extent {
        try db.read { db in
            let b = try Row.fetchOne(db, sql: "SELECT MIN(time_ns) a, MAX(time_ns) b, MAX(lba + (length + 511) / 512) l FROM blocks WHERE recording = ?", arguments: [recording])
            let e = try Row.fetchOne(db, sql: "SELECT MIN(time_ns) a, MAX(time_ns) b FROM events WHERE recording = ?", arguments: [recording])
            let starts = [b?["a"] as Int64?, e?["a"] as Int64?].compactMap { $0 }
            let ends = [b?["b"] as Int64?, e?["b"] as Int64?].compactMap { $0 }
            return Extent(fromNs: starts.min().map { UInt64($0) }, toNs: ends.max().map { UInt64($0) }, maxLba: UInt64((b?["l"] as Int64?) ?? 0))
        }
    }

    /// Counts per time bin: block reads and writes (and their bytes), behaviour events, alerts.
    public struct Timeline: Codable, Sendable {
        public var fromNs: UInt64
        public var toNs: UInt64
        public var bins: Int
        public var reads: [Int]
        public var writes: [Int]
        public var readBytes: [Int64]
        public var writeBytes: [Int64]
        public var events: [Int]
        public var alerts: [Int]
    }

    public func timeline(recording: Int64, fromNs: UInt64, toNs: UInt64, bins: Int) throws -> Timeline {
        let span = max(toNs - fromNs, 1)
        var t = Timeline(fromNs: fromNs, toNs: toNs, bins: bins, reads: .init(repeating: 0, count: bins), writes: .init(repeating: 0, count: bins),
                         readBytes: .init(repeating: 0, count: bins), writeBytes: .init(repeating: 0, count: bins),
                         events: .init(repeating: 0, count: bins), alerts: .init(repeating: 0, count: bins))
        func bin(_ ns: Int64) -> Int? {
            guard ns >= Int64(fromNs), ns <= Int64(toNs) else { return nil }
            return min(Int(Double(UInt64(ns) - fromNs) / Double(span) * Double(bins)), bins - 1)
        }
        let binExpr = "MIN(CAST((time_ns - \(fromNs)) * 1.0 / \(span) * \(bins) AS INTEGER), \(bins - 1))"
        try db.read { db in
            for r in try Row.fetchAll(db, sql: """
                SELECT \(binExpr) b, op, COUNT(*) n, SUM(length) bytes FROM blocks
                WHERE recording = ? AND time_ns BETWEEN ? AND ? AND op IN ('read', 'write') GROUP BY b, op
                """, arguments: [recording, Int64(fromNs), Int64(toNs)]) {
                let b: Int = r["b"], n: Int = r["n"], bytes: Int64 = r["bytes"]
                if (r["op"] as String) == "read" { t.reads[b] = n; t.readBytes[b] = bytes } else { t.writes[b] = n; t.writeBytes[b] = bytes }
            }
            for r in try Row.fetchAll(db, sql: "SELECT \(binExpr) b, COUNT(*) n FROM events WHERE recording = ? AND time_ns BETWEEN ? AND ? GROUP BY b",
                                      arguments: [recording, Int64(fromNs), Int64(toNs)]) {
                t.events[r["b"] as Int] = r["n"]
            }
            for r in try Row.fetchAll(db, sql: "SELECT time_ns FROM alerts WHERE recording = ?", arguments: [recording]) {
                if let b = bin(r["time_ns"]) { t.alerts[b] += 1 }
            }
        }
        return t
    }

    /// The LBA × time heat-map: per (time bin, LBA bin), how many reads and writes touched it.
    public struct HeatMap: Codable, Sendable {
        public var fromNs: UInt64
        public var toNs: UInt64
        public var maxLba: UInt64
        public var timeBins: Int
        public var lbaBins: Int
        /// [time bin, LBA bin, count]
        public var reads: [[Int]]
        public var writes: [[Int]]
    }

    public func heatMap(recording: Int64, fromNs: UInt64, toNs: UInt64, timeBins: Int, lbaBins: Int) throws -> HeatMap {
        let span = max(toNs - fromNs, 1)
        let maxLba = max(try extent(recording: recording).maxLba, 1)
        var h = HeatMap(fromNs: fromNs, toNs: toNs, maxLba: maxLba, timeBins: timeBins, lbaBins: lbaBins, reads: [], writes: [])
        try db.read { db in
            for r in try Row.fetchAll(db, sql: """
                SELECT MIN(CAST((time_ns - \(fromNs)) * 1.0 / \(span) * \(timeBins) AS INTEGER), \(timeBins - 1)) t,
                       MIN(CAST(lba * 1.0 / \(maxLba) * \(lbaBins) AS INTEGER), \(lbaBins - 1)) l, op, COUNT(*) n
                FROM blocks WHERE recording = ? AND time_ns BETWEEN ? AND ? AND op IN ('read', 'write') GROUP BY t, l, op
                """, arguments: [recording, Int64(fromNs), Int64(toNs)]) {
                let cell = [r["t"] as Int, r["l"] as Int, r["n"] as Int]
                if (r["op"] as String) == "read" { h.reads.append(cell) } else { h.writes.append(cell) }
            }
        }
        return h
    }

    /// A page of block records, in sequence order after `after`, with optional filters.
    public func blocks(recording: Int64, after: UInt64, limit: Int, op: String?, fromNs: UInt64?, toNs: UInt64?,
                       lbaFrom: UInt64?, lbaTo: UInt64?) throws -> [[String: DatabaseValue]] {
        var sql = "SELECT seq, time_ns, op, lba, length, entropy, segment, offset FROM blocks WHERE recording = ? AND seq > ?"
        var args: [(any DatabaseValueConvertible)?] = [recording, Int64(after)]
        if let op { sql += " AND op = ?"; args.append(op) }
        if let fromNs { sql += " AND time_ns >= ?"; args.append(Int64(fromNs)) }
        if let toNs { sql += " AND time_ns <= ?"; args.append(Int64(toNs)) }
        if let lbaFrom { sql += " AND lba + (length + 511) / 512 > ?"; args.append(Int64(lbaFrom)) }
        if let lbaTo { sql += " AND lba < ?"; args.append(Int64(lbaTo)) }
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        let arguments = StatementArguments(args)
        return try db.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.dictionary) }
    }

    /// A page of behaviour events, in sequence order after `after`, with optional filters.
    public func events(recording: Int64, after: UInt64, limit: Int, ev: String?, pid: Int32?, path: String?,
                       fromNs: UInt64?, toNs: UInt64?, managedOnly: Bool) throws -> [[String: DatabaseValue]] {
        var sql = "SELECT seq, time_ns, ev, pid, child, path, path2, managed, blocked, reason, json FROM events WHERE recording = ? AND seq > ?"
        var args: [(any DatabaseValueConvertible)?] = [recording, Int64(after)]
        if let ev { sql += " AND ev = ?"; args.append(ev) }
        if let pid { sql += " AND pid = ?"; args.append(Int64(pid)) }
        if let path { sql += " AND (instr(path, ?) > 0 OR instr(path2, ?) > 0)"; args.append(path); args.append(path) }
        if let fromNs { sql += " AND time_ns >= ?"; args.append(Int64(fromNs)) }
        if let toNs { sql += " AND time_ns <= ?"; args.append(Int64(toNs)) }
        if managedOnly { sql += " AND managed = 1" }
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        let arguments = StatementArguments(args)
        return try db.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.dictionary) }
    }

    public func notes(recording: Int64) throws -> [[String: DatabaseValue]] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT seq, time_ns, json FROM notes WHERE recording = ? ORDER BY seq LIMIT 1000", arguments: [recording]).map(Self.dictionary) }
    }

    static func dictionary(_ r: Row) -> [String: DatabaseValue] {
        var d: [String: DatabaseValue] = [:]
        for (k, v) in r { d[k] = v }
        return d
    }

    /// One process of the tree the behaviour log describes.
    public struct Process: Codable, Sendable {
        public var pid: Int32
        public var parent: Int32?
        public var argv: [String]
        public var startNs: UInt64?
        public var exitNs: UInt64?
        public var exitCode: Int64?
        /// Why it became managed (the event's reason), if it did.
        public var managed: String?
        public var blockedCalls: Int
        public var events: Int
    }

    /// The process tree: who started whom, what ran, which became managed and why.
    public func processes(recording: Int64) throws -> [Process] {
        try db.read { db in
            var out: [Int32: Process] = [:]
            func touch(_ pid: Int32) { if out[pid] == nil { out[pid] = Process(pid: pid, parent: nil, argv: [], blockedCalls: 0, events: 0) } }
            for r in try Row.fetchAll(db, sql: "SELECT pid, COUNT(*) n, SUM(blocked) b FROM events WHERE recording = ? GROUP BY pid", arguments: [recording]) {
                let pid = Int32(r["pid"] as Int64)
                touch(pid)
                out[pid]!.events = r["n"]
                out[pid]!.blockedCalls = r["b"]
            }
            for r in try Row.fetchAll(db, sql: """
                SELECT ev, pid, child, time_ns, reason, json FROM events WHERE recording = ? AND ev IN ('spawn', 'exec', 'exit', 'managed') ORDER BY seq
                """, arguments: [recording]) {
                let pid = Int32(r["pid"] as Int64)
                touch(pid)
                switch r["ev"] as String {
                case "spawn":
                    if let c = (r["child"] as Int64?).map({ Int32($0) }) {
                        touch(c)
                        out[c]!.parent = pid
                        out[c]!.startNs = UInt64(r["time_ns"] as Int64)
                    }
                case "exec":
                    let o = (try? JSONSerialization.jsonObject(with: Data((r["json"] as String).utf8))) as? [String: Any]
                    out[pid]!.argv = (o?["argv"] as? [String]) ?? out[pid]!.argv
                    if out[pid]!.startNs == nil { out[pid]!.startNs = UInt64(r["time_ns"] as Int64) }
                case "exit":
                    out[pid]!.exitNs = UInt64(r["time_ns"] as Int64)
                    let o = (try? JSONSerialization.jsonObject(with: Data((r["json"] as String).utf8))) as? [String: Any]
                    out[pid]!.exitCode = (o?["ret"] as? NSNumber)?.int64Value
                case "managed":
                    if out[pid]!.managed == nil { out[pid]!.managed = (r["reason"] as String?) ?? "managed" }
                default: break
                }
            }
            return out.values.sorted { ($0.startNs ?? 0, $0.pid) < ($1.startNs ?? 0, $1.pid) }
        }
    }

    /// Files the recording's processes changed (written, renamed, removed, truncated), with who
    /// and when, and whether an undo later named them.
    public struct ChangedFile: Codable, Sendable {
        public var path: String
        public var how: [String]
        public var pids: [Int32]
        public var firstNs: UInt64
        public var lastNs: UInt64
        public var managed: Bool
        /// Put back afterwards: by a selective undo (its note lists the file) or a whole-disk rollback.
        public var restored: String?
    }

    public func changedFiles(recording: Int64, limit: Int = 500) throws -> [ChangedFile] {
        try db.read { db in
            var out: [String: ChangedFile] = [:]
            for r in try Row.fetchAll(db, sql: """
                SELECT ev, pid, path, path2, time_ns, managed FROM events WHERE recording = ?
                AND (ev IN ('rename', 'unlink', 'truncate', 'utime')
                     OR (ev = 'open' AND (instr(json, '"flags":"w') > 0 OR instr(json, '"flags":"rw') > 0))
                     OR (ev = 'close' AND instr(json, '"entropy"') > 0))
                AND path IS NOT NULL ORDER BY seq LIMIT 200000
                """, arguments: [recording]) {
                let path: String = r["path"], ev: String = r["ev"], pid = Int32(r["pid"] as Int64), t = UInt64(r["time_ns"] as Int64)
                var f = out[path] ?? ChangedFile(path: path, how: [], pids: [], firstNs: t, lastNs: t, managed: false, restored: nil)
                let how = ev == "close" ? "written" : ev == "open" ? "opened for writing"
                    : ev == "rename" ? "renamed to \((r["path2"] as String?) ?? "?")" : ev == "unlink" ? "removed" : ev
                if !f.how.contains(how) { f.how.append(how) }
                if !f.pids.contains(pid) { f.pids.append(pid) }
                f.lastNs = t
                f.managed = f.managed || (r["managed"] as Int64) != 0
                out[path] = f
            }
            // What the journal's notes say was put back. Undo paths are the disk's own (the guest
            // mounts it elsewhere): a file matches a path it ends with.
            for r in try Row.fetchAll(db, sql: """
                SELECT time_ns, json FROM notes WHERE recording = ? AND (instr(json, '"undo-end"') > 0 OR instr(json, '"rollback-end"') > 0) ORDER BY seq
                """, arguments: [recording]) {
                let t = UInt64(r["time_ns"] as Int64)
                guard let o = (try? JSONSerialization.jsonObject(with: Data((r["json"] as String).utf8))) as? [String: Any] else { continue }
                if o["event"] as? String == "rollback-end" {
                    for (k, f) in out where f.lastNs <= t { out[k]!.restored = "disk rolled back to \(o["to"] ?? "?")" }
                } else {
                    let restored = (o["restoredPaths"] as? [String]) ?? [], removed = (o["removedPaths"] as? [String]) ?? []
                    for (k, f) in out where f.lastNs <= t {
                        if restored.contains(where: { !$0.isEmpty && k.hasSuffix($0) }) { out[k]!.restored = "restored by the undo" }
                        else if removed.contains(where: { !$0.isEmpty && k.hasSuffix($0) }) { out[k]!.restored = "removed by the undo (it was new)" }
                    }
                }
            }
            return Array(out.values.sorted { $0.firstNs < $1.firstNs }.prefix(limit))
        }
    }

    /// Per time bin, the series the GADF images are made of (those that vary).
    public func featureSeries(recording: Int64, bins: Int) throws -> [String: [Double]] {
        let e = try extent(recording: recording)
        guard let from = e.fromNs, let to = e.toNs else { return [:] }
        let t = try timeline(recording: recording, fromNs: from, toNs: to, bins: bins)
        var entropy = [Double](repeating: 0, count: bins)
        let span = max(to - from, 1)
        try db.read { db in
            for r in try Row.fetchAll(db, sql: """
                SELECT MIN(CAST((time_ns - \(from)) * 1.0 / \(span) * \(bins) AS INTEGER), \(bins - 1)) b, AVG(entropy) e
                FROM blocks WHERE recording = ? AND op = 'write' AND entropy IS NOT NULL GROUP BY b
                """, arguments: [recording]) {
                entropy[r["b"] as Int] = r["e"]
            }
        }
        let all: [String: [Double]] = [
            "write-bytes": t.writeBytes.map(Double.init),
            "read-bytes": t.readBytes.map(Double.init),
            "write-entropy": entropy,
            "events": t.events.map(Double.init),
        ]
        // A constant series has no field to show.
        return all.filter { _, v in (v.min() ?? 0) != (v.max() ?? 0) }
    }
}
