import Foundation
import KanshiCore
import KanshiJournal
import KanshiRules
import KanshiSystem
import KanshiTrace
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

/// Rules over journals and logs, live and offline alike, and the alert sinks.
@Suite struct RuleRunTests {
    static func temporary(_ name: String) -> String {
        NSTemporaryDirectory() + "kanshi-rules-\(name)-\(UUID().uuidString)"
    }

    @Test func rulesSeeAJournalsBlockRecordsAndNotesWithTheirOffsets() throws {
        let dir = Self.temporary("journal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let w = try JournalWriter(directory: dir, logger: logger)
        let start = try w.appendNote("{\"event\":\"guest-job-start\"}")
        let random = (0..<4096).map { _ in UInt8.random(in: 0...255) }
        let plain = [UInt8](repeating: 65, count: 4096)
        var t: UInt64 = 1_800_000_000_000_000_000
        for i in 0..<6 {
            t += 1_000_000
            let data = i < 4 ? random : plain
            let e = BlockEvent(operation: .write, timeNs: t, lba: UInt64(i * 8), length: 4096,
                               entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
            let meta = BlockRecords.encodeMetadata(e)
            try meta.withUnsafeBytes { m in try data.withUnsafeBytes { d in _ = try w.append(kind: .blockWrite, timeNs: t, parts: [m, d]) } }
        }
        try w.close()
        let set = try Rules.parse("""
            - rule: job
              condition: ev = note and note.event = guest-job-start
              severity: informational
              tags: [info]
            - rule: random-writes
              count:
                condition: ev = block_write and entropy > 7.5 and length = 4096
                by: vm
                distinct: lba
                window: 1s
                threshold: 4
              tags: [t1486]
            """)
        let engine = RuleEngine(set)
        var alerts: [RuleAlert] = []
        try RuleRun.run(journal: dir, engine: engine) { alerts.append($0) }
        #expect(alerts.map(\.rule) == ["job", "random-writes"])
        #expect(alerts[0].evidence.first?.seq == start && alerts[0].evidence.first?.offset != nil)
        let writes = alerts[1].evidence
        #expect(writes.count == 4 && writes.allSatisfy { $0.kind == "block_write" && $0.offset != nil && $0.segment != nil })
        #expect(Set(writes.compactMap(\.offset)).count == 4)
        #expect(alerts[1].json.contains("\"evidence\":[{\"ev\":\"block_write\",\"seq\":"))
        // A journal that is not one.
        #expect(throws: RulesRunError.self) { try RuleRun.run(journal: dir + "-none", engine: engine) { _ in } }
    }

    @Test func liveOnALogBeingWrittenGivesWhatOfflineGivesOnTheFinishedLog() throws {
        // A recorded run of ransomware-like behaviour among noise, written out line by line while the watch follows.
        let e = Events()
        e.start(200, ["locker"])
        e.start(300, ["editor"])
        for i in 0..<60 {
            e.add(.open, pid: 200, path: "/d/f\(i)", flags: "rw", ret: 5)
            e.add(.close, pid: 200, path: "/d/f\(i)", entropy: 7.9, bytes: 9000)
            e.add(.open, pid: 300, path: "/d/notes.txt", flags: "rw", ret: 6)
            e.add(.close, pid: 300, path: "/d/notes.txt", entropy: 4.1, bytes: 100)
            if i % 7 == 0 { e.add(.rename, pid: 200, path: "/d/f\(i)", path2: "/d/f\(i).locked") }
        }
        e.add(.open, pid: 300, path: "/etc/shadow", flags: "r", ret: 3)
        let log = Self.temporary("live") + ".jsonl"
        defer { try? FileManager.default.removeItem(atPath: log) }
        #expect(FileManager.default.createFile(atPath: log, contents: nil))
        let received = Self.temporary("sink") + ".jsonl"
        defer { try? FileManager.default.removeItem(atPath: received) }
        let fanout = AlertFanout([try FileSink(path: received)], report: { Issue.record("\($0)") })
        let watch = RuleWatch(engine: RuleEngine(try Rules.builtin()), log: log, fanout: fanout, pollMs: 5)
        watch.start()
        let handle = try #require(FileHandle(forWritingAtPath: log))
        let lines = e.jsonLines.split(separator: "\n")
        for (i, line) in lines.enumerated() {
            // Lines arrive in pieces, as a writer's buffer flushes them.
            let bytes = Data((line + "\n").utf8)
            let cut = bytes.count / 2
            handle.write(bytes.prefix(cut))
            if i % 25 == 0 { usleep(8000) }
            handle.write(bytes.suffix(from: cut))
        }
        try handle.close()
        let live = watch.finish()
        fanout.close()
        #expect(watch.failure == nil)
        var offline: [RuleAlert] = []
        try RuleRun.run(log: log, engine: RuleEngine(try Rules.builtin())) { offline.append($0) }
        #expect(!live.isEmpty)
        #expect(live.map(\.json) == offline.map(\.json))
        #expect(Set(live.map(\.rule)) == ["ransomware-encrypts-files-in-place", "credential-file-read"])
        // The file sink holds the same alerts, one JSON line each.
        let stored = try String(contentsOfFile: received, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(stored == live.map(\.json))
    }

    @Test func aBadLogIsAnErrorNamingTheLine() throws {
        let log = Self.temporary("bad") + ".jsonl"
        defer { try? FileManager.default.removeItem(atPath: log) }
        let e = Events()
        e.add(.open, path: "/x", flags: "r", ret: 3)
        try (e.jsonLines + "{\"seq\":2,\"ev\":\"teleport\"}\n" + e.jsonLines).write(toFile: log, atomically: true, encoding: .utf8)
        do {
            try RuleRun.run(log: log, engine: RuleEngine(try Rules.builtin())) { _ in }
            Issue.record("accepted")
        } catch {
            #expect("\(error)".contains(log) && "\(error)".contains("2") && "\(error)".contains("teleport"), "\(error)")
        }
        #expect(throws: RulesRunError.self) { try RuleRun.run(log: log + ".none", engine: RuleEngine(try Rules.builtin())) { _ in } }
    }

    /// A local HTTP receiver: answers 503 to the first `failFirst` requests, then 200, keeping the bodies.
    final class Receiver: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let lock = NSLock()
        var bodies: [String] = []
        var requests = 0
        var failFirst: Int
        var body = ""
        init(failFirst: Int) { self.failFirst = failFirst }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head: body = ""
            case .body(var b): body += b.readString(length: b.readableBytes) ?? ""
            case .end:
                let status: HTTPResponseStatus = lock.withLock {
                    requests += 1
                    if requests <= failFirst { return .serviceUnavailable }
                    bodies.append(body)
                    return .ok
                }
                var head = HTTPResponseHead(version: .http1_1, status: status)
                head.headers.add(name: "Content-Length", value: "0")
                head.headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
            }
        }
    }

