import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import KanshiBlock

/// A deliberately low-level NBD client over a Unix socket: it sends exactly
/// the bytes a test gives it, so tests can send what no real client would.
final class RawNBDClient {
    let fd: Int32

    init(socketPath: String, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            let b = Array(socketPath.utf8)
            for (i, c) in b.enumerated() { p[i] = c }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { close(fd); throw TestFailure("connect \(socketPath): errno \(errno)") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, bytes.count - done, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestFailure("send failed: errno \(errno)") }
            done += n
        }
    }

    /// Reads exactly n bytes; throws if the server closed or timed out first.
    func receive(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, n - done, 0) }
            if r == 0 { throw TestFailure("server closed the connection after \(done) of \(n) bytes") }
            if r < 0 { throw TestFailure("recv: errno \(errno)") }
            done += r
        }
        return out
    }

    /// True if the server closes the connection (EOF) within the timeout,
    /// discarding whatever it sent before.
    func waitForClose() -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let r = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, 4096, 0) }
            if r == 0 { return true }
            if r < 0 { return errno == ECONNRESET }
        }
    }

    // MARK: - Protocol helpers

    func readGreeting() throws -> UInt16 {
        let g = try receive(18)
        guard be64(g, 0) == NBD.initMagic, be64(g, 8) == NBD.optionMagic else { throw TestFailure("bad greeting \(g)") }
        return UInt16(g[16]) << 8 | UInt16(g[17])
    }

    func sendClientFlags(_ flags: UInt32) throws { try send(be(flags)) }

    func sendOption(_ option: UInt32, _ data: [UInt8] = []) throws {
        try send(be(NBD.optionMagic) + be(option) + be(UInt32(data.count)) + data)
    }

    /// Reads one option reply: (option, type, data).
    func readOptionReply() throws -> (UInt32, UInt32, [UInt8]) {
        let h = try receive(20)
        guard be64(h, 0) == NBD.optionReplyMagic else { throw TestFailure("bad option reply magic") }
        let len = Int(be32(h, 16))
        return (be32(h, 8), be32(h, 12), len > 0 ? try receive(len) : [])
    }

    /// Full handshake with NBD_OPT_GO; returns (size, transmission flags).
    @discardableResult
    func handshake() throws -> (UInt64, UInt16) {
        _ = try readGreeting()
        try sendClientFlags(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes)
        try sendOption(NBD.Option.go.rawValue, be(UInt32(0)) + be(UInt16(0)))
        var size: UInt64 = 0, flags: UInt16 = 0
        while true {
            let (_, type, data) = try readOptionReply()
            if type == NBD.Reply.ack.rawValue { return (size, flags) }
            guard type == NBD.Reply.info.rawValue else { throw TestFailure("OPT_GO failed with reply \(type)") }
            if be16(data, 0) == NBD.Info.export.rawValue {
                size = be64(data, 2)
                flags = be16(data, 10)
            }
        }
    }

    func sendRequest(_ type: UInt16, flags: UInt16 = 0, cookie: UInt64, offset: UInt64, length: UInt32, payload: [UInt8] = []) throws {
        try send(be(NBD.requestMagic) + be(flags) + be(type) + be(cookie) + be(offset) + be(length) + payload)
    }

    /// Reads a simple reply header: (errno, cookie).
    func readReply() throws -> (UInt32, UInt64) {
        let h = try receive(16)
        guard be32(h, 0) == NBD.simpleReplyMagic else { throw TestFailure("bad reply magic \(h)") }
        return (be32(h, 4), be64(h, 8))
    }

    func write(_ data: [UInt8], at offset: UInt64, fua: Bool = false, cookie: UInt64 = 1) throws -> UInt32 {
        try sendRequest(NBD.Command.write.rawValue, flags: fua ? NBD.commandFlagFUA : 0, cookie: cookie,
                        offset: offset, length: UInt32(data.count), payload: data)
        let (e, c) = try readReply()
        guard c == cookie else { throw TestFailure("reply for cookie \(c), expected \(cookie)") }
        return e
    }

    func read(at offset: UInt64, length: UInt32, cookie: UInt64 = 2) throws -> (UInt32, [UInt8]) {
        try sendRequest(NBD.Command.read.rawValue, cookie: cookie, offset: offset, length: length)
        let (e, c) = try readReply()
        guard c == cookie else { throw TestFailure("reply for cookie \(c), expected \(cookie)") }
        return (e, e == 0 ? try receive(Int(length)) : [])
    }

    func simple(_ command: NBD.Command, offset: UInt64 = 0, length: UInt32 = 0, flags: UInt16 = 0, cookie: UInt64 = 3) throws -> UInt32 {
        try sendRequest(command.rawValue, flags: flags, cookie: cookie, offset: offset, length: length)
        let (e, c) = try readReply()
        guard c == cookie else { throw TestFailure("reply for cookie \(c), expected \(cookie)") }
        return e
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
func be16(_ b: [UInt8], _ o: Int) -> UInt16 { b[o..<o + 2].reduce(0) { $0 << 8 | UInt16($1) } }
func be32(_ b: [UInt8], _ o: Int) -> UInt32 { b[o..<o + 4].reduce(0) { $0 << 8 | UInt32($1) } }
func be64(_ b: [UInt8], _ o: Int) -> UInt64 { b[o..<o + 8].reduce(0) { $0 << 8 | UInt64($1) } }
