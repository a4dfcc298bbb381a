import CKanshiTrace
#if canImport(Glibc)
import Glibc
#endif

/// The only place that calls ptrace and reads tracee memory. Everything here
/// runs on the tracer thread (ptrace requests must come from the thread that attached).
enum Ptrace {
    static let eventFork: Int32 = 1, eventVfork: Int32 = 2, eventClone: Int32 = 3, eventExec: Int32 = 4
    static let eventSeccomp: Int32 = 7, eventStop: Int32 = 128

    static func cont(_ tid: Int32, _ sig: Int32 = 0) { _ = ckt_ptrace_cont(tid, sig) }
    static func syscall(_ tid: Int32, _ sig: Int32 = 0) { _ = ckt_ptrace_syscall(tid, sig) }
    static func listen(_ tid: Int32) { _ = ckt_ptrace_listen(tid) }
    static func interrupt(_ tid: Int32) -> Bool { ckt_ptrace_interrupt(tid) == 0 }

    static func eventMessage(_ tid: Int32) -> UInt {
        var m: UInt = 0
        _ = ckt_ptrace_geteventmsg(tid, &m)
        return m
    }

    static func regs(_ tid: Int32) -> ckt_regs? {
        var r = ckt_regs()
        return ckt_ptrace_getregs(tid, &r) == 0 ? r : nil
    }

    @discardableResult
    static func setRegs(_ tid: Int32, _ r: ckt_regs) -> Bool {
        var r = r
        return ckt_ptrace_setregs(tid, &r) == 0
    }

    /// waitpid for one tracee (or -1 for any) of this thread.
    static func wait(_ pid: Int32) -> (pid: Int32, status: Int32)? {
        var st: Int32 = 0
        let r = ckt_wait(pid, &st)
        return r > 0 ? (r, st) : nil
    }

    enum Wait { case stop(Int32, Int32), woken, none }

    /// waitpid for one tracee (or -1 for any) of this thread; `.woken` when a signal (see
    /// `ckt_install_wake`) interrupted it, `.none` when there is nothing left to wait for.
    static func waitOrWake(_ pid: Int32) -> Wait {
        var st: Int32 = 0
        let r = ckt_wait_interruptible(pid, &st)
        if r > 0 { return .stop(r, st) }
        return r == -EINTR ? .woken : .none
    }

    /// waitpid without blocking: nil when no stop or exit is ready.
    static func poll(_ pid: Int32) -> (pid: Int32, status: Int32)? {
        var st: Int32 = 0
        let r = ckt_wait_nohang(pid, &st)
        return r > 0 ? (r, st) : nil
    }

    static func readString(_ pid: Int32, _ addr: UInt64, max: Int = 4096) -> String? {
        guard addr != 0 else { return nil }
        var buf = [CChar](repeating: 0, count: max + 1)
        let n = ckt_read_string(pid, addr, &buf, buf.count)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func readBytes(_ pid: Int32, _ addr: UInt64, _ count: Int) -> [UInt8]? {
        guard addr != 0, count > 0, count <= 1 << 16 else { return nil }
        var buf = [UInt8](repeating: 0, count: count)
        let n = ckt_read_mem(pid, addr, &buf, count)
        return n == count ? buf : nil
    }

    static func readU64(_ pid: Int32, _ addr: UInt64) -> UInt64? {
        guard let b = readBytes(pid, addr, 8) else { return nil }
        return b.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
    }

    static func readI32Pair(_ pid: Int32, _ addr: UInt64) -> (Int32, Int32)? {
        guard let b = readBytes(pid, addr, 8) else { return nil }
        return b.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: Int32.self), $0.loadUnaligned(fromByteOffset: 4, as: Int32.self)) }
    }

    /// readlink of a /proc entry.
    static func link(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4097)
        let n = readlink(path, &buf, 4096)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension ckt_regs {
    /// The six system-call arguments (rdi, rsi, rdx, r10, r8, r9).
    var args: [UInt64] { [rdi, rsi, rdx, r10, r8, r9] }
    func arg(_ i: Int) -> UInt64 {
        switch i { case 0: rdi; case 1: rsi; case 2: rdx; case 3: r10; case 4: r8; default: r9 }
    }
    func argInt(_ i: Int) -> Int64 { Int64(bitPattern: arg(i)) }
    func argFd(_ i: Int) -> Int32 { Int32(truncatingIfNeeded: Int64(bitPattern: arg(i))) }
    var nr: Int64 { Int64(bitPattern: orig_rax) }
    var result: Int64 { Int64(bitPattern: rax) }
}