    @Test func theWebhookDeliversEachAlertRetryingARefusingReceiver() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let receiver = Receiver(failFirst: 2)
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { ch in
                ch.pipeline.configureHTTPServerPipeline().flatMap { ch.pipeline.addHandler(receiver) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        let port = try #require(server.localAddress?.port)
        let sink = try WebhookSink(url: "http://127.0.0.1:\(port)/alerts", retries: 4, firstPause: .milliseconds(20))
        let e = Events()
        e.add(.open, pid: 7, path: "/etc/shadow", flags: "r", ret: 3)
        e.add(.open, pid: 7, path: "/etc/gshadow", flags: "r", ret: 3)
        let alerts = e.alerts(try Rules.builtin())
        #expect(alerts.count == 2)
        for a in alerts { try sink.send(a) }
        #expect(sink.close() == nil)
        #expect(sink.counts.delivered == 2 && sink.counts.failed == 0)
        let bodies = receiver.lock.withLock { receiver.bodies }
        #expect(bodies == alerts.map(\.json))
        #expect(receiver.lock.withLock { receiver.requests } == 4)

        // Nobody listening: retried, then counted as not delivered, and said so at close.
        let dead = try WebhookSink(url: "http://127.0.0.1:1/alerts", retries: 1, firstPause: .milliseconds(10))
        try dead.send(alerts[0])
        let problem = dead.close()
        #expect(problem?.contains("1 alert(s) not delivered") == true, "\(problem ?? "nil")")
        #expect(throws: RulesRunError.self) { _ = try WebhookSink(url: "https://example.org/x") }
        #expect(throws: RulesRunError.self) { _ = try WebhookSink(url: "not a url") }
    }

    /// The system log socket, as syslog(3) finds it: this test listens there when no log daemon does.
    @Test(.enabled(if: !FileManager.default.fileExists(atPath: "/dev/log") && Host.isRoot, "a log daemon owns /dev/log, or not root"))
    func syslogGetsTheAlertAtItsSeverity() throws {
        let receiver = try DatagramReceiver(path: "/dev/log")
        defer { receiver.close(); try? FileManager.default.removeItem(atPath: "/dev/log") }
        let e = Events()
        e.add(.open, pid: 7, path: "/etc/shadow", flags: "r", ret: 3)
        let alert = try #require(e.alerts(try Rules.builtin()).first)
        try SyslogSink().send(alert)
        let message = try #require(try receiver.receive(timeoutMs: 2000))
        // <PRI>: facility user (1) * 8 + error (3) for a high alert.
        #expect(message.hasPrefix("<11>"), "\(message)")
        #expect(message.contains("kanshi") && message.contains(alert.json), "\(message)")
    }
}
