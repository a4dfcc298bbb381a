import Foundation
import KanshiCore
import KanshiJournal
import KanshiML
import KanshiRules
import KanshiShip
import KanshiSystem
import KanshiTrace

/// Why an upload was refused, as the HTTP status and answer it becomes. Nothing was stored.
enum IngestRefusal: Error {
    /// 409: the chunk does not start where the copy ends.
    case conflict(String, ShipProtocol.Refusal)
    /// 400: not what a journal or log holds there.
    case malformed(String)
    /// 500: the stored copy cannot take more (damaged by something other than the server).
    case damaged(String)
}

/// One recording's stored copies and the rules that watch them. Calls are serialised by the
/// lock: chunks of one recording are stored in order, recordings go in parallel.
final class RecordingIngest: @unchecked Sendable {
    let id: Int64
    let sensor: String
    let name: String
    let directory: String
    let lock = NSLock()
    private let store: ServerStore
    private let rules: RuleSet
    private let detectors: Detectors
    private var replica: JournalReplica?
    private var journalEngine: RuleEngine?
    private var logFile: SystemFile?
    private var logOffset: UInt64 = 0
    private var logEngine: RuleEngine?
    /// The disk detector on the journal's block records, the process detector on the log's events;
    /// each alerts once per recording.
    private var diskDetector: LiveDetector?
    private var diskAlerted = false
    private var processDetector: ProcessDetector?
    private var processAlerted = false

    var journalDirectory: String { directory + "/journal" }
    var logPath: String { directory + "/behaviour.jsonl" }

    init(store: ServerStore, sensor: String, name: String, rules: RuleSet, detectors: Detectors) throws {
        self.store = store
        self.sensor = sensor
        self.name = name
        self.rules = rules
        self.detectors = detectors
        directory = store.recordingDirectory(sensor: sensor, name: name)
        id = try store.recordingID(sensor: sensor, name: name)
    }

    // MARK: journal

    /// The copy, opened (and reconciled with the index) on first use.
    private func openReplica() throws -> JournalReplica {
        if let replica { return replica }
        do {
            if !FileSystem.isDirectory(directory) { try FileSystem.createDirectory(directory) }
            let r = try JournalReplica(directory: journalDirectory)
            try store.reconcileJournal(recording: id, replica: r)
            replica = r
            return r
        } catch let e as ReplicaError {
            throw IngestRefusal.damaged("\(sensor)/\(name): \(e)")
        }
    }

    func journalHead() throws -> ShipProtocol.JournalHead {
        lock.lock(); defer { lock.unlock() }
        let r = try openReplica()
        return .init(segment: r.position.segment, offset: r.position.offset, nextSequence: r.nextSequence)
    }

    /// Checks and stores a journal chunk, then runs the rules on its records.
    func appendJournal(at: ShipPosition, _ bytes: [UInt8]) throws -> ShipProtocol.JournalHead {
        lock.lock(); defer { lock.unlock() }
        let r = try openReplica()
        let engine = try primedJournalEngine()
        var decoded: [ServerStore.DecodedRecord] = []
        let appended: JournalReplica.Appended
        do {
            appended = try bytes.withUnsafeBytes { b in
                try r.append(at: at, b) { record in decoded.append(try ServerStore.decode(record)) }
            }
        } catch let ReplicaError.outOfOrder(expected, got) {
            let head = ShipProtocol.JournalHead(segment: expected.segment, offset: expected.offset, nextSequence: r.nextSequence)
            let why = got < expected ? "the server already has this chunk (its copy ends at \(expected))" : "a gap: the server's copy ends at \(expected), the chunk starts at \(got)"
            throw IngestRefusal.conflict(why, .init(error: why, expected: head))
        } catch let e as ReplicaError {
            throw IngestRefusal.malformed("\(e)")
        } catch let JournalError.corrupt(_, reason) {
            throw IngestRefusal.malformed("a record cannot be read: \(reason)")
        }
        try store.noteJournal(recording: id, appended, at: at, bytes: bytes.count,
                              blocks: decoded.compactMap(\.row), notes: decoded.compactMap(\.note))
        for d in decoded { try feedJournal(d, engine: engine, detector: diskDetector) }
        if let diskDetector { try evaluateDisk(diskDetector) }
        return .init(segment: appended.next.segment, offset: appended.next.offset, nextSequence: r.nextSequence)
    }

