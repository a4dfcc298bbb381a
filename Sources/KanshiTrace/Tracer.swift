import CKanshiTrace
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What `kanshi trace` watches and how.
public struct TraceOptions: Sendable {
    /// Paths whose readers become managed (files, or directories for everything under them).
    public var protect: [String] = []
    /// Treat loopback addresses as off the machine (for tests: a loopback listener stands for the Internet).
    public var loopbackExternal = false
    /// Stop on every read and write of every process too (byte counts for all; slower).
    public var traceAllIO = false
    /// The errno a refused call returns (EPERM or EACCES).
    public var denyErrno: Int32 = EPERM
    public init() {}
}

/// What to watch: a program started under the tracer, or a running process.
public enum TraceTarget: Sendable {
    case spawn(program: String, arguments: [String])
    case attach(pid: Int32)
}

/// The outcome of a run.
public struct TraceResult: Sendable {
    /// Exit status of the traced program (128 + signal if it was killed), or 0 after --pid.
    public var exitCode: Int32
    public var summary: TraceSummary
    public var managed: ManagedSet
}

/// One traced process (thread group).
final class Proc {
    let pid: Int32
    var parent: Int32
    var argv: [String]
    var fds: FdTable
    var managed: ManagedReason?
    /// Why its network is cut (a rule's isolate action), if it is.
    var isolated: String?
    /// The stricter seccomp filter is installed (inherited by its children).
    var upgraded = false
    var alive = true
    init(pid: Int32, parent: Int32, argv: [String], fds: FdTable) {
        self.pid = pid; self.parent = parent; self.argv = argv; self.fds = fds
    }
    var exe: String { argv.first ?? "?" }
}

/// A call seen at its seccomp stop, finished at its exit stop.
struct PendingCall {
    var nr: Int64
    var regs: ckt_regs
    var event: TraceEvent?
    var path: String? = nil
    var path2: String? = nil
    var argv: [String]? = nil
    /// utime calls: "now" or "set", and the times set.
    var times: (flags: String, reason: String?)? = nil
    /// The call was refused at entry; only the filter upgrade needed the exit stop.
    var denied = false
}

/// The syscall sensor: runs or attaches to a process tree under ptrace with a
/// seccomp filter, decodes calls, keeps fd tables and the managed set, and
/// refuses managed processes' sends off the machine.
///
/// All of `run` happens on the calling thread, which must be the same for the
/// whole run (ptrace requests must come from the thread that attached).
public final class Tracer {
    let options: TraceOptions
    let log: EventLog
    let logger: Logger
    var managedSet: ManagedSet
    var summary = TraceSummary()
    var procs: [Int32: Proc] = [:]
    var threads: [Int32: Int32] = [:]
    var pending: [Int32: PendingCall] = [:]
    /// New tracees that stopped before their parent's fork event (held until it comes).
    var heldNew: Set<Int32> = []
    /// Children announced by a fork event whose first stop has not come yet.
    var expectedNew: Set<Int32> = []
    /// Bumped whenever a descriptor or process appears; a pipe or socket whose holders were
    /// scanned at the current epoch need not be scanned again (see `carry`).
    var fdEpoch: UInt64 = 0
    var carriedAt: [String: UInt64] = [:]
    var rootPid: Int32 = 0
    var rootExit: Int32 = 0
    let baseFilter: [UInt8]
    let managedFilter: [UInt8]
    let networkCuts = NetworkCutRequests()

    public init(options: TraceOptions, log: EventLog, managed: ManagedSet, logger: Logger) throws {
        guard ckt_supported() == 1 else { throw TraceError.unsupportedArchitecture }
        self.options = options
        self.log = log
        self.logger = logger
        self.managedSet = managed
        var trace = FilterPolicy.base
        if options.traceAllIO { trace += SC.reads + SC.writes }
        baseFilter = Tracer.buildFilter(allowFirst: options.traceAllIO ? [] : [SC.read, SC.write], trace: trace, deny: [], mmapFiles: true)
        managedFilter = Tracer.buildFilter(allowFirst: [SC.read], trace: FilterPolicy.managedExtra, deny: FilterPolicy.managedDeny, mmapFiles: false)
    }

