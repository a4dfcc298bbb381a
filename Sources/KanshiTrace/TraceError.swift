#if canImport(Glibc)
import Glibc
#endif

/// Errors of the syscall sensor, each with what to fix.
public enum TraceError: Error, CustomStringConvertible, Sendable {
    /// The sensor runs on x86_64 Linux only.
    case unsupportedArchitecture
    /// The program to run was not found on PATH or is not executable.
    case programNotFound(String)
    /// fork, PTRACE_SEIZE or the seccomp filter failed when starting the program.
    case spawnFailed(program: String, errno: Int32)
    /// Attaching to a running process failed.
    case attachFailed(pid: Int32, errno: Int32, detail: String)
    /// The behaviour log or the managed set could not be written or read.
    case logFile(path: String, errno: Int32)
    /// The managed-set file exists but is not valid.
    case badManagedSet(path: String, detail: String)
    /// The managed set could not be saved.
    case managedSetNotSaved(path: String, detail: String)
    /// A behaviour log being read back has a line that is not one of its events.
    case badLog(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture:
            return "kanshi trace supports x86_64 Linux only (ptrace register layout and seccomp filter are x86_64)"
        case .programNotFound(let p):
            return "program '\(p)' not found or not executable; give a path or a name on PATH"
        case .spawnFailed(let p, let e):
            return "could not start '\(p)' under ptrace: \(String(cString: strerror(e))) (errno \(e)); ptrace must be allowed (root, or kernel.yama.ptrace_scope=0)"
        case .attachFailed(let pid, let e, let d):
            return "could not attach to pid \(pid): \(d): \(String(cString: strerror(e))) (errno \(e)); check the pid exists and that ptrace is allowed"
        case .logFile(let p, let e):
            return "cannot write \(p): \(String(cString: strerror(e))) (errno \(e)); choose a writable --log path"
        case .managedSetNotSaved(let p, let d):
            return "cannot save the managed set to \(p): \(d); choose a writable --managed-set or --log path"
        case .badLog(let p, let line, let why):
            if p.isEmpty { return why }
            return line > 0 ? "\(p):\(line): \(why)" : "behaviour log \(p): \(why)"
        case .badManagedSet(let p, let d):
            return "managed set \(p) is not valid: \(d); move it away to start with an empty set"
        }
    }
}
