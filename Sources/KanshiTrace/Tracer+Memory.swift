import CKanshiTrace
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A managed process must not write into another process's memory: an unmanaged
/// process (one outside the traced tree, or a tracee it attached to while still
/// unmanaged) could then send the data. `process_vm_writev` is refused by the
/// managed filter; ptrace and `/proc/PID/mem` are judged here.
extension Tracer {
    /// ptrace requests that only read a tracee or let it run: everything else
    /// (POKE*, SET*, ATTACH, SEIZE, TRACEME, and any request not known here) is refused.
    static let readOnlyPtrace: Set<UInt64> = [
        1, 2, 3,  // PEEKTEXT, PEEKDATA, PEEKUSR
        7, 8, 9, 17, 24,  // CONT, KILL, SINGLESTEP, DETACH, SYSCALL
        12, 14, 18, 25,  // GETREGS, GETFPREGS, GETFPXREGS, GET_THREAD_AREA
        31, 32, 33,  // SYSEMU, SYSEMU_SINGLESTEP, SINGLEBLOCK
        0x4200, 0x4201, 0x4202, 0x4204,  // SETOPTIONS, GETEVENTMSG, GETSIGINFO, GETREGSET
        0x4207, 0x4208, 0x4209, 0x420a,  // INTERRUPT, LISTEN, PEEKSIGINFO, GETSIGMASK
        0x420c, 0x420d, 0x420e, 0x420f,  // SECCOMP_GET_FILTER, SECCOMP_GET_METADATA, GET_SYSCALL_INFO, GET_RSEQ_CONFIGURATION
    ]

    static let ptraceNames: [UInt64: String] = [
        0: "PTRACE_TRACEME", 4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER",
        13: "PTRACE_SETREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 19: "PTRACE_SETFPXREGS",
        26: "PTRACE_SET_THREAD_AREA", 30: "PTRACE_ARCH_PRCTL", 0x4203: "PTRACE_SETSIGINFO",
        0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE", 0x420b: "PTRACE_SETSIGMASK",
    ]

    /// For a managed process at a seccomp stop: why a ptrace request or an open
    /// of another process's memory must be refused (and the path to log), or nil.
    func memoryWriteCheck(_ tid: Int32, _ p: Proc, _ r: ckt_regs) -> (why: String, path: String?)? {
        switch r.nr {
        case SC.ptrace:
            let request = r.arg(0)
            guard !Tracer.readOnlyPtrace.contains(request) else { return nil }
            let name = Tracer.ptraceNames[request] ?? "request \(request)"
            return ("ptrace \(name) of pid \(r.argInt(1)): a managed process may not attach to or change another process", nil)
        case SC.open, SC.creat, SC.openat, SC.openat2:
            let flags: UInt64
            let path: String?
            switch r.nr {
            case SC.open: flags = r.arg(1); path = resolvePath(tid, -100, r.arg(0))
            case SC.creat: flags = 1; path = resolvePath(tid, -100, r.arg(0))
            case SC.openat: flags = r.arg(2); path = resolvePath(tid, r.argFd(0), r.arg(1))
            default: flags = Ptrace.readU64(tid, r.arg(2)) ?? 2; path = resolvePath(tid, r.argFd(0), r.arg(1))
            }
            guard flags & 3 != 0, let path else { return nil }  // O_RDONLY: reading is not refused
            let real = tracedRealPath(tid, p.pid, path)
            guard let target = Tracer.memFileProcess(real), !isSameProcess(target, p) else { return nil }
            return ("open of \(real) for writing: a managed process may not write another process's memory", real)
        default:
            return nil
        }
    }

    /// At the exit of an open that went through: a writable descriptor on another process's
    /// memory (a path swapped after the entry check) kills the process, fail closed. True if so.
    func killIfForeignMemory(_ tid: Int32, _ p: Proc, fd: Int32, path: String, writable: Bool) -> Bool {
        guard writable, let target = Tracer.memFileProcess(path), !isSameProcess(target, p) else { return false }
        var e = event(.blocked, tid, p, SC.openat)
        e.fd = fd; e.path = path; e.blocked = true
        e.reason = "descriptor \(fd) writes another process's memory (\(path)); process killed (fail closed); managed because: \(p.managed?.why ?? "?")"
        log.append(e)
        summary.blocked(pid: p.pid, exe: p.exe, call: "open", why: e.reason!)
        kill(p.pid, SIGKILL)
        return true
    }

    /// The process (or thread) whose memory a path names: `/proc/N/mem` or `/proc/N/task/M/mem`.
    static func memFileProcess(_ path: String) -> Int32? {
        let parts = path.split(separator: "/")
        guard parts.first == "proc", parts.last == "mem", let n = Int32(parts[1]) else { return nil }
        if parts.count == 3 { return n }
        if parts.count == 5, parts[2] == "task", let t = Int32(parts[3]) { return t > 0 ? t : n }
        return nil
    }

    private func isSameProcess(_ target: Int32, _ p: Proc) -> Bool {
        target == p.pid || threads[target] == p.pid
    }

    /// A path as the tracee sees it, symlinks resolved: its /proc/self and
    /// /proc/thread-self are the tracee's, not the tracer's.
    func tracedRealPath(_ tid: Int32, _ pid: Int32, _ path: String) -> String {
        var s = path
        if s == "/proc/self" || s.hasPrefix("/proc/self/") {
            s = "/proc/\(pid)" + s.dropFirst("/proc/self".count)
        } else if s == "/proc/thread-self" || s.hasPrefix("/proc/thread-self/") {
            s = "/proc/\(pid)/task/\(tid)" + s.dropFirst("/proc/thread-self".count)
        }
        guard let r = realpath(s, nil) else { return s }
        defer { free(r) }
        return String(cString: r)
    }
}