    static func buildFilter(allowFirst: [Int64], trace: [Int64], deny: [Int64], mmapFiles: Bool) -> [UInt8] {
        let a = allowFirst.map { Int32($0) }, t = trace.map { Int32($0) }, d = deny.map { Int32($0) }
        let size = Int(ckt_filter_insn_size())
        var out = [UInt8](repeating: 0, count: 512 * size)
        let n = out.withUnsafeMutableBytes { buf in
            ckt_build_filter(a, Int32(a.count), t, Int32(t.count), d, Int32(d.count), mmapFiles ? 1 : 0, buf.baseAddress, 512)
        }
        precondition(n > 0, "seccomp filter does not fit")  // fixed lists; a bug if it happens
        return Array(out[0..<(Int(n) * size)])
    }

    /// Runs the target to the end (all traced processes gone) and returns what happened.
    public func run(_ target: TraceTarget) throws -> TraceResult {
        ckt_quiet_sigchld()
        switch target {
        case .spawn(let program, let arguments): try spawn(program, arguments)
        case .attach(let pid): try attach(pid)
        }
        _ = ckt_install_wake(tracerWakeSignal)
        networkCuts.lock.withLock { networkCuts.thread = UInt(ckt_self_thread()) }
        defer { networkCuts.lock.withLock { networkCuts.thread = nil } }
        loop: while !threads.isEmpty || !heldNew.isEmpty {
            takeNetworkCuts()
            switch Ptrace.waitOrWake(-1) {
            case .stop(let tid, let status): handle(tid, status)
            case .woken: continue
            case .none: break loop
            }
        }
        takeNetworkCuts()  // a requester waiting now is answered
        summary.managedFiles = managedSet.files.values.map { ($0.path, $0.reason.why) }.sorted { $0.0 < $1.0 }
        summary.dropped = log.dropped
        return TraceResult(exitCode: rootExit, summary: summary, managed: managedSet)
    }

