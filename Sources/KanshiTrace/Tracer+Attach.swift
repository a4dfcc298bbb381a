import CKanshiTrace
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `kanshi trace --pid N`: seize every thread, install the base filter inside the process.
extension Tracer {
    /// Attaches, trying again a few times when the process could not run the
    /// injected calls (a process still starting up, e.g. inside execve).
    func attach(_ pid: Int32) throws {
        let attempts = 5
        for attempt in 1...attempts {
            if try attachOnce(pid) { return }
            if attempt < attempts { usleep(100_000) }
        }
        throw TraceError.attachFailed(pid: pid, errno: EAGAIN,
                                      detail: "could not run the filter installation inside the process (it may be starting up or exiting; tried \(attempts) times)")
    }

    /// One try; false (everything detached again) when the process could not
    /// run the injected calls.
    private func attachOnce(_ pid: Int32) throws -> Bool {
        guard pid > 0, let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else {
            throw TraceError.attachFailed(pid: pid, errno: ESRCH, detail: "no such process")
        }
        guard pid != getpid() else { throw TraceError.attachFailed(pid: pid, errno: EINVAL, detail: "that is kanshi itself") }
        let tids = tasks.compactMap { Int32($0) }.sorted()
        var seized: [Int32] = []
        for t in tids {
            let r = ckt_ptrace_seize(t, ckt_trace_options(0))
            if r < 0 {
                for s in seized { _ = ckt_ptrace_detach(s, 0) }
                throw TraceError.attachFailed(pid: pid, errno: Int32(-r), detail: "PTRACE_SEIZE of thread \(t)")
            }
            seized.append(t)
            _ = Ptrace.interrupt(t)
        }
        for t in seized {
            // Wait for each thread's interrupt stop.
            while let (_, st) = Ptrace.wait(t), ckt_wifstopped(st) != 0, (st >> 16) & 0xffff != Ptrace.eventStop {
                Ptrace.cont(t, ckt_wstopsig(st))
            }
        }
        let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
        let argv = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        let p = Proc(pid: pid, parent: 0, argv: argv.isEmpty ? ["pid \(pid)"] : argv, fds: FdTable(pid: pid))
        let results = inject(pid, at: .stop, payload: baseFilter) { base in
            [(SC.prctl, [38, 1, 0, 0, 0]),  // PR_SET_NO_NEW_PRIVS
             (SC.seccomp, [1, 1 | 4, base])]  // SECCOMP_SET_MODE_FILTER, TSYNC | SPEC_ALLOW
        }
        guard results.count == 2, results[0] == 0, results[1] == 0 else {
            for t in seized { _ = ckt_ptrace_detach(t, 0) }
            if results.count < 2 { return false }
            let failed = results[0] != 0 ? 0 : 1
            throw TraceError.attachFailed(pid: pid, errno: Int32(-results[failed]),
                                          detail: failed == 0 ? "setting no_new_privs in the process" : "installing the seccomp filter in the process")
        }
        procs[pid] = p
        for t in seized { threads[t] = pid }
        rootPid = pid
        summary.addProcess(pid: pid, parent: 0, argv: p.argv)
        var e = TraceEvent(kind: .notice)
        e.pid = pid; e.tid = pid; e.argv = p.argv; e.reason = "attached to running process; its existing children are not traced"
        log.append(e)
        for t in seized { Ptrace.cont(t) }
        return true
    }
}
