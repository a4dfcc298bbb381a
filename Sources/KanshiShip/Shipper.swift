import AsyncHTTPClient
import Foundation
import KanshiJournal
import KanshiSystem
import NIOCore
import NIOHTTP1
import NIOSSL

/// Why shipping cannot start or had to stop for good.
public struct ShipError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Ships a sensor's journal and behaviour log to `kanshi server` while they are written.
///
/// The local journal and log are the sensor's store: nothing is deleted, so whatever the server
/// has not acknowledged is still here. A thread sends whole records from where the server's copy
/// ends (asking the server at start and after any refusal), so a disconnect, a server restart or
/// a lost answer only means sending from the server's end again. Failures are retried with
/// growing pauses and counted; a sensor that gets too far ahead of the server can wait on
/// `waitForRoom` (back-pressure) rather than grow its backlog without bound.
public final class Shipper: @unchecked Sendable {
    public struct Options: Sendable {
        /// `http://HOST:PORT` or `https://HOST:PORT` (a path after it is ignored).
        public var url: String
        public var token: String
        /// The recording's name on the server (under this sensor's name).
        public var recording: String
        /// A PEM certificate to trust for https (a server with its own certificate).
        public var caFile: String?
        public var pollMs = 200
        public var chunkBytes = ShipProtocol.chunkBytes
        /// Unacknowledged bytes past which `waitForRoom` holds the sensor back.
        public var maxBacklog: UInt64 = 1 << 30
        /// Pause after the first failure; doubles up to `maxPauseMs`.
        public var firstPauseMs = 250
        public var maxPauseMs = 5000
        /// How long an answer may take once a request is sent.
        public var answerSeconds: Int64 = 60

        public init(url: String, token: String, recording: String, caFile: String? = nil) {
            self.url = url
            self.token = token
            self.recording = recording
            self.caFile = caFile
        }
    }

    /// Where shipping stands.
    public struct Status: Sendable {
        /// Where the server's journal copy ends, once known.
        public var journal: ShipPosition?
        /// Bytes of the behaviour log the server holds, once known.
        public var logOffset: UInt64?
        public var bytesShipped: UInt64 = 0
        public var chunksShipped = 0
        /// Chunks the server answered 409 to (it already had them, or had less): shipping went on from its end.
        public var chunksResent = 0
        public var failures = 0
        public var lastError: String?
        /// Journal and log bytes written locally and not acknowledged yet.
        public var backlog: UInt64 = 0
        /// Times `waitForRoom` held the sensor back.
        public var throttled = 0
        /// A refusal that stopped shipping for good (a wrong token, a chunk the server calls malformed).
        public var stopped: String?
    }

    public let options: Options
    public let journal: String?
    public let log: String?
    private let client: HTTPClient
    private let base: String
    private let condition = NSCondition()
    private var state = Status()
    private var stopping = false
    private var deadline: UInt64 = 0
    private var thread: Thread?
    /// The sensor's name on the server (asked once).
    private var sensor: String?
    private let ended = DispatchSemaphore(value: 0)

