import CKanshiTrace
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Running system calls inside a tracee: installing a seccomp filter into a
/// process that became managed (or that we attached to).
extension Tracer {
    enum StopKind { case exit, stop, signal(Int32) }

    /// Installs the managed filter in the tracee's thread group (TSYNC). If it
    /// cannot, the process is killed: a managed process fails closed.
    func upgrade(_ tid: Int32, at kind: StopKind) {
        guard let p = proc(tid) else { return }
        p.upgraded = true
        let results = inject(tid, at: kind, payload: managedFilter) { base in
            [(SC.seccomp, [1, 1 | 4, base])]  // SECCOMP_SET_MODE_FILTER, FLAG_TSYNC | FLAG_SPEC_ALLOW
        }
        if results.first == 0, let ring = ioUringHeld(p.pid) {
            // A ring made before the process became managed can send without any call the filter sees
            // (SQPOLL, or io_uring_enter before it was denied): fail closed. Its mapping keeps it
            // alive after its descriptor is closed, so a mapped ring counts as a held one.
            var e = TraceEvent(kind: .blocked)
            e.pid = p.pid; e.tid = tid; e.managed = p.managed != nil; e.blocked = true; e.fd = ring.fd
            e.path = "anon_inode:[io_uring]"
            let because = p.managed.map { "managed because: \($0.why)" } ?? "network cut: \(p.isolated ?? "?")"
            e.reason = "process holds an io_uring instance (\(ring.what)) that could send unseen; process killed (fail closed); \(because)"
            log.append(e)
            summary.blocked(pid: p.pid, exe: p.exe, call: "io_uring", why: e.reason!)
            kill(p.pid, SIGKILL)
        } else if results.first != 0 {
            var e = TraceEvent(kind: .notice)
            e.pid = p.pid; e.tid = tid; e.managed = p.managed != nil; e.blocked = true
            e.reason = "could not install the stricter filter (result \(results.first.map { String($0) } ?? "none")); process killed (fail closed)"
            log.append(e)
            kill(p.pid, SIGKILL)
        }
    }

    /// An io_uring instance the process holds, if any: a descriptor, or a mapping of its
    /// rings (`anon_inode:[io_uring]` in /proc/PID/maps) that outlives a closed descriptor.
    func ioUringHeld(_ pid: Int32) -> (fd: Int32?, what: String)? {
        let ring = "anon_inode:[io_uring]"
        if let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
            for n in names where Ptrace.link("/proc/\(pid)/fd/\(n)") == ring { return (Int32(n), "fd \(n)") }
        }
        guard let maps = try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8) else {
            return (nil, "/proc/\(pid)/maps unreadable, so a mapped ring cannot be ruled out")
        }
        if let line = maps.split(separator: "\n").first(where: { $0.hasSuffix(ring) }) {
            return (nil, "rings mapped at \(line.prefix { $0 != " " }), descriptor closed")
        }
        return nil
    }

    /// Runs `calls` (number, arguments) in the tracee stopped at `tid`, then
    /// puts its registers back so it continues as if nothing happened.
    /// `payload` is copied below the stack's red zone; `calls` gets its address.
    /// Returns each call's result (nil entries missing if the tracee died).
    func inject(_ tid: Int32, at kind: StopKind, payload: [UInt8],
                calls: (UInt64) -> [(Int64, [UInt64])]) -> [Int64] {
        guard let saved = Ptrace.regs(tid) else { return [] }
        // A syscall instruction: the one just executed, or two bytes written at rip for the occasion.
        var insn = saved.rip &- 2
        var restoreWord: (UInt64, UInt64)?
        var w: UInt64 = 0
        if ckt_ptrace_peek(tid, insn, &w) != 0 || w & 0xffff != 0x050f {
            insn = saved.rip
            guard ckt_ptrace_peek(tid, insn, &w) == 0 else { return [] }
            restoreWord = (insn, w)
            guard ckt_ptrace_poke(tid, insn, (w & ~0xffff) | 0x050f) == 0 else { return [] }
        }
        var fprog = [UInt8](repeating: 0, count: 16)
        let base = (saved.rsp &- 256 &- UInt64(payload.count) &- 16) & ~15
        let insns = UInt16(payload.count / Int(ckt_filter_insn_size()))
        fprog[0] = UInt8(insns & 0xff); fprog[1] = UInt8(insns >> 8)
        withUnsafeBytes(of: (base + 16).littleEndian) { for i in 0..<8 { fprog[8 + i] = $0[i] } }
        let blob = fprog + payload
        var results: [Int64] = []
        var deferred: [Int32] = []
        defer { for sig in deferred { kill(tid, sig) } }
        if ckt_write_mem(tid, base, blob, blob.count) == 0 {
            for (nr, args) in calls(base) {
                var r = saved
                r.rip = insn; r.rax = UInt64(bitPattern: nr); r.orig_rax = UInt64.max
                r.rdi = args.count > 0 ? args[0] : 0; r.rsi = args.count > 1 ? args[1] : 0; r.rdx = args.count > 2 ? args[2] : 0
                r.r10 = args.count > 3 ? args[3] : 0; r.r8 = args.count > 4 ? args[4] : 0
                guard Ptrace.setRegs(tid, r), stepToSyscallStop(tid, &deferred), stepToSyscallStop(tid, &deferred),
                      let after = Ptrace.regs(tid) else { return results }
                results.append(after.result)
            }
        }
        if let (addr, word) = restoreWord { _ = ckt_ptrace_poke(tid, addr, word) }
        var back = saved
        if case .stop = kind, Int64(bitPattern: saved.orig_rax) >= 0 {
            // An interrupted call would be restarted by the kernel on the way out; do it by hand.
            switch saved.result {
            case -512, -513, -514: back.rax = saved.orig_rax; back.rip = saved.rip &- 2
            case -516: back.rax = UInt64(SC.restartSyscall); back.rip = saved.rip &- 2
            default: break
            }
        }
        Ptrace.setRegs(tid, back)
        return results
    }

    /// Resumes to the next syscall-entry or -exit stop of `tid`; false if it died.
    private func stepToSyscallStop(_ tid: Int32, _ deferred: inout [Int32]) -> Bool {
        Ptrace.syscall(tid)
        while true {
            guard let (_, st) = Ptrace.wait(tid) else { return false }
            if ckt_wifexited(st) != 0 || ckt_wifsignaled(st) != 0 {
                handle(tid, st)
                return false
            }
            if ckt_wstopsig(st) == (SIGTRAP | 0x80) { return true }
            let sig = ckt_wstopsig(st), ev = (st >> 16) & 0xffff
            // A signal arriving now is delivered again after the injection.
            if ev == 0 && sig != SIGTRAP { deferred.append(sig) }
            Ptrace.syscall(tid)
        }
    }
}
