import CKanshiTrace
import KanshiCore

/// One thing a traced process did, as the behaviour log records it.
/// Built on the tracer thread (binary fields only); turned into a JSON line on the writer thread.
public struct TraceEvent: Sendable {
    /// What happened.
    public enum Kind: String, Sendable {
        case open, close, read, write, dup, pipe, socket, connect, bind, accept, send, recv
        case rename, link, symlink, unlink, truncate, mmap, transfer, exec, spawn, thread, exit
        case managed, blocked, signal, dropped, notice
        /// Any other system call (the VM sensor with --all-calls): its name and raw arguments.
        case call
    }

    public var seq: UInt64 = 0
    /// Nanoseconds since the Unix epoch.
    public var time: UInt64 = 0
    public var pid: Int32 = 0
    public var tid: Int32 = 0
    public var kind: Kind
    public var call: String? = nil
    public var fd: Int32? = nil
    public var fd2: Int32? = nil
    public var path: String? = nil
    public var path2: String? = nil
    public var bytes: Int64? = nil
    public var ret: Int64? = nil
    public var argv: [String]? = nil
    public var addr: String? = nil
    public var child: Int32? = nil
    public var flags: String? = nil
    public var managed: Bool = false
    public var blocked: Bool = false
    public var reason: String? = nil
    /// The virtual machine the event happened in (VM sensor), nil on the host.
    public var vm: String? = nil
    /// Raw arguments of a `call` event.
    public var args: [UInt64]? = nil

    public init(kind: Kind) { self.kind = kind }

    /// The event as one JSON object (no newline).
    public var json: String {
        var s = "{\"seq\":\(seq),\"t\":\(time),\"pid\":\(pid),\"tid\":\(tid),\"ev\":\"\(kind.rawValue)\""
        if let call { s += ",\"call\":\"\(call)\"" }
        if let fd { s += ",\"fd\":\(fd)" }
        if let fd2 { s += ",\"fd2\":\(fd2)" }
        if let path { s += ",\"path\":\"\(path.jsonEscaped)\"" }
        if let path2 { s += ",\"path2\":\"\(path2.jsonEscaped)\"" }
        if let bytes { s += ",\"bytes\":\(bytes)" }
        if let ret {
            s += ",\"ret\":\(ret)"
            if ret < 0 && ret > -4096 { s += ",\"err\":\"\(Errno.name(Int32(-ret)))\"" }
        }
        if let argv { s += ",\"argv\":[" + argv.map { "\"\($0.jsonEscaped)\"" }.joined(separator: ",") + "]" }
        if let addr { s += ",\"addr\":\"\(addr.jsonEscaped)\"" }
        if let child { s += ",\"child\":\(child)" }
        if let flags { s += ",\"flags\":\"\(flags.jsonEscaped)\"" }
        if managed { s += ",\"managed\":true" }
        if blocked { s += ",\"blocked\":true" }
        if let reason { s += ",\"reason\":\"\(reason.jsonEscaped)\"" }
        if let args { s += ",\"args\":[" + args.map { String($0) }.joined(separator: ",") + "]" }
        if let vm { s += ",\"vm\":\"\(vm.jsonEscaped)\"" }
        return s + "}"
    }
}

/// Readable errno names for the log.
enum Errno {
    static func name(_ e: Int32) -> String {
        guard let p = ckt_errno_name(e) else { return "E\(e)" }
        return String(cString: p)
    }
}