    public init(options: Options, journal: String?, log: String?) throws {
        guard journal != nil || log != nil else { throw ShipError("nothing to ship: neither a journal nor a behaviour log") }
        guard let u = URL(string: options.url), let scheme = u.scheme, scheme == "http" || scheme == "https", let host = u.host, !host.isEmpty else {
            throw ShipError("--ship \(options.url): not a server address (http://HOST:PORT or https://HOST:PORT)")
        }
        guard ShipProtocol.validName(options.recording) else {
            throw ShipError("recording name \"\(options.recording)\": \(RecordingName.rule)")
        }
        guard !options.token.isEmpty, options.token.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw ShipError("the shipping token is empty or has spaces in it (make one with `kanshi server token add NAME`)")
        }
        var tls: TLSConfiguration?
        if scheme == "https" {
            var t = TLSConfiguration.makeClientConfiguration()
            if let ca = options.caFile {
                do {
                    t.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
                } catch {
                    throw ShipError("--ship-ca \(ca): not a PEM certificate (\(error))")
                }
            }
            tls = t
        }
        self.options = options
        self.journal = journal
        self.log = log
        self.base = "\(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")"
        var config = HTTPClient.Configuration(tlsConfiguration: tls, timeout: .init(connect: .seconds(5), read: .seconds(options.answerSeconds)))
        config.httpVersion = .http1Only
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: config)
    }

    deinit { try? client.syncShutdown() }

    public func start() {
        let t = Thread { [self] in
            run()
            ended.signal()
        }
        t.name = "kanshi.ship"
        thread = t
        t.start()
    }

    /// Ships what is left (for at most `timeout` seconds), stops, and says where it stands.
    @discardableResult
    public func finish(timeout: Double = 30) -> Status {
        condition.lock()
        stopping = true
        deadline = FileSystem.monotonicNs() + UInt64(timeout * 1e9)
        condition.broadcast()
        condition.unlock()
        if thread != nil { ended.wait() }
        return status
    }

    public var status: Status {
        condition.lock(); defer { condition.unlock() }
        return state
    }

    /// Holds the caller while more than `maxBacklog` bytes wait for the server (back-pressure),
    /// until the backlog shrinks or shipping stops for good.
    public func waitForRoom() {
        condition.lock(); defer { condition.unlock() }
        guard state.backlog > options.maxBacklog, state.stopped == nil, !stopping else { return }
        state.throttled += 1
        while state.backlog > options.maxBacklog && state.stopped == nil && !stopping { condition.wait() }
    }

    private func update(_ body: (inout Status) -> Void) {
        condition.lock()
        body(&state)
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        var pauseMs = options.firstPauseMs
        while true {
            let (stop, pastDeadline) = condition.withLock { (stopping, stopping && FileSystem.monotonicNs() > deadline) }
            if pastDeadline { break }
            var progress = false
            do {
                if sensor == nil {
                    let me: ShipProtocol.Identity = try call(.GET, ShipProtocol.prefix, body: nil)
                    sensor = me.sensor
                }
                if let journal { progress = try shipJournal(journal) || progress }
                if let log { progress = try shipLog(log) || progress }
                try measureBacklog()
                pauseMs = options.firstPauseMs
            } catch let e as ShipError {
                update { $0.stopped = e.description; $0.lastError = e.description }
                break
            } catch {
                update { $0.failures += 1; $0.lastError = "\(error)" }
                try? measureBacklog()
                pause(ms: pauseMs)
                pauseMs = min(pauseMs * 2, options.maxPauseMs)
                continue
            }
            if !progress {
                if stop { break }  // caught up after the sensor ended
                pause(ms: options.pollMs)
            }
        }
    }

    /// Sleeps, waking early when the sensor ends.
    private func pause(ms: Int) {
        condition.lock()
        if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: Double(ms) / 1000)) }
        condition.unlock()
    }

    private func measureBacklog() throws {
        var backlog: UInt64 = 0
        // Before the server has said where its copy ends, everything counts.
        let now = status
        if let journal, FileSystem.exists(journal + "/" + JournalFormat.segmentName(1)) {
            backlog += try JournalChunks.bytesAfter(directory: journal, position: now.journal ?? .start)
        }
        if let log, let size = try? FileSystem.status(log)?.size, size > (now.logOffset ?? 0) {
            backlog += size - (now.logOffset ?? 0)
        }
        update { $0.backlog = backlog }
    }

    // MARK: journal

    /// Sends every whole record not yet on the server; true if anything went.
    private func shipJournal(_ directory: String) throws -> Bool {
        guard FileSystem.isDirectory(directory), FileSystem.exists(directory + "/" + JournalFormat.segmentName(1)) else { return false }
        var position: ShipPosition
        if let p = status.journal {
            position = p
        } else {
            let head: ShipProtocol.JournalHead = try call(.GET, ShipProtocol.journalPath(sensor!, options.recording), body: nil)
            position = head.position
            update { $0.journal = position }
        }
        var sent = false
        while let chunk = try JournalChunks.next(directory: directory, from: position, limit: options.chunkBytes) {
            let path = ShipProtocol.journalPath(sensor!, options.recording) + "?segment=\(chunk.position.segment)&offset=\(chunk.position.offset)"
            do {
                let head: ShipProtocol.JournalHead = try call(.PUT, path, body: chunk.bytes)
                position = head.position
                update { $0.journal = position; $0.bytesShipped += UInt64(chunk.bytes.count); $0.chunksShipped += 1 }
                sent = true
            } catch let r as Refused where r.status == 409 {
                guard let expected = r.refusal?.expected else { throw ShipError("server answered 409 without its position: \(r.text)") }
                position = expected.position
                update { $0.journal = position; $0.chunksResent += 1 }
            }
        }
        return sent
    }

    // MARK: behaviour log

    private func shipLog(_ path: String) throws -> Bool {
        guard FileSystem.exists(path) else { return false }
        var offset: UInt64
        if let o = status.logOffset {
            offset = o
        } else {
            let head: ShipProtocol.LogHead = try call(.GET, ShipProtocol.logPath(sensor!, options.recording), body: nil)
            offset = head.offset
            update { $0.logOffset = offset }
        }
        let file = try SystemFile(path: path, mode: .readOnly)
        var sent = false
        while true {
            let size = try file.size()
            guard size > offset else { break }
            var want = Int(min(UInt64(options.chunkBytes), size - offset))
            var bytes: [UInt8] = []
            var cut: Int?
            // Whole lines only; a line longer than a chunk goes alone.
            while true {
                bytes = [UInt8](repeating: 0, count: want)
                let got = try bytes.withUnsafeMutableBytes { try file.read(into: $0, at: offset) }
                bytes.removeSubrange(got...)
                cut = bytes.lastIndex(of: UInt8(ascii: "\n"))
                if cut != nil || UInt64(want) >= size - offset { break }
                want = Int(min(UInt64(want * 2), size - offset))
            }
            guard let end = cut else { break }  // the last line is still being written
            bytes.removeSubrange((end + 1)...)
            do {
                let head: ShipProtocol.LogHead = try call(.PUT, ShipProtocol.logPath(sensor!, options.recording) + "?offset=\(offset)", body: bytes)
                offset = head.offset
                update { $0.logOffset = offset; $0.bytesShipped += UInt64(bytes.count); $0.chunksShipped += 1 }
                sent = true
            } catch let r as Refused where r.status == 409 {
                guard let expected = r.refusal?.expectedOffset else { throw ShipError("server answered 409 without its offset: \(r.text)") }
                offset = expected
                update { $0.logOffset = offset; $0.chunksResent += 1 }
            }
        }
        return sent
    }

    // MARK: HTTP

    /// A refusal the shipper can act on (409); other statuses become errors below.
    struct Refused: Error, CustomStringConvertible {
        var status: Int
        var text: String
        var refusal: ShipProtocol.Refusal?
        var description: String { "server answered \(status): \(refusal?.error ?? text)" }
    }

    /// One request; the decoded answer to a 200.
    private func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: [UInt8]?) throws -> T {
        var request = try HTTPClient.Request(url: base + path, method: method)
        request.headers.add(name: "Authorization", value: "Bearer \(options.token)")
        // A fresh connection per request: a server that restarted (or a connection it dropped
        // without closing) never holds a chunk up; chunks are large, so the cost is small.
        request.headers.add(name: "Connection", value: "close")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/octet-stream")
            request.body = .bytes(body)
        }
        let response = try client.execute(request: request, deadline: .now() + .seconds(120)).wait()
        let status = Int(response.status.code)
        let data = response.body.map { Data($0.readableBytesView) } ?? Data()
        if status == 200 {
            do {
                return try JSONDecoder().decode(T.self, from: data)
            } catch {
                throw ShipError("server's answer to \(method) \(path) is not what Kanshi's server sends: \(String(decoding: data, as: UTF8.self).prefix(200))")
            }
        }
        let text = String(decoding: data, as: UTF8.self)
        let refusal = try? JSONDecoder().decode(ShipProtocol.Refusal.self, from: data)
        switch status {
        case 409:
            throw Refused(status: status, text: text, refusal: refusal)
        case 400, 401, 403, 404, 413:
            // Sending again would get the same answer: stop, keep everything local, say why.
            throw ShipError("server refused \(method) \(path) with \(status): \(refusal?.error ?? text)")
        default:
            throw Refused(status: status, text: text, refusal: refusal)
        }
    }
}
