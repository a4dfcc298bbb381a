import Foundation
import Testing
@testable import KanshiTrace

/// Every route a managed process might use to send a protected file off the
/// machine. A loopback listener stands for "off the machine" (--loopback-external);
/// it must receive nothing. Needs ptrace and a C compiler.
@Suite(.serialized, .disabled(if: Harness.unavailable != nil, "\(Harness.unavailable ?? "")"))
struct LeakTests {
    struct Setup {
        let dir: String, secret: String, tcp: Listener, tcp6: Listener, udp: Listener
        var options: TraceOptions
        func args(_ route: String, _ extra: String...) throws -> [String] {
            [try Harness.binary("leak"), route, secret, "\(tcp.port)", "\(tcp6.port)", "\(udp.port)"] + extra
        }
        var received: Int { tcp.received() + tcp6.received() + udp.received() }
    }

    func setup() throws -> Setup {
        let dir = Harness.tempDir()
        let secret = dir + "/secret.txt"
        try "TOP-SECRET-PAYLOAD\n".write(toFile: secret, atomically: true, encoding: .utf8)
        var o = TraceOptions()
        o.protect = [secret]
        o.loopbackExternal = true
        return Setup(dir: dir, secret: secret, tcp: try Listener(), tcp6: try Listener(ipv6: true), udp: try Listener(udp: true), options: o)
    }

    @Test func unmanagedProcessIsNotHindered() async throws {
        let s = try setup()
        let run = try await Harness.trace(try s.args("unmanaged"), options: s.options, dir: s.dir)
        #expect(run.output.contains("unmanaged: send ok"), "\(run.output)")
        #expect(s.received == 5)
        #expect(run.result.summary.blockedAttempts.isEmpty)
    }

    static let routes: [(String, [String])] = [
        ("send", ["send: connect EPERM"]),
        ("write", ["write: connect EPERM"]),
        ("udp", ["udp: sendto EPERM", "udp: sendmsg EPERM", "udp: sendmmsg EPERM", "udp: connect-udp EPERM"]),
        ("ipv6", ["ipv6: connect6 EPERM", "ipv6: connect-mapped EPERM"]),
        ("early", ["early: connect ok", "early: write EPERM", "early: writev EPERM", "early: send EPERM"]),
        ("fork", ["fork-child: connect EPERM"]),
        ("exec", ["exec: python PermissionError 1"]),
        ("thread", ["thread: connect ok", "thread: thread-send EPERM"]),
        ("pipe", ["pipe-reader: connect ok", "pipe-reader: write EPERM", "pipe-reader: send EPERM"]),
        ("unix", ["unix-reader: connect ok", "unix-reader: send EPERM"]),
        ("shared", ["shared-reader: connect ok", "shared-reader: send EPERM"]),
        ("sendfile", ["sendfile: connect ok", "sendfile: sendfile EPERM", "sendfile: splice-out EPERM"]),
        ("io_uring", ["io_uring: io_uring_setup EPERM"]),
        // TCP ignores the address a send names: the data goes to the connected peer (connected
        // while unmanaged), so a Unix or netlink address given to sendto/sendmsg proves nothing.
        ("sendto-connected", ["sendto-connected: connect ok", "sendto-connected: sendto-unix EPERM",
                              "sendto-connected: sendmsg-unix EPERM", "sendto-connected: sendto-netlink EPERM"]),
    ]

    @Test(arguments: LeakTests.routes.map(\.0))
    func routeIsRefused(_ route: String) async throws {
        let s = try setup()
        let run = try await Harness.trace(try s.args(route), options: s.options, dir: s.dir)
        for line in LeakTests.routes.first(where: { $0.0 == route })!.1 {
            #expect(run.output.contains(line), "route \(route): expected '\(line)' in:\n\(run.output)")
        }
        try await Task.sleep(nanoseconds: 50_000_000)
        #expect(s.received == 0, "route \(route): the listener received data")
        if route != "io_uring" {
            // Each refusal is logged with the data's provenance.
            let blocked = run.events.filter { $0["ev"] as? String == "blocked" }
            #expect(!blocked.isEmpty)
            for b in blocked {
                #expect((b["reason"] as? String)?.contains("managed because") == true)
                #expect(b["err"] as? String == "EPERM")
            }
        }
    }

