#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call: which call, on what, and the errno.
public struct SystemError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The call that failed, e.g. "pwrite".
    public var call: String
    /// What it was operating on (usually a path).
    public var subject: String
    public var errno: Int32

    public init(call: String, subject: String, errno: Int32) {
        self.call = call
        self.subject = subject
        self.errno = errno
    }

    public var description: String {
        "\(call) \(subject): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a system call, retrying EINTR, and throws a `SystemError` for -1.
@inline(never)
@discardableResult
func syscall<T: BinaryInteger>(_ call: String, _ subject: @autoclosure () -> String,
                               _ body: () -> T) throws(SystemError) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = Glibc.errno
        if e == EINTR { continue }
        throw SystemError(call: call, subject: subject(), errno: e)
    }
}