    /// The journal's rules, fed everything stored before (after a restart, the alerts this
    /// raises again are already kept and are not kept twice).
    private func primedJournalEngine() throws -> RuleEngine {
        if let journalEngine { return journalEngine }
        let engine = RuleEngine(rules)
        let detector = try detectors.disk.map { try LiveDetector(model: $0) }
        if FileSystem.exists(journalDirectory + "/" + JournalFormat.segmentName(1)) {
            try JournalReader(directory: journalDirectory).forEachRecord { r in
                try feedJournal(try ServerStore.decode(r), engine: engine, detector: detector)
            }
            if let detector { try evaluateDisk(detector) }
        }
        journalEngine = engine
        diskDetector = detector
        return engine
    }

    /// One record to the journal's rules (alerts kept) and to the disk detector.
    private func feedJournal(_ d: ServerStore.DecodedRecord, engine: RuleEngine, detector: LiveDetector?) throws {
        if let e = d.rule { for a in engine.add(e) { try keep(a, source: "journal") } }
        if let detector, let b = d.block { detector.append(b) }
    }

    /// The disk detector's verdict so far; its first alert is kept.
    private func evaluateDisk(_ d: LiveDetector) throws {
        guard !diskAlerted, let a = try d.evaluate(sinceNs: 0) else { return }
        diskAlerted = true
        let p = String(format: "%.2f", a.probability)
        try keepDetector(rule: "disk-detector", source: "journal", timeNs: a.windowStartNs,
                         output: "the disk detector finds ransomware-like block activity (p=\(p)) in the window from \(a.windowStartNs)",
                         extra: "\"detector\":\"blocks\",\"probability\":\(p),\"window\":\(a.window)")
    }

    private func evaluateProcesses(_ d: ProcessDetector) throws {
        guard !processAlerted, let a = try d.evaluate() else { return }
        processAlerted = true
        let p = String(format: "%.2f", a.probability)
        let argv = a.argv.joined(separator: " ")
        try keepDetector(rule: "process-detector", source: "log", timeNs: a.atNs,
                         output: "the process detector finds pid \(a.root) (\(argv)) ransomware-like (p=\(p)): \(a.destroyed) files that were there before it destroyed",
                         extra: "\"detector\":\"processes\",\"probability\":\(p),\"pid\":\(a.root),\"destroyed\":\(a.destroyed)")
    }

    /// A detector's alert in the shape of a rule's (rule, severity, time, output, evidence).
    private func keepDetector(rule: String, source: String, timeNs: UInt64, output: String, extra: String) throws {
        let json = "{\"rule\":\"\(rule)\",\"severity\":\"critical\",\"time\":\(timeNs),\"tags\":[\"detector\"],\"key\":{},\"output\":\"\(output.jsonEscaped)\",\"actions\":[\"alert\"],\"evidence\":[],\(extra)}"
        try store.addAlert(recording: id, source: source, rule: rule, severity: "critical", timeNs: timeNs, json: json)
    }

    // MARK: behaviour log

