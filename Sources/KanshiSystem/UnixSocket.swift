#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A listening Unix stream socket at a path (removed when closed).
public final class UnixListener: @unchecked Sendable {
    // SAFETY: the descriptor is set once; `close` is idempotent and called by the owner.
    private var fd: Int32
    public let path: String

    public init(path: String) throws(SystemError) {
        let fd = try UnixListener.bound(path, type: SOCK_STREAM)
        self.fd = fd
        self.path = path
        do {
            try syscall("listen", path) { listen(fd, 4) }
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// A Unix socket of `type` bound at `path` (its descriptor; closed again on failure).
    static func bound(_ path: String, type: __socket_type) throws(SystemError) -> Int32 {
        let fd = try syscall("socket", path) { socket(AF_UNIX, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            var addr = try address(path)
            try syscall("bind", path) {
                withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw SystemError(call: "bind", subject: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        return addr
    }

    /// Waits up to `timeoutMs` for a connection; nil on time-out.
    public func accept(timeoutMs: Int32) throws(SystemError) -> UnixConnection? {
        guard try UnixListener.readable(fd, path, timeoutMs: timeoutMs) else { return nil }
        let c = try syscall("accept", path) { Glibc.accept(fd, nil, nil) }
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        return UnixConnection(fd: c, name: path)
    }

    public func close() { UnixListener.closeBound(&fd, path) }

    deinit { close() }

    /// Waits up to `timeoutMs` for `fd` (bound at `path`) to have something to read.
    static func readable(_ fd: Int32, _ path: String, timeoutMs: Int32) throws(SystemError) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return try syscall("poll", path) { poll(&p, 1, timeoutMs) } > 0
    }

    /// Closes a socket bound at `path` (once) and removes its path.
    static func closeBound(_ fd: inout Int32, _ path: String) {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
        unlink(path)
    }
}

/// A connected Unix stream socket: whole reads and writes.
public final class UnixConnection: @unchecked Sendable {
    // SAFETY: one reader and one writer at most, each on its own direction of the socket.
    private var fd: Int32
    public let name: String

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }

    /// Reads exactly `count` bytes; nil at end of stream (before the first byte).
    public func readExactly(_ count: Int) throws(SystemError) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let fd = self.fd
            let n = try syscall("read", name) { out.withUnsafeMutableBytes { b in read(fd, b.baseAddress! + got, count - got) } }
            if n == 0 {
                if got == 0 { return nil }
                throw SystemError(call: "read", subject: name + " (stream ended inside a message)", errno: EPIPE)
            }
            got += n
        }
        return out
    }

    public func writeAll(_ bytes: [UInt8]) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            let fd = self.fd
            let n = try syscall("write", name) { bytes.withUnsafeBytes { b in write(fd, b.baseAddress! + done, bytes.count - done) } }
            done += n
        }
    }

    /// Ends both directions (wakes a reader blocked on the other thread).
    public func shutdownBoth() { if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) } }

    public func close() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        fd = -1
    }

    deinit { close() }
}

/// A Unix datagram socket bound at a path (removed when closed): what a local log daemon
/// listens on, e.g. /dev/log.
public final class DatagramReceiver: @unchecked Sendable {
    // SAFETY: the descriptor is set once; `close` is idempotent and called by the owner.
    private var fd: Int32
    public let path: String

    public init(path: String) throws(SystemError) {
        fd = try UnixListener.bound(path, type: SOCK_DGRAM)
        self.path = path
    }

    /// One datagram as text, waiting up to `timeoutMs`; nil on time-out.
    public func receive(timeoutMs: Int32) throws(SystemError) -> String? {
        guard try UnixListener.readable(fd, path, timeoutMs: timeoutMs) else { return nil }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let got = try syscall("recv", path) { buffer.withUnsafeMutableBytes { Int32(recv(fd, $0.baseAddress, $0.count, 0)) } }
        return String(decoding: buffer.prefix(Int(got)), as: UTF8.self)
    }

    public func close() { UnixListener.closeBound(&fd, path) }

    deinit { close() }
}
