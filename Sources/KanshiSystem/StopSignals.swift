#if canImport(Glibc)
import Glibc
#endif
import CKanshiShims

/// SIGINT/SIGTERM delivered through a pipe: installed synchronously, so a
/// signal that arrives before anyone waits is kept, not lost or fatal.
public final class StopSignals: @unchecked Sendable {
    // SAFETY: the descriptors are set once in init and never change.
    private let readFD: Int32
    private let writeFD: Int32

    public init() throws(SystemError) {
        var fds: [Int32] = [0, 0]
        try syscall("pipe", "stop-signal pipe") { pipe(&fds) }
        readFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(readFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
        let e = ckanshi_install_stop_signals(writeFD)
        if e != 0 { throw SystemError(call: "sigaction", subject: "SIGINT/SIGTERM", errno: e) }
    }

    /// Wakes `wait()` as a signal would, with `code` (e.g. 0 for "the work
    /// ended by itself"). Safe from any thread.
    public func trigger(_ code: UInt8) {
        var b = code
        _ = write(writeFD, &b, 1)
    }

    /// Blocks the calling thread until a stop signal arrives; returns its number.
    public func wait() -> Int32 {
        var b: UInt8 = 0
        while true {
            let n = read(readFD, &b, 1)
            if n == 1 { return Int32(b) }
            if n < 0 && errno == EINTR { continue }
            return 0
        }
    }
}

/// Writes to a pipe whose reader has gone.
public enum BrokenPipe {
    /// Makes such a write fail with EPIPE instead of ending the process
    /// (SIGPIPE ignored), so a helper program that dies can be reported.
    public static func failWritesInstead() {
        signal(SIGPIPE, SIG_IGN)
    }
}
