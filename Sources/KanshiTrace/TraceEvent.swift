import CKanshiTrace
import KanshiCore

/// One thing a traced process did, as the behaviour log records it.
/// Built on the tracer thread (binary fields only); turned into a JSON line on the writer thread.
public struct TraceEvent: Sendable {
    /// What happened.
    public enum Kind: String, Sendable, CaseIterable {
        case open, close, read, write, dup, pipe, socket, connect, bind, accept, send, recv
        case rename, link, symlink, unlink, truncate, mmap, transfer, exec, spawn, thread, exit
        /// A file's times set: flags "now" (to the present) or "set" (to given times, in reason).
        case utime
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
    public var args: SyscallArgs? = nil
    /// `close` of a file written through it (VM sensor): the byte entropy (bits per byte, 0-8)
    /// of what was written, weighted by the bytes of each write; `bytes` is how much.
    public var entropy: Double? = nil

    public init(kind: Kind) { self.kind = kind }

    /// The event as one JSON object (no newline).
    public var json: String {
        var out: [UInt8] = []
        out.reserveCapacity(192)
        appendJSON(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the event as one JSON object (no newline) as UTF-8.
    public func appendJSON(to out: inout [UInt8]) {
        var j = JSONBytes(capacity: 256)
        defer { j.free() }
        encode(into: &j)
        out.append(contentsOf: j.bytes)
    }

    /// The log writer's hot path: the JSON object written straight into raw memory,
    /// without intermediate strings.
    func encode(into j: inout JSONBytes) {
        j.raw("{\"seq\":"); j.int(seq)
        j.raw(",\"t\":"); j.int(time)
        j.raw(",\"pid\":"); j.int(Int64(pid))
        j.raw(",\"tid\":"); j.int(Int64(tid))
        j.raw(",\"ev\":\""); j.raw(kind.rawValue); j.raw("\"")
        if let call { j.raw(",\"call\":"); j.string(call) }
        if let fd { j.raw(",\"fd\":"); j.int(Int64(fd)) }
        if let fd2 { j.raw(",\"fd2\":"); j.int(Int64(fd2)) }
        if let path { j.raw(",\"path\":"); j.string(path) }
        if let path2 { j.raw(",\"path2\":"); j.string(path2) }
        if let bytes { j.raw(",\"bytes\":"); j.int(bytes) }
        if let ret {
            j.raw(",\"ret\":"); j.int(ret)
            if ret < 0 && ret > -4096 { j.raw(",\"err\":\""); Errno.append(Int32(-ret), to: &j); j.raw("\"") }
        }
        if let argv {
            j.raw(",\"argv\":[")
            for (i, a) in argv.enumerated() { if i > 0 { j.raw(",") }; j.string(a) }
            j.raw("]")
        }
        if let addr { j.raw(",\"addr\":"); j.string(addr) }
        if let child { j.raw(",\"child\":"); j.int(Int64(child)) }
        if let flags { j.raw(",\"flags\":"); j.string(flags) }
        if managed { j.raw(",\"managed\":true") }
        if blocked { j.raw(",\"blocked\":true") }
        if let reason { j.raw(",\"reason\":"); j.string(reason) }
        if let args {
            j.raw(",\"args\":[")
            for (i, a) in args.enumerated() { if i > 0 { j.raw(",") }; j.int(a) }
            j.raw("]")
        }
        if let entropy {
            let milli = Int64((min(max(entropy, 0), 8) * 1000).rounded())
            j.raw(",\"entropy\":"); j.int(milli / 1000); j.byte(UInt8(ascii: "."))
            let frac = milli % 1000
            if frac < 100 { j.byte(UInt8(ascii: "0")) }
            if frac < 10 { j.byte(UInt8(ascii: "0")) }
            j.int(frac)
        }
        if let vm { j.raw(",\"vm\":"); j.string(vm) }
        j.raw("}")
    }
}

/// UTF-8 JSON text built in place in memory it owns (`free` gives it back): numbers and
/// escaped strings (the escaping of `String.jsonEscaped`: quote, backslash and newline by
/// name, other controls as \\u00XX).
struct JSONBytes {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
    }

    func free() { base.deallocate() }

    /// What has been written.
    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    /// Forgets what was written, keeping the memory.
    mutating func clear() { count = 0 }

    /// Room for `n` more bytes.
    @inline(__always) mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ need: Int) {
        var c = capacity * 2
        while c < need { c *= 2 }
        let b = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        b.update(from: base, count: count)
        base.deallocate()
        base = b
        capacity = c
    }

    @inline(__always) mutating func byte(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    mutating func append(_ b: UnsafeBufferPointer<UInt8>) {
        guard let p = b.baseAddress, b.count > 0 else { return }
        reserve(b.count)
        (base + count).update(from: p, count: b.count)
        count += b.count
    }

    mutating func raw(_ s: StaticString) {
        append(UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    mutating func raw(_ s: String) {
        if s.utf8.withContiguousStorageIfAvailable({ append($0) }) == nil { for b in s.utf8 { byte(b) } }
    }

    mutating func int(_ v: Int64) {
        if v < 0 { byte(UInt8(ascii: "-")) }
        int(v.magnitude)
    }

    mutating func int(_ v: UInt64) {
        reserve(20)  // UInt64.max has 20 digits
        if v < 10 { base[count] = UInt8(ascii: "0") + UInt8(v); count += 1; return }
        var digits = 0
        var n = v
        while n > 0 { digits += 1; n /= 10 }
        n = v
        var i = count + digits
        while n > 0 { i -= 1; base[i] = UInt8(ascii: "0") + UInt8(n % 10); n /= 10 }
        count += digits
    }

    /// A quoted, escaped string.
    mutating func string(_ s: String) {
        byte(UInt8(ascii: "\""))
        // Native strings (all the log holds) are scanned and copied as one buffer.
        let done = s.utf8.withContiguousStorageIfAvailable { b -> Bool in
            guard b.allSatisfy({ $0 >= 0x20 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) else { return false }
            append(b)
            return true
        } ?? false
        if !done {
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "\""): raw("\\\"")
                case UInt8(ascii: "\\"): raw("\\\\")
                case UInt8(ascii: "\n"): raw("\\n")
                case ..<0x20:
                    raw("\\u00")
                    let hex: StaticString = "0123456789abcdef"
                    byte(hex.utf8Start[Int(b >> 4)])
                    byte(hex.utf8Start[Int(b & 15)])
                default: byte(b)
                }
            }
        }
        byte(UInt8(ascii: "\""))
    }
}

/// Readable errno names for the log.
enum Errno {
    static func name(_ e: Int32) -> String {
        guard let p = ckt_errno_name(e) else { return "E\(e)" }
        return String(cString: p)
    }

    static func append(_ e: Int32, to j: inout JSONBytes) {
        guard let p = ckt_errno_name(e) else { j.raw("E"); j.int(Int64(e)); return }
        var q = p
        while q.pointee != 0 { j.byte(UInt8(bitPattern: q.pointee)); q += 1 }
    }
}
