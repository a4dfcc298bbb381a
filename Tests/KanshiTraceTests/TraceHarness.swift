import Foundation
import Logging
import Testing
@testable import KanshiTrace
#if canImport(Glibc)
import Glibc
#endif

/// Runs tracers on their own threads, compiles the C fixtures, listens on loopback.
enum Harness {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// Why tracing cannot be tested here, or nil. With KANSHI_REQUIRE_PEERS=1 (scripts/test.sh, CI)
    /// nothing is skipped: a missing capability fails the tests instead.
    static let unavailable: String? = {
        if ProcessInfo.processInfo.environment["KANSHI_REQUIRE_PEERS"] == "1" { return nil }
        #if arch(x86_64)
        if access("/usr/bin/cc", X_OK) != 0 { return "no C compiler at /usr/bin/cc for the test programs" }
        if let scope = try? String(contentsOfFile: "/proc/sys/kernel/yama/ptrace_scope", encoding: .utf8),
           scope.trimmingCharacters(in: .whitespacesAndNewlines) == "3" { return "ptrace is disabled (yama ptrace_scope 3)" }
        return nil
        #else
        return "the syscall sensor is x86_64 only"
        #endif
    }()

    static func tempDir() -> String {
        let d = NSTemporaryDirectory() + "kanshi-trace-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    private static let built = NSLock()
    nonisolated(unsafe) private static var binaries: [String: String] = [:]

    /// Compiles Fixtures/NAME.c once per test run; returns the binary's path.
    static func binary(_ name: String) throws -> String {
        built.lock(); defer { built.unlock() }
        if let b = binaries[name] { return b }
        let out = tempDir() + "/" + name
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        p.arguments = ["-O1", "-pthread", "-o", out, "\(fixtures)/\(name).c"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CompileError(name: name) }
        binaries[name] = out
        return out
    }
    struct CompileError: Error { var name: String }

    struct Run: Sendable {
        var result: TraceResult
        var lines: [String]
        var events: [[String: Any]] { lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] } }
        var output: String
        var managedPath: String
    }

    /// Traces `argv` with its standard output captured (through sh), on a dedicated thread.
    static func trace(_ argv: [String], options: TraceOptions = TraceOptions(), dir: String? = nil,
                      managedSetFile: String? = nil) async throws -> Run {
        let dir = dir ?? tempDir()
        let log = dir + "/trace-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        let out = log + ".out"
        let setPath = managedSetFile ?? log + ".managed.json"
        let quoted = argv.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        let target = TraceTarget.spawn(program: "/bin/sh", arguments: ["-c", "exec \(quoted) > '\(out)' 2>&1"])
        return try await traceTarget(target, options: options, log: log, out: out, setPath: setPath)
    }

    static func traceTarget(_ target: TraceTarget, options: TraceOptions, log: String, out: String?, setPath: String) async throws -> Run {
        let result: TraceResult = try await onThread {
            let set = try ManagedSet.load(path: setPath, protect: options.protect)
            let eventLog = try EventLog(path: log)
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            let tracer = try Tracer(options: options, log: eventLog, managed: set, logger: logger)
            defer { eventLog.close() }
            return try tracer.run(target)
        }
        try result.managed.save(path: setPath)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let output = out.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        return Run(result: result, lines: text.split(separator: "\n").map(String.init), output: output, managedPath: setPath)
    }

    /// Runs `body` on a new thread (ptrace requests must all come from one thread).
    static func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { c in
            let t = Thread { c.resume(with: Result { try body() }) }
            t.stackSize = 8 << 20
            t.start()
        }
    }
}

/// A loopback listener (TCP or UDP, IPv4 or IPv6) standing for "off the machine": counts what arrives.
final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: Int
    let udp: Bool
    private var accepted: [Int32] = []

    init(udp: Bool = false, ipv6: Bool = false) throws {
        self.udp = udp
        let sock = socket(ipv6 ? AF_INET6 : AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        var one: Int32 = 1
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var boundPort = 0
        if ipv6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_addr = in6addr_loopback
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
            var len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
            boundPort = Int(UInt16(bigEndian: a.sin6_port))
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
            boundPort = Int(UInt16(bigEndian: a.sin_port))
        }
        if !udp { listen(sock, 64) }
        fd = sock
        port = boundPort
    }

    /// Bytes received so far (accepts pending connections, reads without blocking).
    func received() -> Int {
        var total = 0
        var buf = [UInt8](repeating: 0, count: 65536)
        if udp {
            while true { let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT)); if n <= 0 { break }; total += n }
            return total
        }
        while true { let c = accept(fd, nil, nil); if c < 0 { break }; _ = fcntl(c, F_SETFL, O_NONBLOCK); accepted.append(c) }
        for c in accepted {
            while true { let n = recv(c, &buf, buf.count, Int32(MSG_DONTWAIT)); if n <= 0 { break }; total += n }
        }
        return total
    }

    deinit {
        for c in accepted { close(c) }
        close(fd)
    }
}