    private func openLog() throws -> SystemFile {
        if let logFile { return logFile }
        if !FileSystem.isDirectory(directory) { try FileSystem.createDirectory(directory) }
        let f = try SystemFile(path: logPath, mode: [.readWrite, .create])
        // A chunk cut short by a crash before its sync was never acknowledged: keep whole lines only.
        var size = try f.size()
        if size > 0 {
            var probe = [UInt8](repeating: 0, count: Int(min(size, 1 << 20)))
            while size > 0 {
                let from = size - UInt64(min(UInt64(probe.count), size))
                let n = Int(size - from)
                _ = try probe.withUnsafeMutableBytes { try f.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: from) }
                if let nl = probe[0..<n].lastIndex(of: UInt8(ascii: "\n")) {
                    size = from + UInt64(nl) + 1
                    break
                }
                size = from
            }
            try f.truncate(to: size)
        }
        logOffset = size
        logFile = f
        return f
    }

    func logHead() throws -> ShipProtocol.LogHead {
        lock.lock(); defer { lock.unlock() }
        _ = try openLog()
        return .init(offset: logOffset)
    }

    /// Checks that the chunk is whole lines of behaviour events, stores it, runs the rules on them.
    func appendLog(at offset: UInt64, _ bytes: [UInt8]) throws -> ShipProtocol.LogHead {
        lock.lock(); defer { lock.unlock() }
        let f = try openLog()
        guard offset == logOffset else {
            let why = offset < logOffset ? "the server already has these lines (its copy ends at byte \(logOffset))"
                                         : "a gap: the server's copy ends at byte \(logOffset), the chunk starts at \(offset)"
            throw IngestRefusal.conflict(why, .init(error: why, expectedOffset: logOffset))
        }
        guard bytes.last == UInt8(ascii: "\n") else { throw IngestRefusal.malformed("the chunk does not end with a whole line") }
        let engine = try primedLogEngine()
        var events: [(TraceEvent, String)] = []
        do {
            try bytes.withUnsafeBytes { b in
                try BehaviourLogReader.events(inLines: b) { e, line in events.append((e, String(decoding: line, as: UTF8.self))) }
            }
        } catch let TraceError.badLog(_, line, reason) {
            throw IngestRefusal.malformed("line \(line) of the chunk (the log's byte \(offset) on): \(reason)")
        }
        do {
            try bytes.withUnsafeBytes { try f.write($0, at: offset) }
            try f.syncData()
        } catch {
            // Whatever reached the file past the copy's end was not acknowledged: cut it.
            try? f.truncate(to: offset)
            throw error
        }
        logOffset += UInt64(bytes.count)
        try store.noteLog(recording: id, offset: logOffset, events: events)
        for (e, _) in events { for a in engine.add(e) { try keep(a, source: "log") } }
        if let d = processDetector {
            for (e, _) in events { d.add(e) }
            try evaluateProcesses(d)
        }
        return .init(offset: logOffset)
    }

    private func primedLogEngine() throws -> RuleEngine {
        if let logEngine { return logEngine }
        let engine = RuleEngine(rules)
        let detector = try detectors.process.map { try ProcessDetector(model: $0, under: detectors.processPrefix) }
        if logOffset > 0 {
            do {
                try BehaviourLogReader.read(path: logPath) { e in
                    for a in engine.add(e) { try keep(a, source: "log") }
                    detector?.add(e)
                }
            } catch let e as TraceError {
                throw IngestRefusal.damaged("\(sensor)/\(name): the stored log: \(e)")
            }
            if let detector { try evaluateProcesses(detector) }
        }
        logEngine = engine
        processDetector = detector
        return engine
    }

    private func keep(_ a: RuleAlert, source: String) throws {
        try store.addAlert(recording: id, source: source, rule: a.rule, severity: a.severity.rawValue, timeNs: a.time, json: a.json)
    }
}

/// The detectors' models the server runs on what arrives (none, one or both).
public struct Detectors: Sendable {
    /// On block records (kanshi train; models/sandbox-detector.json).
    public var disk: DetectorModel?
    /// On behaviour events (kanshi behaviour train; models/process-detector.json).
    public var process: DetectorModel?
    /// Only files under this directory count for the process detector (the sandbox's guest mounts its disk here).
    public var processPrefix = ProcessTraining.guestPrefix
    public init(disk: DetectorModel? = nil, process: DetectorModel? = nil) {
        self.disk = disk
        self.process = process
    }
}

/// Every recording's ingest, made on first use.
final class IngestRegistry: @unchecked Sendable {
    private let store: ServerStore
    private let rules: RuleSet
    private let detectors: Detectors
    private let lock = NSLock()
    private var open: [String: RecordingIngest] = [:]

    init(store: ServerStore, rules: RuleSet, detectors: Detectors) {
        self.store = store
        self.rules = rules
        self.detectors = detectors
    }

    func ingest(sensor: String, name: String) throws -> RecordingIngest {
        lock.lock(); defer { lock.unlock() }
        let key = sensor + "/" + name
        if let i = open[key] { return i }
        let i = try RecordingIngest(store: store, sensor: sensor, name: name, rules: rules, detectors: detectors)
        open[key] = i
        return i
    }
}