    /// An io_uring instance made while unmanaged could send without calls the filter sees: the
    /// process is killed when it becomes managed (fail closed), before it can use the secret.
    @Test func ioUringMadeBeforeBecomingManagedFailsClosed() async throws {
        let s = try setup()
        let run = try await Harness.trace(try s.args("io_uring-early"), options: s.options, dir: s.dir)
        #expect(run.output.contains("io_uring-early: io_uring_setup ok"), "\(run.output)")
        #expect(!run.output.contains("after-secret"))
        #expect(run.result.exitCode == 128 + 9)
        #expect(run.events.contains { $0["ev"] as? String == "blocked" && $0["path"] as? String == "anon_inode:[io_uring]" })
    }

    /// The same, with the ring's descriptor closed: the mapping keeps the instance (and an SQPOLL
    /// thread) alive, so the rings found in /proc/PID/maps count as a held instance.
    @Test func ioUringKeptByItsMappingFailsClosed() async throws {
        let s = try setup()
        let run = try await Harness.trace(try s.args("io_uring-mapped"), options: s.options, dir: s.dir)
        #expect(run.output.contains("io_uring-mapped: io_uring_setup"), "\(run.output)")
        #expect(!run.output.contains("after-secret"), "\(run.output)")
        #expect(run.result.exitCode == 128 + 9)
        #expect(run.events.contains { $0["ev"] as? String == "blocked" && $0["path"] as? String == "anon_inode:[io_uring]" })
        try await Task.sleep(nanoseconds: 100_000_000)
        #expect(s.received == 0, "the listener received data")
    }

    static let memoryRoutes: [(String, [String])] = [
        ("ptrace", ["ptrace: attach-early ok", "ptrace: poke EPERM", "ptrace: getregs ok", "ptrace: setregs EPERM",
                    "ptrace: detach ok", "ptrace: seize EPERM", "ptrace: attach EPERM"]),
        ("procmem", ["procmem: open-mem EPERM", "procmem: open-mem-link EPERM", "procmem: openat-task-mem EPERM",
                     "procmem: open-mem-read ok", "procmem: open-self-mem ok", "procmem: write-self-mem ok"]),
    ]

    /// A managed process writing the secret into another process's memory (ptrace, /proc/PID/mem):
    /// the victim runs outside the traced tree and sends whatever lands in its mailbox.
    @Test(arguments: LeakTests.memoryRoutes.map(\.0))
    func writingAnotherProcessIsRefused(_ route: String) async throws {
        let s = try setup()
        let victim = Process()
        victim.executableURL = URL(fileURLWithPath: try Harness.binary("leak"))
        victim.arguments = ["victim", s.secret, "\(s.tcp.port)"]
        victim.standardOutput = FileHandle.nullDevice
        victim.standardError = FileHandle.nullDevice
        try victim.run()
        // SIGKILL: the victim inherits the test thread's blocked signals, SIGTERM among them.
        defer { if victim.isRunning { kill(victim.processIdentifier, SIGKILL); victim.waitUntilExit() } }
        try await Task.sleep(nanoseconds: 100_000_000)
        let run = try await Harness.trace(try s.args(route, "\(victim.processIdentifier)"), options: s.options, dir: s.dir)
        for line in LeakTests.memoryRoutes.first(where: { $0.0 == route })!.1 {
            #expect(run.output.contains(line), "route \(route): expected '\(line)' in:\n\(run.output)")
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(s.received == 0, "route \(route): the victim sent the secret")
        let blocked = run.events.filter { $0["ev"] as? String == "blocked" }
        #expect(!blocked.isEmpty)
        for b in blocked {
            #expect((b["reason"] as? String)?.contains("managed because") == true)
            #expect(b["err"] as? String == "EPERM")
        }
    }

    @Test func refusalCanBeEACCES() async throws {
        var s = try setup()
        s.options.denyErrno = EACCES
        let run = try await Harness.trace(try s.args("send"), options: s.options, dir: s.dir)
        #expect(run.output.contains("send: connect EACCES"), "\(run.output)")
    }

    /// The socket of a non-leader thread is inspected through the thread-group leader.
    @Test func localSendFromAThreadOfAManagedProcessGoesThrough() async throws {
        var s = try setup()
        s.options.loopbackExternal = false
        let run = try await Harness.trace(try s.args("thread"), options: s.options, dir: s.dir)
        #expect(run.output.contains("thread: thread-send ok"), "\(run.output)")
        #expect(run.result.summary.blockedAttempts.isEmpty)
    }

    @Test func loopbackIsLocalByDefault() async throws {
        var s = try setup()
        s.options.loopbackExternal = false
        let run = try await Harness.trace(try s.args("send"), options: s.options, dir: s.dir)
        #expect(run.output.contains("send: send ok"), "\(run.output)")
        #expect(s.received > 0)
    }
}
