import Crypto
import _CryptoExtras
import Foundation
import GRDB
import KanshiJournal
import KanshiShip
import KanshiSystem
import KanshiTrace

/// Why the server's store refused something: a bad name, a missing directory, an unknown user.
public struct ServerError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The server's data directory: what sensors shipped, as journals and logs in plain files, and an
/// SQLite index (sensors and their token hashes, users, recordings, the chain heads the server
/// saw arrive, alerts).
///
/// ```
/// DIR/kanshi.sqlite
/// DIR/recordings/SENSOR/NAME/journal/segment-….kjs   a verified copy of the sensor's journal
/// DIR/recordings/SENSOR/NAME/behaviour.jsonl          its behaviour log
/// ```
public final class ServerStore: Sendable {
    public let directory: String
    let db: DatabasePool
    public static let indexName = "kanshi.sqlite"
    /// PBKDF2-SHA256 rounds for passwords (the library's minimum, OWASP's advice for SHA-256 is higher but this is a login, not a vault).
    static let passwordRounds = 210_000
    static let sessionLifetimeNs: UInt64 = 12 * 3600 * 1_000_000_000

    /// Opens (and creates, with `create`) a data directory.
    public init(directory: String, create: Bool = true) throws {
        if !FileSystem.isDirectory(directory) {
            guard create else { throw ServerError("\(directory): no such data directory") }
            do { try FileSystem.createDirectory(directory) } catch { throw ServerError("\(directory): cannot create the data directory: \(error)") }
        }
        self.directory = FileSystem.absolutePath(directory)
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            db = try DatabasePool(path: self.directory + "/" + Self.indexName, configuration: config)
            try Self.migrator.migrate(db)
        } catch {
            throw ServerError("\(self.directory)/\(Self.indexName): cannot open the index: \(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE sensors(name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, created_ns INTEGER NOT NULL);
                CREATE TABLE users(name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL, rounds INTEGER NOT NULL, created_ns INTEGER NOT NULL);
                CREATE TABLE sessions(token_sha256 TEXT PRIMARY KEY, user TEXT NOT NULL, expires_ns INTEGER NOT NULL);
                CREATE TABLE recordings(
                    id INTEGER PRIMARY KEY, sensor TEXT NOT NULL, name TEXT NOT NULL,
                    created_ns INTEGER NOT NULL, updated_ns INTEGER NOT NULL,
                    journal_segment INTEGER NOT NULL DEFAULT 1, journal_offset INTEGER NOT NULL DEFAULT 0,
                    journal_records INTEGER NOT NULL DEFAULT 0, journal_bytes INTEGER NOT NULL DEFAULT 0,
                    checkpoint_segment INTEGER, checkpoint_offset INTEGER, checkpoint_hash TEXT,
                    log_offset INTEGER NOT NULL DEFAULT 0, log_events INTEGER NOT NULL DEFAULT 0,
                    first_ns INTEGER, last_ns INTEGER, alerts INTEGER NOT NULL DEFAULT 0,
                    UNIQUE(sensor, name));
                CREATE TABLE segments(recording INTEGER NOT NULL, idx INTEGER NOT NULL, hash TEXT NOT NULL, PRIMARY KEY(recording, idx));
                CREATE TABLE alerts(
                    id INTEGER PRIMARY KEY, recording INTEGER NOT NULL, source TEXT NOT NULL, rule TEXT NOT NULL,
                    severity TEXT NOT NULL, time_ns INTEGER NOT NULL, fingerprint TEXT NOT NULL, json TEXT NOT NULL,
                    UNIQUE(recording, fingerprint));
                CREATE INDEX alerts_by_recording ON alerts(recording, id);
                """)
        }
        indexMigration(&m)
        return m
    }

    // MARK: sensors

    /// Makes a sensor and its token; the token is shown once (only its hash is kept).
    public func addSensor(_ name: String) throws -> String {
        guard ShipProtocol.validName(name) else { throw ServerError("sensor name \"\(name)\": \(RecordingName.rule)") }
        let token = "ks1." + Self.randomBytes(32).hex
        do {
            try db.write { db in
                try db.execute(sql: "INSERT INTO sensors(name, token_sha256, created_ns) VALUES (?, ?, ?)",
                               arguments: [name, Self.sha256(token), Int64(FileSystem.nowNs())])
            }
        } catch let e as DatabaseError where e.resultCode == .SQLITE_CONSTRAINT {
            throw ServerError("sensor \(name) already has a token (remove it with `kanshi server token remove \(name)` first)")
        }
        return token
    }

    public func removeSensor(_ name: String) throws {
        let n = try db.write { db in
            try db.execute(sql: "DELETE FROM sensors WHERE name = ?", arguments: [name])
            return db.changesCount
        }
        if n == 0 { throw ServerError("no sensor named \(name)") }
    }

    public func sensors() throws -> [(name: String, createdNs: UInt64)] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT name, created_ns FROM sensors ORDER BY name").map { ($0["name"], UInt64($0["created_ns"] as Int64)) }
        }
    }

    /// The sensor a token belongs to, or nil.
    public func sensor(token: String) throws -> String? {
        try db.read { db in try String.fetchOne(db, sql: "SELECT name FROM sensors WHERE token_sha256 = ?", arguments: [Self.sha256(token)]) }
    }

    // MARK: users

    public func addUser(_ name: String, password: String) throws {
        guard ShipProtocol.validName(name) else { throw ServerError("user name \"\(name)\": \(RecordingName.rule)") }
        guard password.utf8.count >= 8 else { throw ServerError("password for \(name): at least 8 characters") }
        let salt = Self.randomBytes(16)
        let hash = try Self.passwordHash(password, salt: salt, rounds: Self.passwordRounds)
        try db.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO users(name, salt, hash, rounds, created_ns) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, Data(salt), Data(hash), Self.passwordRounds, Int64(FileSystem.nowNs())])
        }
    }

    static func passwordHash(_ password: String, salt: [UInt8], rounds: Int) throws -> [UInt8] {
        let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256, outputByteCount: 32, rounds: rounds)
        return key.withUnsafeBytes { Array($0) }
    }

    /// A new session token for a user whose password is right, or nil.
    public func login(user: String, password: String) throws -> String? {
        guard let row = try db.read({ db in try Row.fetchOne(db, sql: "SELECT salt, hash, rounds FROM users WHERE name = ?", arguments: [user]) }) else {
            return nil
        }
        let salt = [UInt8](row["salt"] as Data), stored = [UInt8](row["hash"] as Data), rounds: Int = row["rounds"]
        let given = try Self.passwordHash(password, salt: salt, rounds: rounds)
        // Constant-time comparison.
        guard given.count == stored.count, zip(given, stored).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0 else { return nil }
        let token = Self.randomBytes(32).hex
        let now = FileSystem.nowNs()
        try db.write { db in
            try db.execute(sql: "DELETE FROM sessions WHERE expires_ns < ?", arguments: [Int64(now)])
            try db.execute(sql: "INSERT INTO sessions(token_sha256, user, expires_ns) VALUES (?, ?, ?)",
                           arguments: [Self.sha256(token), user, Int64(now + Self.sessionLifetimeNs)])
        }
        return token
    }

    /// The user of a live session, or nil.
    public func user(session: String) throws -> String? {
        try db.read { db in
            try String.fetchOne(db, sql: "SELECT user FROM sessions WHERE token_sha256 = ? AND expires_ns >= ?",
                                arguments: [Self.sha256(session), Int64(FileSystem.nowNs())])
        }
    }

    public func logout(session: String) throws {
        try db.write { db in try db.execute(sql: "DELETE FROM sessions WHERE token_sha256 = ?", arguments: [Self.sha256(session)]) }
    }

    // MARK: recordings

    public func recordingDirectory(sensor: String, name: String) -> String { directory + "/recordings/\(sensor)/\(name)" }

    /// The recording's row id, making the row if it is new.
    func recordingID(sensor: String, name: String) throws -> Int64 {
        try db.write { db in
            if let id = try Int64.fetchOne(db, sql: "SELECT id FROM recordings WHERE sensor = ? AND name = ?", arguments: [sensor, name]) { return id }
            let now = Int64(FileSystem.nowNs())
            try db.execute(sql: "INSERT INTO recordings(sensor, name, created_ns, updated_ns) VALUES (?, ?, ?, ?)", arguments: [sensor, name, now, now])
            return db.lastInsertedRowID
        }
    }

    /// A recording as the API and `server verify` see it.
    public struct Recording: Codable, Sendable {
        public var id: Int64
        public var sensor: String
        public var name: String
        public var createdNs: UInt64
        public var updatedNs: UInt64
        public var journalSegment: UInt64
        public var journalOffset: UInt64
        public var journalRecords: UInt64
        public var journalBytes: UInt64
        public var checkpointSegment: UInt64?
        public var checkpointOffset: UInt64?
        public var checkpointHash: String?
        public var logOffset: UInt64
        public var logEvents: UInt64
        public var firstNs: UInt64?
        public var lastNs: UInt64?
        public var alerts: Int
    }

    static func recording(_ r: Row) -> Recording {
        func u(_ k: String) -> UInt64 { UInt64((r[k] as Int64?) ?? 0) }
        func o(_ k: String) -> UInt64? { (r[k] as Int64?).map { UInt64($0) } }
        return Recording(id: r["id"], sensor: r["sensor"], name: r["name"], createdNs: u("created_ns"), updatedNs: u("updated_ns"),
                         journalSegment: u("journal_segment"), journalOffset: u("journal_offset"),
                         journalRecords: u("journal_records"), journalBytes: u("journal_bytes"),
                         checkpointSegment: o("checkpoint_segment"), checkpointOffset: o("checkpoint_offset"), checkpointHash: r["checkpoint_hash"],
                         logOffset: u("log_offset"), logEvents: u("log_events"), firstNs: o("first_ns"), lastNs: o("last_ns"), alerts: r["alerts"])
    }

    public func recordings() throws -> [Recording] {
        try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM recordings ORDER BY sensor, name").map(Self.recording) }
    }

    public func recording(sensor: String, name: String) throws -> Recording? {
        try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM recordings WHERE sensor = ? AND name = ?", arguments: [sensor, name]).map(Self.recording) }
    }

    /// Seal hashes kept as segments arrived, by segment index.
    public func segmentHashes(recording: Int64) throws -> [UInt64: String] {
        try db.read { db in
            var out: [UInt64: String] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT idx, hash FROM segments WHERE recording = ?", arguments: [recording]) {
                out[UInt64(r["idx"] as Int64)] = r["hash"]
            }
            return out
        }
    }

    /// Records what an accepted journal chunk changed (after it is durable in the copy).
    func noteJournal(recording: Int64, _ a: JournalReplica.Appended, at: ShipPosition, bytes: Int,
                     blocks: [BlockRow] = [], notes: [NoteRow] = []) throws {
        try db.write { db in
            try Self.insert(db, recording: recording, blocks: blocks, notes: notes)
            try db.execute(sql: """
                UPDATE recordings SET journal_segment = ?, journal_offset = ?, journal_records = journal_records + ?,
                    journal_bytes = journal_bytes + ?, updated_ns = ?,
                    first_ns = COALESCE(first_ns, ?), last_ns = COALESCE(?, last_ns) WHERE id = ?
                """, arguments: [Int64(a.next.segment), Int64(a.next.offset), a.records, bytes, Int64(FileSystem.nowNs()),
                                 a.firstTimeNs.map { Int64($0) }, a.lastTimeNs.map { Int64($0) }, recording])
            if let c = a.checkpoint {
                try db.execute(sql: "UPDATE recordings SET checkpoint_segment = ?, checkpoint_offset = ?, checkpoint_hash = ? WHERE id = ?",
                               arguments: [Int64(at.segment), Int64(c.offset), c.hash.hex, recording])
            }
            if let s = a.sealHash {
                try db.execute(sql: "INSERT OR REPLACE INTO segments(recording, idx, hash) VALUES (?, ?, ?)", arguments: [recording, Int64(at.segment), s.hex])
            }
        }
    }

    /// Brings the index up to a copy's end after a restart (a chunk made durable just before a crash,
    /// its index row not yet written): seal hashes are read from the seal records the copy verified.
    func reconcileJournal(recording: Int64, replica: JournalReplica) throws {
        let known = try segmentHashes(recording: recording)
        var missing: [(UInt64, String)] = []
        var index: UInt64 = 1
        while index < replica.position.segment {
            if known[index] == nil {
                let path = replica.directory + "/" + JournalFormat.segmentName(index)
                let f = try SystemFile(path: path, mode: .readOnly)
                let size = try f.size()
                var tail = [UInt8](repeating: 0, count: 32)
                _ = try tail.withUnsafeMutableBytes { try f.read(into: $0, at: size - 32) }
                missing.append((index, tail.hex))
            }
            index += 1
        }
        try db.write { db in
            for (i, h) in missing {
                try db.execute(sql: "INSERT OR REPLACE INTO segments(recording, idx, hash) VALUES (?, ?, ?)", arguments: [recording, Int64(i), h])
            }
            try db.execute(sql: "UPDATE recordings SET journal_segment = ?, journal_offset = ? WHERE id = ?",
                           arguments: [Int64(replica.position.segment), Int64(replica.position.offset), recording])
        }
    }

    func noteLog(recording: Int64, offset: UInt64, events: [(TraceEvent, String)]) throws {
        let firstNs = events.first.map { $0.0.time }, lastNs = events.last.map { $0.0.time }
        try db.write { db in
            try Self.insert(db, recording: recording, events: events)
            try db.execute(sql: """
                UPDATE recordings SET log_offset = ?, log_events = log_events + ?, updated_ns = ?,
                    first_ns = COALESCE(first_ns, ?), last_ns = COALESCE(?, last_ns) WHERE id = ?
                """, arguments: [Int64(offset), events.count, Int64(FileSystem.nowNs()), firstNs.map { Int64($0) }, lastNs.map { Int64($0) }, recording])
        }
    }

    // MARK: alerts

    /// Keeps an alert once (the same alert raised again after a restart's replay is not kept twice); true if new.
    @discardableResult
    func addAlert(recording: Int64, source: String, rule: String, severity: String, timeNs: UInt64, json: String) throws -> Bool {
        try db.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO alerts(recording, source, rule, severity, time_ns, fingerprint, json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [recording, source, rule, severity, Int64(timeNs), Self.sha256(source + "\n" + json), json])
            guard db.changesCount > 0 else { return false }
            try db.execute(sql: "UPDATE recordings SET alerts = alerts + 1 WHERE id = ?", arguments: [recording])
            return true
        }
    }

    public struct StoredAlert: Codable, Sendable {
        public var id: Int64
        public var sensor: String
        public var recording: String
        public var source: String
        public var rule: String
        public var severity: String
        public var timeNs: UInt64
        /// The alert as `kanshi rules check` writes it.
        public var alert: String
    }

    /// Alerts after id `after` (all recordings, or one), oldest first, at most `limit`.
    public func alerts(recording: Int64? = nil, after: Int64 = 0, limit: Int = 100) throws -> [StoredAlert] {
        try db.read { db in
            let filter = recording == nil ? "" : " AND a.recording = \(recording!)"
            return try Row.fetchAll(db, sql: """
                SELECT a.id, r.sensor, r.name, a.source, a.rule, a.severity, a.time_ns, a.json FROM alerts a JOIN recordings r ON r.id = a.recording
                WHERE a.id > ?\(filter) ORDER BY a.id LIMIT ?
                """, arguments: [after, limit]).map {
                StoredAlert(id: $0["id"], sensor: $0["sensor"], recording: $0["name"], source: $0["source"], rule: $0["rule"],
                            severity: $0["severity"], timeNs: UInt64($0["time_ns"] as Int64), alert: $0["json"])
            }
        }
    }

    // MARK: helpers

    /// Bytes from the system's cryptographic random source (tokens, session ids, salts).
    static func randomBytes(_ n: Int) -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<n).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    static func sha256(_ s: String) -> String { Array(SHA256.hash(data: Array(s.utf8))).hex }
}
