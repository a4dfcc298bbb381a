import Foundation
import KanshiSystem
import NIOCore
import NIOHTTP1
import NIOPosix

/// Where alerts go.
public protocol AlertSink: AnyObject {
    /// What the sink is, for messages ("file /x", "webhook http://...").
    var name: String { get }
    func send(_ alert: RuleAlert) throws
    /// Delivers what is pending and releases the sink; returns a problem to report, if any.
    func close() -> String?
}

/// JSON lines on a file handle (standard output).
public final class StreamSink: AlertSink {
    public let name: String
    private let handle: FileHandle

    public init(_ handle: FileHandle = .standardOutput, name: String = "standard output") {
        self.handle = handle
        self.name = name
    }

    public func send(_ alert: RuleAlert) throws {
        handle.write(Data((alert.json + "\n").utf8))
    }

    public func close() -> String? { nil }
}

/// JSON lines appended to a file (created if missing; what is there stays).
public final class FileSink: AlertSink {
    public let name: String
    private let file: FileHandle

    public init(path: String) throws {
        name = "file \(path)"
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw RulesRunError("\(path): cannot create the alert file")
            }
        }
        guard let f = FileHandle(forWritingAtPath: path) else { throw RulesRunError("\(path): cannot open the alert file for writing") }
        f.seekToEndOfFile()
        file = f
    }

    public func send(_ alert: RuleAlert) throws {
        do {
            try file.write(contentsOf: Data((alert.json + "\n").utf8))
        } catch {
            throw RulesRunError("\(name): \(error.localizedDescription)")
        }
    }

    public func close() -> String? {
        try? file.synchronize()
        try? file.close()
        return nil
    }
}

/// The system log: one line per alert, its level from the severity.
public final class SyslogSink: AlertSink {
    public let name = "syslog"
    public init() {}

    public func send(_ alert: RuleAlert) throws {
        let level: SystemLog.Level = switch alert.severity {
        case .critical: .critical
        case .high: .error
        case .medium: .warning
        case .low: .notice
        case .informational: .informational
        }
        SystemLog.send("kanshi alert " + alert.json, level: level)
    }

    public func close() -> String? { nil }
}

/// HTTP POST of each alert (JSON, one per request) to a URL, from a background thread so the
/// sensor never waits on the network. A failed delivery is retried with growing pauses
/// (`retries` times); what still fails, or does not fit the queue, is counted and reported at close.
public final class WebhookSink: AlertSink, @unchecked Sendable {
    public let name: String
    let host: String
    let port: Int
    let path: String
    let retries: Int
    let firstPause: TimeAmount
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let queue = DispatchQueue(label: "kanshi.webhook")
    private let lock = NSLock()
    private var pending = 0
    private var delivered = 0
    private var failed = 0
    private var lastError: String?
    /// Alerts waiting at most; more are dropped (counted).
    public let capacity: Int

    public init(url: String, retries: Int = 4, firstPause: TimeAmount = .milliseconds(250), capacity: Int = 10_000) throws {
        name = "webhook \(url)"
        guard let u = URL(string: url), let scheme = u.scheme, let host = u.host else {
            throw RulesRunError("--webhook \(url): not a URL (http://HOST[:PORT]/PATH)")
        }
        guard scheme == "http" else {
            throw RulesRunError("--webhook \(url): only http:// is supported here (send to a local relay for https)")
        }
        self.host = host
        port = u.port ?? 80
        path = u.path.isEmpty ? "/" : u.path + (u.query.map { "?" + $0 } ?? "")
        self.retries = retries
        self.firstPause = firstPause
        self.capacity = capacity
    }

    public func send(_ alert: RuleAlert) throws {
        let body = alert.json
        lock.lock()
        guard pending < capacity else {
            failed += 1
            lastError = "queue full (\(capacity) alerts waiting)"
            lock.unlock()
            return
        }
        pending += 1
        lock.unlock()
        queue.async { [self] in
            var attempt = 0
            var pause = firstPause
            var problem: String?
            while true {
                do {
                    let status = try post(body)
                    if (200..<300).contains(status) { problem = nil; break }
                    problem = "HTTP status \(status)"
                } catch {
                    problem = "\(error)"
                }
                attempt += 1
                if attempt > retries { break }
                Thread.sleep(forTimeInterval: Double(pause.nanoseconds) / 1e9)
                pause = pause * 2
            }
            lock.lock()
            pending -= 1
            if let problem { failed += 1; lastError = problem } else { delivered += 1 }
            lock.unlock()
        }
    }

    /// Alerts delivered and failed so far.
    public var counts: (delivered: Int, failed: Int) {
        lock.lock(); defer { lock.unlock() }
        return (delivered, failed)
    }

    public func close() -> String? {
        queue.sync {}
        try? group.syncShutdownGracefully()
        lock.lock(); defer { lock.unlock() }
        return failed == 0 ? nil : "\(name): \(failed) alert(s) not delivered (last: \(lastError ?? "?")); \(delivered) delivered"
    }

    /// One POST; returns the response status.
    private func post(_ body: String) throws -> Int {
        let promise = group.next().makePromise(of: Int.self)
        let host = host, port = port, path = path
        let channel: Channel
        do {
            channel = try ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { ch in
                    ch.pipeline.addHTTPClientHandlers().flatMap { ch.pipeline.addHandler(StatusHandler(promise)) }
                }
                .connect(host: host, port: port).wait()
        } catch {
            promise.fail(error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Content-Type", value: "application/json")
        head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        head.headers.add(name: "Connection", value: "close")
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        // No answer in 10 s: the connection is closed, which fails the request.
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
        defer {
            timeout.cancel()
            channel.close(promise: nil)
        }
        return try promise.futureResult.wait()
    }

    private final class StatusHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<Int>
        var status: Int?
        var done = false
        init(_ p: EventLoopPromise<Int>) { promise = p }

        private func finish(_ r: Result<Int, Error>) {
            guard !done else { return }
            done = true
            promise.completeWith(r)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): status = Int(h.status.code)
            case .body: break
            case .end: finish(.success(status ?? 0))
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            finish(status.map { .success($0) } ?? .failure(RulesRunError("connection closed before an answer")))
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            finish(.failure(error))
            context.close(promise: nil)
        }
    }
}