    /// Runs `run(target)` on a new dedicated thread (every ptrace request of the run comes from it)
    /// and waits for it. Use this from async code or anywhere the calling thread is shared.
    public func runOnDedicatedThread(_ target: TraceTarget) throws -> TraceResult {
        // SAFETY: the tracer is used by the new thread only, while this thread waits for it;
        // the result is read after the semaphore, which orders the accesses.
        final class Box: @unchecked Sendable {
            let tracer: Tracer
            var result: Result<TraceResult, Error>?
            init(_ t: Tracer) { tracer = t }
        }
        let box = Box(self)
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            box.result = Result { try box.tracer.run(target) }
            done.signal()
        }
        t.name = "kanshi-tracer"
        t.stackSize = 8 << 20
        t.start()
        done.wait()
        return try box.result!.get()
    }

    // MARK: starting

    static func resolve(_ program: String) -> String? {
        if program.contains("/") { return access(program, X_OK) == 0 ? program : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let p = "\(dir)/\(program)"
            var st = stat()
            if access(p, X_OK) == 0 && stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG { return p }
        }
        return nil
    }

    private func spawn(_ program: String, _ arguments: [String]) throws {
        guard let path = Tracer.resolve(program) else { throw TraceError.programNotFound(program) }
        let argv = [program] + arguments
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let env = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        var cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) }; for p in cEnv { free(p) } }
        let insns = UInt16(baseFilter.count / Int(ckt_filter_insn_size()))
        let pid = baseFilter.withUnsafeBytes { f in
            ckt_spawn(path, &cArgs, &cEnv, f.baseAddress, insns, ckt_trace_options(1))
        }
        guard pid > 0 else { throw TraceError.spawnFailed(program: program, errno: -pid) }
        rootPid = pid
        let p = Proc(pid: pid, parent: getpid(), argv: argv, fds: FdTable(pid: pid))
        procs[pid] = p
        threads[pid] = pid
        summary.addProcess(pid: pid, parent: 0, argv: argv)
        var e = TraceEvent(kind: .spawn)
        e.pid = getpid(); e.tid = e.pid; e.child = pid; e.argv = argv; e.path = path
        log.append(e)
    }

    // MARK: the stop dispatcher

    func handle(_ tid: Int32, _ status: Int32) {
        if ckt_wifexited(status) != 0 || ckt_wifsignaled(status) != 0 {
            onGone(tid, status)
            return
        }
        guard ckt_wifstopped(status) != 0 else { return }
        let sig = ckt_wstopsig(status)
        let event = (status >> 16) & 0xffff
        if threads[tid] == nil {
            // A new tracee whose parent's fork event has not been handled yet: hold it.
            if expectedNew.remove(tid) == nil {
                heldNew.insert(tid)
                return
            }
        }
        switch event {
        case Ptrace.eventSeccomp:
            onEntry(tid)
        case Ptrace.eventFork, Ptrace.eventVfork, Ptrace.eventClone:
            onFork(tid, event)
        case Ptrace.eventExec:
            onExec(tid)
        case Ptrace.eventStop:
            let stopSignals: Set<Int32> = [SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]
            if needsUpgrade(tid) { upgrade(tid, at: .stop) }
            if stopSignals.contains(sig) { Ptrace.listen(tid) } else { resume(tid) }
        default:
            if sig == (SIGTRAP | 0x80) {
                onExit(tid)
            } else {
                var deliver = sig
                if needsUpgrade(tid) { upgrade(tid, at: .signal(sig)); deliver = sig }
                if sig != SIGTRAP && sig != SIGSTOP {
                    var e = TraceEvent(kind: .signal)
                    e.pid = threads[tid] ?? tid; e.tid = tid; e.flags = "signal \(sig)"
                    e.managed = proc(tid)?.managed != nil
                    log.append(e)
                }
                resume(tid, deliver)
            }
        }
    }

    func proc(_ tid: Int32) -> Proc? { threads[tid].flatMap { procs[$0] } }

    func needsUpgrade(_ tid: Int32) -> Bool {
        guard let p = proc(tid) else { return false }
        return (p.managed != nil || p.isolated != nil) && !p.upgraded
    }

    /// Resumes a tracee; with PTRACE_SYSCALL when its exit stop is wanted.
    func resume(_ tid: Int32, _ sig: Int32 = 0) {
        if pending[tid] != nil || needsUpgrade(tid) { Ptrace.syscall(tid, sig) } else { Ptrace.cont(tid, sig) }
    }

    private func onGone(_ tid: Int32, _ status: Int32) {
        pending[tid] = nil
        heldNew.remove(tid)
        guard let pid = threads.removeValue(forKey: tid) else { return }
        let code: Int32 = ckt_wifexited(status) != 0 ? ckt_wexitstatus(status) : 128 + ckt_wtermsig(status)
        if tid == rootPid { rootExit = code }
        // The thread-group leader's exit is the process's exit.
        if tid == pid, let p = procs[pid] {
            p.alive = false
            var e = TraceEvent(kind: .exit)
            e.pid = pid; e.tid = tid; e.ret = Int64(code)
            if ckt_wifsignaled(status) != 0 { e.flags = "killed by signal \(ckt_wtermsig(status))" }
            e.managed = p.managed != nil
            log.append(e)
            summary.setExit(pid: pid, code: code)
            // New tracees whose fork event will not come now (their parent died inside fork).
            for h in heldNew { adopt(h) }
            if !threads.values.contains(pid) { procs[pid] = nil }
        } else if !threads.values.contains(pid) {
            procs[pid]?.alive = false
            procs[pid] = nil
        }
    }

    /// Takes in a held new tracee without its parent's fork event, from /proc (fail closed:
    /// it is managed if its parent was).
    private func adopt(_ tid: Int32) {
        fdEpoch &+= 1
        heldNew.remove(tid)
        let status = (try? String(contentsOfFile: "/proc/\(tid)/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int32? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .flatMap { Int32($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)) }
        }
        let tgid = field("Tgid") ?? tid, ppid = field("PPid") ?? 0
        if tgid != tid, procs[tgid] != nil {
            threads[tid] = tgid
        } else {
            let parent = procs[ppid]
            let p = Proc(pid: tid, parent: ppid, argv: parent?.argv ?? ["?"], fds: FdTable(pid: tid))
            if let m = parent?.managed { p.managed = m; p.upgraded = parent!.upgraded }
            if let cut = parent?.isolated { p.isolated = cut; p.upgraded = parent!.upgraded }
            procs[tid] = p
            threads[tid] = tid
            summary.addProcess(pid: tid, parent: ppid, argv: p.argv)
            if let cut = p.isolated { summary.networkCut(pid: tid, why: cut) }
        }
        if needsUpgrade(tid) { upgrade(tid, at: .stop) }
        resume(tid)
    }

    private func onFork(_ tid: Int32, _ event: Int32) {
        fdEpoch &+= 1
        let child = Int32(truncatingIfNeeded: Ptrace.eventMessage(tid))
        guard let parent = proc(tid), child > 0 else { resume(tid); return }
        var isThread = false
        var shareFiles = false
        if event == Ptrace.eventClone, let r = Ptrace.regs(tid) {
            var flags: UInt64 = r.rdi
            if r.nr == SC.clone3 { flags = Ptrace.readU64(tid, r.rdi) ?? 0 }
            isThread = flags & 0x10000 != 0  // CLONE_THREAD
            shareFiles = flags & 0x400 != 0  // CLONE_FILES
        }
        if isThread {
            threads[child] = parent.pid
            var e = TraceEvent(kind: .thread)
            e.pid = parent.pid; e.tid = tid; e.child = child; e.managed = parent.managed != nil
            log.append(e)
        } else {
            let p = Proc(pid: child, parent: parent.pid, argv: parent.argv,
                         fds: shareFiles ? parent.fds : FdTable(pid: child, copying: parent.fds))
            if let m = parent.managed {
                p.managed = ManagedReason(seq: m.seq, time: Clock.nowNs(), why: ManagedSet.childReason(parent: parent.pid, exe: parent.exe))
                p.upgraded = parent.upgraded
                managedSet.processes.append(.init(pid: child, exe: p.exe, reason: p.managed!))
            }
            if let cut = parent.isolated {
                p.isolated = cut
                p.upgraded = parent.upgraded
            }
            procs[child] = p
            threads[child] = child
            summary.addProcess(pid: child, parent: parent.pid, argv: parent.argv)
            if let cut = p.isolated { summary.networkCut(pid: child, why: cut) }
            var e = TraceEvent(kind: .spawn)
            e.pid = parent.pid; e.tid = tid; e.child = child
            e.call = event == Ptrace.eventVfork ? "vfork" : event == Ptrace.eventFork ? "fork" : "clone"
            e.managed = parent.managed != nil
            if let m = p.managed { e.reason = m.why }
            log.append(e)
        }
        if heldNew.remove(child) != nil {
            if needsUpgrade(child) { upgrade(child, at: .stop) }
            resume(child)
        } else {
            expectedNew.insert(child)
        }
        resume(tid)
    }

    private func onExec(_ tid: Int32) {
        // The exec'ing thread takes over the thread-group id; the former tid is in the event message.
        let former = Int32(truncatingIfNeeded: Ptrace.eventMessage(tid))
        if former != tid, let call = pending.removeValue(forKey: former) {
            pending[tid] = call
            threads[former] = nil
        }
        if let p = proc(tid) {
            p.fds.reset()
            if let call = pending[tid] { p.argv = call.argv ?? p.argv }
        }
        resume(tid)
    }
}
