import AsyncHTTPClient
import Foundation
import KanshiCore
import KanshiJournal
import KanshiRules
import KanshiShip
import KanshiSystem
import KanshiTrace
import Logging
import NIOCore
import NIOHTTP1
import Testing
@testable import KanshiServer

/// A fresh temporary directory, removed when the value goes away.
final class TempDir: @unchecked Sendable {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "kanshi-server-test-" + UUID().uuidString
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let quiet: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .critical
    return l
}()

/// Runs the in-process servers' tasks on threads of their own: the tests around them (and other
/// suites') block the shared cooperative pool, which would stall a server running on it.
final class ServerThreads: TaskExecutor, @unchecked Sendable {
    static let shared = ServerThreads()
    private let queue = DispatchQueue(label: "kanshi.test.server", attributes: .concurrent)
    func enqueue(_ job: consuming ExecutorJob) {
        let j = UnownedJob(job)
        queue.async { j.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// A real server on a free loopback port, in this process.
final class RunningServer: @unchecked Sendable {
    let server: AnalysisServer
    let port: Int
    let task: Task<Void, Error>
    var url: String { "\(server.options.certificate == nil ? "http" : "https")://127.0.0.1:\(port)" }

    init(data: String, configure: (inout ServerOptions) -> Void = { _ in }) async throws {
        var o = ServerOptions(data: data)
        o.port = 0
        configure(&o)
        let s = try AnalysisServer(options: o)
        server = s
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        task = Task(executorPreference: ServerThreads.shared) { try await s.run { continuation.yield($0) } }
        var it = ports.makeAsyncIterator()
        port = await it.next() ?? 0
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }
}

/// One HTTP request; status and body.
func request(_ method: HTTPMethod, _ url: String, token: String? = nil, cookie: String? = nil, body: [UInt8]? = nil,
             headers: [(String, String)] = []) async throws -> (Int, String, HTTPClient.Response) {
    var r = try HTTPClient.Request(url: url, method: method)
    if let token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
    if let cookie { r.headers.add(name: "Cookie", value: cookie) }
    for (k, v) in headers { r.headers.replaceOrAdd(name: k, value: v) }
    if let body { r.body = .bytes(body) }
    let response = try await HTTPClient.shared.execute(request: r).get()
    let text = response.body.map { String(buffer: $0) } ?? ""
    return (Int(response.status.code), text, response)
}

/// A journal written with small segments, and a behaviour log with a credential read in it.
func makeJournal(_ dir: String, writes: Int, seed: UInt64 = 1) throws {
    let w = try JournalWriter(directory: dir, options: .init(segmentBytes: 64 << 10), logger: quiet)
    var state = seed
    for i in 0..<writes {
        var data = [UInt8](repeating: 0, count: 4096)
        for j in data.indices { state = state &* 6364136223846793005 &+ 1442695040888963407; data[j] = UInt8(truncatingIfNeeded: state >> 33) }
        let e = BlockEvent(operation: .write, timeNs: UInt64(1_000 + i), lba: UInt64(i * 8), length: 4096, entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
        let meta = BlockRecords.encodeMetadata(e)
        _ = try meta.withUnsafeBytes { m in try data.withUnsafeBytes { d in try w.append(kind: .blockWrite, timeNs: UInt64(1_000 + i), parts: [m, d]) } }
        if i % 5 == 4 { try w.sync() }
    }
    try w.close()
}

func logLines(_ events: [(TraceEvent.Kind, String?)], firstSeq: UInt64 = 1) -> String {
    var out = ""
    for (i, (kind, path)) in events.enumerated() {
        var e = TraceEvent(kind: kind)
        e.seq = firstSeq + UInt64(i)
        e.time = 1_800_000_000_000_000_000 + UInt64(i) * 1_000_000
        e.pid = 100; e.tid = 100
        e.path = path
        e.ret = 3
        e.call = kind.rawValue
        out += e.json + "\n"
    }
    return out
}

@Suite(.serialized) struct ServerTests {
    @Test func aSensorShipsItsJournalAndLogAndTheServerKeepsThemVerifiedWithAlerts() async throws {
        let data = TempDir(), sensor = TempDir()
        let srv = try await RunningServer(data: data.path + "/srv")
        defer { Task { await srv.stop() } }
        let token = try srv.server.store.addSensor("lab-vm")
        let journal = sensor.path + "/run.journal", log = sensor.path + "/run.jsonl"
        try makeJournal(journal, writes: 50)
        try logLines([(.open, "/home/u/notes.txt"), (.open, "/etc/shadow"), (.close, nil)]).write(toFile: log, atomically: true, encoding: .utf8)

        var o = Shipper.Options(url: srv.url, token: token, recording: "run1")
        o.chunkBytes = 16 << 10
        let shipper = try Shipper(options: o, journal: journal, log: log)
        shipper.start()
        let status = shipper.finish(timeout: 60)
        #expect(status.stopped == nil && status.backlog == 0, "\(status)")
        #expect(status.chunksShipped > 5)

        let stored = srv.server.store.recordingDirectory(sensor: "lab-vm", name: "run1")
        for name in try FileManager.default.contentsOfDirectory(atPath: journal) where name.hasSuffix(".kjs") {
            #expect(FileManager.default.contents(atPath: journal + "/" + name) == FileManager.default.contents(atPath: stored + "/journal/" + name), "\(name)")
        }
        #expect(FileManager.default.contents(atPath: log) == FileManager.default.contents(atPath: stored + "/behaviour.jsonl"))
        let findings = try ServerVerifier.verify(store: srv.server.store)
        #expect(findings.count == 1 && findings[0].ok, "\(findings)")
        let local = try ServerVerifier.compare(store: srv.server.store, recording: "lab-vm/run1", localJournal: journal)
        #expect(local.ok, "\(local)")
        // The rules ran on what arrived: the same alerts `kanshi rules check` gives on the log.
        let kept = try srv.server.store.alerts()
        var offline: [String] = []
        try RuleRun.run(log: log, engine: RuleEngine(try RuleSet.builtin())) { offline.append($0.json) }
        #expect(!offline.isEmpty)
        #expect(kept.map(\.alert) == offline)
        #expect(kept.allSatisfy { $0.sensor == "lab-vm" && $0.recording == "run1" && $0.source == "log" })

        // More written later ships from where the server's copy ends.
        try (logLines([(.open, "/etc/gshadow")], firstSeq: 4)).appendingTo(log)
        let again = try Shipper(options: o, journal: journal, log: log)
        again.start()
        let s2 = again.finish(timeout: 60)
        #expect(s2.backlog == 0 && s2.chunksShipped == 1, "\(s2)")
        #expect(try srv.server.store.recording(sensor: "lab-vm", name: "run1")?.logEvents == 4)
    }

    /// Every bad request gets its status and leaves what is stored as it was.
    @Test func badRequestsGetTheRightStatusAndChangeNothing() async throws {
        let data = TempDir(), sensor = TempDir()
        let srv = try await RunningServer(data: data.path)
        defer { Task { await srv.stop() } }
        let store = srv.server.store
        let mine = try store.addSensor("a"), theirs = try store.addSensor("b")
        let journal = sensor.path + "/j"
        try makeJournal(journal, writes: 30)
        let base = srv.url + ShipProtocol.journalPath("a", "r")
        var position = ShipPosition.start
        // Two chunks in.
        var chunks: [JournalChunk] = []
        for _ in 0..<2 {
            let c = try #require(try JournalChunks.next(directory: journal, from: position, limit: 8192))
            let (status, text, _) = try await request(.PUT, base + "?segment=\(c.position.segment)&offset=\(c.position.offset)", token: mine, body: c.bytes)
            #expect(status == 200, "\(text)")
            position = c.next
            chunks.append(c)
        }
        let next = try #require(try JournalChunks.next(directory: journal, from: position, limit: 8192))
        let dir = store.recordingDirectory(sensor: "a", name: "r") + "/journal"
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { FileManager.default.contents(atPath: dir + "/" + $0) }
        let row = try store.recording(sensor: "a", name: "r")

        func put(_ query: String, token: String?, body: [UInt8], url: String? = nil) async throws -> (Int, String) {
            let (s, t, _) = try await request(.PUT, (url ?? base) + query, token: token, body: body)
            return (s, t)
        }
        let at = "?segment=\(next.position.segment)&offset=\(next.position.offset)"
        var (s, t) = try await put(at, token: nil, body: next.bytes)
        #expect(s == 401, "no token: \(t)")
        (s, t) = try await put(at, token: "ks1.0000", body: next.bytes)
        #expect(s == 401, "unknown token: \(t)")
        (s, t) = try await put(at, token: theirs, body: next.bytes)
        #expect(s == 403, "another sensor's recording: \(t)")
        (s, t) = try await put("?segment=\(chunks[1].position.segment)&offset=\(chunks[1].position.offset)", token: mine, body: chunks[1].bytes)
        #expect(s == 409 && t.contains("already has"), "duplicate: \(t)")
        let refusal = try JSONDecoder().decode(ShipProtocol.Refusal.self, from: Data(t.utf8))
        #expect(refusal.expected?.position == position)
        (s, t) = try await put("?segment=\(next.next.segment)&offset=\(next.next.offset)", token: mine, body: next.bytes)
        #expect(s == 409 && t.contains("gap"), "out of order: \(t)")
        var flipped = next.bytes
        flipped[100] ^= 1
        (s, t) = try await put(at, token: mine, body: flipped)
        #expect(s == 400 && t.contains("checksum"), "malformed: \(t)")
        (s, t) = try await put("?segment=x", token: mine, body: next.bytes)
        #expect(s == 400, "bad query: \(t)")
        (s, t) = try await put(at, token: mine, body: [UInt8](repeating: 7, count: ShipProtocol.maxBody + 1))
        #expect(s == 413, "oversized: \(t)")
        (s, t) = try await put(at, token: mine, body: Array("{\"ev\":\"open\"".utf8), url: srv.url + ShipProtocol.logPath("a", "r"))
        #expect(s == 400 || s == 409, "bad log query: \(t)")
        (s, t) = try await put("?offset=0", token: mine, body: Array("not json\n".utf8), url: srv.url + ShipProtocol.logPath("a", "r"))
        #expect(s == 400 && t.contains("line 1"), "a log line that is not an event: \(t)")
        (s, t) = try await put("?offset=0", token: mine, body: Array("{\"ev\":\"open\"".utf8), url: srv.url + ShipProtocol.logPath("a", "r"))
        #expect(s == 400 && t.contains("whole line"), "a cut log line: \(t)")
        (s, t) = try await put(at, token: mine, body: next.bytes, url: srv.url + ShipProtocol.journalPath("a", "..x"))
        #expect(s == 400, "a bad recording name: \(t)")

        let after = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map { FileManager.default.contents(atPath: dir + "/" + $0) }
        #expect(before == after)
        let rowAfter = try store.recording(sensor: "a", name: "r")
        #expect(row?.journalOffset == rowAfter?.journalOffset && row?.journalRecords == rowAfter?.journalRecords)
        #expect(try store.recordings().count == 1, "a refused request made a recording")
        // And the right chunk is still taken.
        (s, t) = try await put(at, token: mine, body: next.bytes)
        #expect(s == 200, "\(t)")
    }

    /// A journal rewritten after it was shipped, with a valid chain of its own, is caught; so is
    /// a stored copy swapped for another valid journal.
    @Test func rewrittenHistoryIsCaughtByVerify() async throws {
        let data = TempDir(), sensor = TempDir()
        let srv = try await RunningServer(data: data.path)
        defer { Task { await srv.stop() } }
        let token = try srv.server.store.addSensor("host1")
        let journal = sensor.path + "/j"
        try makeJournal(journal, writes: 40)
        let shipper = try Shipper(options: .init(url: srv.url, token: token, recording: "r"), journal: journal, log: nil)
        shipper.start()
        #expect(shipper.finish(timeout: 60).backlog == 0)
        #expect(try ServerVerifier.compare(store: srv.server.store, recording: "host1/r", localJournal: journal).ok)

        // The host rewrites its journal: same shape, other data, a chain that verifies on its own.
        try FileManager.default.removeItem(atPath: journal)
        try makeJournal(journal, writes: 40, seed: 2)
        #expect(try JournalVerifier.verify(directory: journal).ok)
        let caught = try ServerVerifier.compare(store: srv.server.store, recording: "host1/r", localJournal: journal)
        #expect(!caught.ok && caught.problems.contains { $0.contains("rewritten after it was shipped") }, "\(caught)")

        // The server's own copy swapped for that valid journal: the chain heads kept at arrival differ.
        let stored = srv.server.store.recordingDirectory(sensor: "host1", name: "r") + "/journal"
        for name in try FileManager.default.contentsOfDirectory(atPath: stored) {
            try FileManager.default.removeItem(atPath: stored + "/" + name)
            try FileManager.default.copyItem(atPath: journal + "/" + name, toPath: stored + "/" + name)
        }
        let findings = try ServerVerifier.verify(store: srv.server.store)
        #expect(findings.count == 1 && !findings[0].ok, "\(findings)")
        #expect(findings[0].problems.contains { $0.contains("the stored copy was rewritten") }, "\(findings)")
    }

    /// The server stops between chunks and comes back: the sensor goes on from the server's end.
    @Test func shippingResumesAfterTheServerRestarts() async throws {
        let data = TempDir(), sensor = TempDir()
        var srv = try await RunningServer(data: data.path)
        let token = try srv.server.store.addSensor("s")
        let journal = sensor.path + "/j"
        try makeJournal(journal, writes: 30)
        var o = Shipper.Options(url: srv.url, token: token, recording: "r")
        o.chunkBytes = 8192
        o.firstPauseMs = 50
        o.maxPauseMs = 200
        // In this process the stopped server's open connections stay open without answering (a
        // stopped process would close them): the shipper gives up on them after this.
        o.answerSeconds = 2
        let shipper = try Shipper(options: o, journal: journal, log: nil)
        shipper.start()
        // Let it ship what is there, stop the server, write more, start a new server on the same port.
        for _ in 0..<100 where shipper.status.journal == nil || shipper.status.backlog > 0 { try await Task.sleep(for: .milliseconds(100)) }
        #expect(shipper.status.chunksShipped > 0)
        let port = srv.port
        await srv.stop()
        try makeJournalMore(journal, writes: 20)
        for _ in 0..<100 where shipper.status.failures == 0 { try await Task.sleep(for: .milliseconds(100));  }
        srv = try await RunningServer(data: data.path) { $0.port = port }
        let status = shipper.finish(timeout: 60)
        #expect(status.backlog == 0 && status.stopped == nil, "\(status)")
        #expect(status.failures > 0, "the stop was not noticed: \(status)")
        let findings = try ServerVerifier.verify(store: srv.server.store)
        #expect(findings.count == 1 && findings[0].ok, "\(findings)")
        #expect(try ServerVerifier.compare(store: srv.server.store, recording: "s/r", localJournal: journal).ok)
        await srv.stop()
    }

    /// A sensor far ahead of an absent server is held back until the server takes its backlog.
    @Test func aBacklogOverTheBoundHoldsTheSensorBack() async throws {
        let data = TempDir(), sensor = TempDir()
        // A port with nothing on it, for now.
        let probe = try await RunningServer(data: data.path)
        let port = probe.port
        let token = try probe.server.store.addSensor("s")
        await probe.stop()
        let journal = sensor.path + "/j"
        try makeJournal(journal, writes: 40)
        var o = Shipper.Options(url: "http://127.0.0.1:\(port)", token: token, recording: "r")
        o.maxBacklog = 64 << 10
        o.firstPauseMs = 50
        o.maxPauseMs = 200
        o.answerSeconds = 2
        let shipper = try Shipper(options: o, journal: journal, log: nil)
        shipper.start()
        for _ in 0..<200 where shipper.status.backlog == 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(shipper.status.backlog > o.maxBacklog)
        let released = Locked(false)
        let waiter = Thread {
            shipper.waitForRoom()
            released.withLock { $0 = true }
        }
        waiter.start()
        try await Task.sleep(for: .milliseconds(500))
        #expect(!released.withLock { $0 }, "the sensor was not held back")
        let srv = try await RunningServer(data: data.path) { $0.port = port }
        for _ in 0..<600 where !released.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(released.withLock { $0 }, "the sensor was never let go: \(shipper.status)")
        let st = shipper.finish(timeout: 30)
        #expect(st.throttled == 1 && st.backlog == 0, "\(st)")
        await srv.stop()
    }

    /// Query values the API cannot use are refused with 400 (never ignored), unknown recordings 404.
    @Test func badQueryValuesAreRefused() async throws {
        let data = TempDir(), sensor = TempDir()
        let srv = try await RunningServer(data: data.path)
        defer { Task { await srv.stop() } }
        let token = try srv.server.store.addSensor("s")
        try srv.server.store.addUser("u", password: "password1")
        let log = sensor.path + "/l.jsonl"
        try logLines([(.open, "/etc/shadow"), (.close, nil)]).write(toFile: log, atomically: true, encoding: .utf8)
        let shipper = try Shipper(options: .init(url: srv.url, token: token, recording: "r"), journal: nil, log: log)
        shipper.start()
        #expect(shipper.finish(timeout: 30).backlog == 0)
        let (_, _, login) = try await request(.POST, srv.url + "/api/login", body: Array(#"{"user":"u","password":"password1"}"#.utf8))
        let cookie = try #require(login.headers["Set-Cookie"].first?.split(separator: ";").first.map(String.init))
        let base = srv.url + "/api/recordings/s/r"
        for (path, status) in [("/api/alerts?limit=-1", 400), ("/api/alerts?limit=0", 400), ("/api/alerts?limit=5000", 400),
                               ("/api/alerts?after=x", 400), ("/api/alerts?sensor=s", 400), ("/api/alerts?sensor=s&recording=none", 404),
                               ("/api/alerts?sensor=s&recording=r", 200),
                               ("/api/recordings/s/none", 404), ("/api/recordings/s/r", 200),
                               ("/api/recordings/s/r/events?pid=abc", 400), ("/api/recordings/s/r/events?after=-3", 400),
                               ("/api/recordings/s/r/events?pid=100", 200), ("/api/recordings/s/r/blocks?lbaFrom=1e3", 400),
                               ("/api/recordings/s/r/timeline?bins=0", 400), ("/api/recordings/s/r/timeline?from=20&to=10", 400),
                               ("/api/recordings/s/r/heatmap?lbaBins=100000", 400), ("/api/recordings/s/r/gadf/nothing.bmp", 404)] {
            let (s, t, _) = try await request(.GET, path.hasPrefix("/api/recordings/s/r/") ? base + path.dropFirst("/api/recordings/s/r".count) : srv.url + path, cookie: cookie)
            #expect(s == status, "\(path): \(s) \(t)")
        }
        let (_, events, _) = try await request(.GET, base + "/events?pid=100", cookie: cookie)
        let rows = try JSONSerialization.jsonObject(with: Data(events.utf8)) as? [[String: Any]]
        #expect(rows?.count == 2 && rows?.allSatisfy { ($0["pid"] as? Int) == 100 } == true, "\(events)")
    }

    @Test func theAPINeedsALogin() async throws {
        let data = TempDir()
        let srv = try await RunningServer(data: data.path)
        defer { Task { await srv.stop() } }
        try srv.server.store.addUser("alice", password: "correct horse")
        #expect(throws: ServerError.self) { try srv.server.store.addUser("bob", password: "short") }
        var (s, t, _) = try await request(.GET, srv.url + "/api/recordings")
        #expect(s == 401, "\(t)")
        (s, t, _) = try await request(.POST, srv.url + "/api/login", body: Array(#"{"user":"alice","password":"wrong horse"}"#.utf8))
        #expect(s == 401, "\(t)")
        (s, t, _) = try await request(.POST, srv.url + "/api/login", body: Array("nonsense".utf8))
        #expect(s == 400, "\(t)")
        let (ok, _, response) = try await request(.POST, srv.url + "/api/login", body: Array(#"{"user":"alice","password":"correct horse"}"#.utf8))
        #expect(ok == 200)
        let cookie = try #require(response.headers["Set-Cookie"].first?.split(separator: ";").first.map(String.init))
        #expect(cookie.hasPrefix("kanshi_session="))
        (s, t, _) = try await request(.GET, srv.url + "/api/recordings", cookie: cookie)
        #expect(s == 200 && t == "[]", "\(t)")
        // A sensor's token is not a login.
        let token = try srv.server.store.addSensor("x")
        (s, _, _) = try await request(.GET, srv.url + "/api/recordings", token: token)
        #expect(s == 401)
        (s, _, _) = try await request(.POST, srv.url + "/api/logout", cookie: cookie)
        (s, t, _) = try await request(.GET, srv.url + "/api/recordings", cookie: cookie)
        #expect(s == 401, "after logout: \(t)")
    }

    @Test func shippingOverTLS() async throws {
        let data = TempDir(), sensor = TempDir()
        let cert = data.path + "/cert.pem", key = data.path + "/key.pem"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                       "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "openssl could not make a certificate")
        let srv = try await RunningServer(data: data.path + "/srv") { $0.certificate = cert; $0.key = key }
        defer { Task { await srv.stop() } }
        let token = try srv.server.store.addSensor("t")
        let journal = sensor.path + "/j"
        try makeJournal(journal, writes: 10)
        // Without trusting the certificate: refused (and nothing stored); with it: shipped.
        var o = Shipper.Options(url: srv.url, token: token, recording: "r")
        o.maxPauseMs = 100
        let untrusted = try Shipper(options: o, journal: journal, log: nil)
        untrusted.start()
        let bad = untrusted.finish(timeout: 1)
        #expect(bad.failures > 0 && bad.backlog > 0, "\(bad)")
        o.caFile = cert
        let trusted = try Shipper(options: o, journal: journal, log: nil)
        trusted.start()
        let good = trusted.finish(timeout: 60)
        #expect(good.backlog == 0 && good.stopped == nil, "\(good)")
        #expect(try ServerVerifier.verify(store: srv.server.store).allSatisfy(\.ok))
    }

    /// The files a recording's processes changed, and which the journal's notes say were put back.
    @Test func changedFilesAndWhatWasPutBack() async throws {
        let data = TempDir(), sensor = TempDir()
        let srv = try await RunningServer(data: data.path)
        defer { Task { await srv.stop() } }
        let token = try srv.server.store.addSensor("vm")
        let journal = sensor.path + "/j", log = sensor.path + "/l.jsonl"
        var lines = ""
        for (i, (path, flags)) in [("/mnt/Data/a.docx", "rw"), ("/mnt/Data/b.txt", "w"), ("/mnt/Data/c.txt", "r"), ("/mnt/Data/new.locked", "w")].enumerated() {
            var e = TraceEvent(kind: .open)
            e.seq = UInt64(i + 1); e.time = 1_800_000_000_000_000_000 + UInt64(i) * 1_000_000; e.pid = 7; e.tid = 7
            e.path = path; e.flags = flags; e.ret = 3; e.call = "openat"
            lines += e.json + "\n"
        }
        try lines.write(toFile: log, atomically: true, encoding: .utf8)
        let w = try JournalWriter(directory: journal, logger: quiet)
        _ = try w.appendNote(#"{"event":"undo-end","to":"seq:1","restored":1,"removed":1,"bytes":10,"restoredPaths":["/Data/a.docx"],"removedPaths":["/Data/new.locked"]}"#,
                             timeNs: 1_800_000_000_100_000_000)
        try w.close()
        let shipper = try Shipper(options: .init(url: srv.url, token: token, recording: "r"), journal: journal, log: log)
        shipper.start()
        #expect(shipper.finish(timeout: 30).backlog == 0)
        let r = try #require(try srv.server.store.recording(sensor: "vm", name: "r"))
        let files = Dictionary(uniqueKeysWithValues: try srv.server.store.changedFiles(recording: r.id).map { ($0.path, $0) })
        #expect(Set(files.keys) == ["/mnt/Data/a.docx", "/mnt/Data/b.txt", "/mnt/Data/new.locked"], "a file only read is not changed: \(files.keys)")
        #expect(files["/mnt/Data/a.docx"]?.restored == "restored by the undo")
        #expect(files["/mnt/Data/new.locked"]?.restored == "removed by the undo (it was new)")
        #expect(files["/mnt/Data/b.txt"]?.restored == nil)
        #expect(files["/mnt/Data/a.docx"]?.how == ["opened for writing"] && files["/mnt/Data/a.docx"]?.pids == [7])
    }

    @Test func badShipperSettingsAreNamed() throws {
        #expect(throws: ShipError.self) { try Shipper(options: .init(url: "ftp://x", token: "t", recording: "r"), journal: "/j", log: nil) }
        #expect(throws: ShipError.self) { try Shipper(options: .init(url: "http://x:1", token: "", recording: "r"), journal: "/j", log: nil) }
        #expect(throws: ShipError.self) { try Shipper(options: .init(url: "http://x:1", token: "t", recording: "a/b"), journal: "/j", log: nil) }
        #expect(throws: ShipError.self) { try Shipper(options: .init(url: "http://x:1", token: "t", recording: "r"), journal: nil, log: nil) }
        #expect(throws: ShipError.self) { try Shipper(options: .init(url: "https://x:1", token: "t", recording: "r", caFile: "/nonexistent.pem"), journal: "/j", log: nil) }
        let data = TempDir()
        let store = try ServerStore(directory: data.path)
        #expect(throws: ServerError.self) { try store.addSensor("bad name") }
        _ = try store.addSensor("ok")
        #expect(throws: ServerError.self) { try store.addSensor("ok") }
        #expect(throws: ServerError.self) { try ServerStore(directory: data.path + "/missing", create: false) }
    }
}

/// More writes appended to an existing journal.
func makeJournalMore(_ dir: String, writes: Int) throws {
    let w = try JournalWriter(directory: dir, options: .init(segmentBytes: 64 << 10), logger: quiet)
    for i in 0..<writes {
        let data = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 4096)
        let e = BlockEvent(operation: .write, timeNs: UInt64(9_000 + i), lba: UInt64(i * 8), length: 4096, entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
        let meta = BlockRecords.encodeMetadata(e)
        _ = try meta.withUnsafeBytes { m in try data.withUnsafeBytes { d in try w.append(kind: .blockWrite, timeNs: UInt64(9_000 + i), parts: [m, d]) } }
    }
    try w.close()
}

extension String {
    func appendingTo(_ path: String) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        h.write(Data(utf8))
        try h.close()
    }
}
