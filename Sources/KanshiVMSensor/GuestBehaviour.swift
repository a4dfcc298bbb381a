import KanshiTrace

/// What the VM sensor watches and how.
public struct GuestBehaviourOptions: Sendable {
    /// The VM's name in every event.
    public var vm = "sandbox"
    /// Guest paths whose readers become managed (files, or directories for everything under them).
    public var protect: [String] = []
    /// Log every system call (`call` events, reads and writes of every process), as strace would.
    public var allCalls = false
    /// Treat the guest's loopback as off the machine.
    public var loopbackExternal = false
    /// While managed processes run, drop frames no process explains (the VM's network, `--net`).
    public var failClosed = true
    public init() {}
}

/// The behaviour model of one VM: pairs the plugin's entries and returns,
/// keeps the guest's processes and descriptor tables, writes the behaviour
/// log (the same JSON lines as `kanshi trace`, plus `vm`) and keeps the
/// managed set by the same rules as the host sensor: reading a protected or
/// managed file makes a process managed; a file it writes, truncates, maps
/// shared-writable, renames or links becomes managed; fork and exec carry it;
/// data it writes into a pipe or socket pair makes every other holder managed.
///
/// Not thread-safe: one consumer thread feeds it.
public final class GuestBehaviour {
    let options: GuestBehaviourOptions
    let log: EventLog
    public internal(set) var managedSet: ManagedSet
    public internal(set) var summary = TraceSummary()
    var procs: [Int32: GuestProcess] = [:]
    /// Entries waiting for their return, by cookie; and the cookie each thread waits on.
    var inflight: [UInt64: GuestEntry] = [:]
    var waiting: [Int32: UInt64] = [:]
    /// The newest entry, kept out of those tables: its return is usually the next record.
    var held: GuestEntry?
    var nextObject: UInt64 = 1
    /// Calls whose return never came (exec, signals) and were completed without a result.
    public internal(set) var unreturned: UInt64 = 0
    /// Network sends and connects off the machine by managed processes (cut at the VM's NIC, not here).
    public internal(set) var egressAttempts: [String] = []
    /// Events logged.
    public internal(set) var events: UInt64 = 0
    /// Socket objects by the destinations they connected or sent to.
    var socketsTo: [FlowKey: Set<String>] = [:]
    /// Sockets managed processes closed or held when they ended.
    var retired: [String: RetiredSocket] = [:]
    /// Connections (destination, source port) pinned to their sockets, and those blocked for good.
    var connections: [ConnectionKey: Set<String>] = [:]
    var blockedConnections: [ConnectionKey: (pid: Int32, why: String)] = [:]
    /// TCP sockets already pinned to a connection, and when each socket last sent (entry of the call).
    var pinned: Set<String> = []
    var lastSend: [String: UInt64] = [:]
    /// Frames dropped at the NIC, by process and destination.
    public internal(set) var droppedFrames: [String: UInt64] = [:]

    public init(options: GuestBehaviourOptions, log: EventLog, managed: ManagedSet) {
        self.options = options
        self.log = log
        var set = managed
        for p in options.protect.map({ ManagedSet.normalize($0, cwd: "/") }) where !set.protected.contains(p) { set.protected.append(p) }
        self.managedSet = set
    }

    /// Takes one record of the ring, in ring order.
    public func consume(_ record: GuestRecord) {
        switch record {
        case .entry(let e): entry(e)
        case .ret(let r): ret(r)
        case .call(let e, let r): call(e, ret: r)
        case .taskExit(let t, let who, let code): taskExit(t, who, code)
        case .calibrated(let t, let slide):
            var e = TraceEvent(kind: .notice)
            e.time = t
            e.vm = options.vm
            e.reason = "VM sensor: guest kernel found (KASLR slide 0x\(String(slide, radix: 16))); every system call is watched from here on"
            append(e)
        case .execSample(let t, let pageTable, let ip, _):
            execution.add(timeNs: t, pageTable: pageTable, ip: ip)
        case .pad: break
        }
    }

    /// User code sampled while running (exec sampling), per window.
    public internal(set) var execution = ExecutionSamples()

    /// Completes calls still waiting (the VM stopped) and returns the summary and the managed set.
    public func finish() -> (TraceSummary, ManagedSet) {
        release()
        for cookie in inflight.keys.sorted() {
            if let e = inflight.removeValue(forKey: cookie) { complete(e, ret: nil, items: [], time: e.timeNs) }
        }
        summary.managedFiles = managedSet.files.values.map { ($0.path, $0.reason.why) }.sorted { $0.0 < $1.0 }
        return (summary, managedSet)
    }

    // MARK: records

    /// Puts the held entry into the tables of entries waiting for their return.
    private func release() {
        guard let h = held else { return }
        held = nil
        inflight[h.cookie] = h
        waiting[h.who.tid] = h.cookie
    }

    /// A new call of `e`'s thread: the thread's earlier call, if still waiting, returned a way the
    /// plugin does not hook (a successful exec, a signal handler) and is completed without a
    /// result. Returns the caller's process.
    private func begin(_ e: GuestEntry) -> GuestProcess {
        if let h = held, h.who.tid == e.who.tid {
            held = nil
            unreturned += 1
            complete(h, ret: nil, items: [], time: e.timeNs)
        }
        release()
        if let old = waiting.removeValue(forKey: e.who.tid), let earlier = inflight.removeValue(forKey: old) {
            unreturned += 1
            complete(earlier, ret: nil, items: [], time: e.timeNs)
        }
        let p = process(e.who, time: e.timeNs)
        if p.comm != e.who.comm { p.comm = e.who.comm }
        return p
    }

    private func entry(_ e: GuestEntry) {
        let p = begin(e)
        let nr = e.x86_64Number
        if nr == GuestCalls.exitGroup || nr == GuestCalls.exit || nr == GuestCalls.rtSigreturn || (e.i386 && e.nr == 119) {
            if options.allCalls { logCall(e, p, ret: nil) }
            return
        }
        learnEgress(e, p)
        carryAtEntry(e, p)
        held = e
    }

    /// A whole call (entry and return in one record).
    private func call(_ e: GuestEntry, ret r: Int64) {
        _ = begin(e)
        complete(e, ret: r, items: [], time: e.timeNs)
    }

    private func ret(_ r: GuestReturn) {
        if let h = held, h.cookie == r.cookie {
            held = nil
            complete(h, ret: r.ret, items: r.items, time: h.timeNs)
            return
        }
        release()
        guard let e = inflight.removeValue(forKey: r.cookie) else { return }
        if waiting[e.who.tid] == r.cookie { waiting[e.who.tid] = nil }
        complete(e, ret: r.ret, items: r.items, time: e.timeNs)
    }

    private func taskExit(_ time: UInt64, _ who: GuestIdentity, _ code: Int64) {
        release()
        if let old = waiting.removeValue(forKey: who.tid), let earlier = inflight.removeValue(forKey: old) {
            complete(earlier, ret: nil, items: [], time: time)
        }
        guard who.tid == who.pid, let p = procs[who.pid], p.alive else { return }
        retireSockets(of: p, time: time)
        // Files written through descriptors the exit closes: their close, as the kernel does it.
        for (fd, f) in p.fds.fds.sorted(by: { $0.key < $1.key }) { implicitClose(p, fd: fd, f, call: "exit", tid: who.tid, time: time) }
        p.alive = false
        let signal = Int32(code & 0x7f)
        let status: Int32 = signal != 0 ? 128 + signal : Int32((code >> 8) & 0xff)
        var ev = event(.exit, p, tid: who.tid, time: time, call: nil)
        ev.ret = Int64(status)
        if signal != 0 { ev.flags = "killed by signal \(signal)" }
        append(ev)
        summary.setExit(pid: p.pid, code: status)
    }

    /// A descriptor the kernel closes without a close call (at exit, under dup2): when a file was
    /// written through it, its close event with the bytes and their entropy.
    func implicitClose(_ p: GuestProcess, fd: Int32, _ f: GuestFile, call: String, tid: Int32, time: UInt64) {
        guard f.kind == .file, f.written > 0 else { return }
        // Not a call of its own: no "call" field (the log's calls stay strace's), the reason says which did it.
        var c = event(.close, p, tid: tid, time: time, call: nil)
        c.reason = "closed by \(call)"
        c.fd = fd; c.path = f.name; c.bytes = f.written
        if f.entropyBytes > 0 { c.entropy = f.entropyWeighted / Double(f.entropyBytes) }
        append(c)
        p.fds.fds[fd]?.written = 0
    }

    // MARK: processes

    /// The process of `who`, made from its parent when first seen.
    func process(_ who: GuestIdentity, time: UInt64) -> GuestProcess {
        if let p = procs[who.pid], p.alive { return p }
        return adopt(pid: who.pid, ppid: who.ppid, comm: who.comm, time: time, sharedFiles: false, seenFirst: true)
    }

    @discardableResult
    func adopt(pid: Int32, ppid: Int32, comm: String, time: UInt64, sharedFiles: Bool, seenFirst: Bool) -> GuestProcess {
        let parent = procs[ppid].flatMap { $0.alive ? $0 : nil }
        let fds = parent.map { sharedFiles ? $0.fds : GuestFdTable(copying: $0.fds) } ?? GuestFdTable()
        let cwd = parent?.cwd ?? (pid == 1 ? "/" : nil)
        let p = GuestProcess(pid: pid, ppid: ppid, comm: comm, argv: parent?.argv ?? [comm], cwd: cwd, fds: fds)
        procs[pid] = p
        summary.addProcess(pid: pid, parent: ppid, argv: p.argv)
        if let parent, let m = parent.managed {
            // Fail closed: a child of a managed process is managed from its first instruction.
            p.managed = ManagedReason(seq: m.seq, time: time, why: ManagedSet.childReason(parent: parent.pid, exe: parent.exe))
            managedSet.processes.append(.init(pid: pid, exe: p.exe, reason: p.managed!))
            summary.managedProcess(pid: pid, why: p.managed!.why)
        }
        if seenFirst && parent == nil {
            // A process whose creation the sensor did not see (it ran before the sensor found the kernel).
            var ev = event(.spawn, p, tid: pid, time: time, call: nil)
            ev.pid = ppid; ev.child = pid; ev.argv = [comm]
            append(ev)
            p.announced = true
        }
        return p
    }

    // MARK: managed set

    func makeManaged(_ p: GuestProcess, why: String, seq: UInt64, time: UInt64) {
        guard p.managed == nil else { return }
        var ev = event(.managed, p, tid: p.pid, time: time, call: nil)
        ev.managed = true
        ev.reason = why
        let own = append(ev)
        let reason = ManagedReason(seq: seq == 0 ? own : seq, time: time, why: why)
        p.managed = reason
        managedSet.processes.append(.init(pid: p.pid, exe: p.exe, reason: reason))
        summary.managedProcess(pid: p.pid, why: why)
    }

    func markFile(_ path: String, _ p: GuestProcess, how: String, time: UInt64) {
        guard managedSet.canManage(path) else { return }
        let why = ManagedSet.fileReason(how, pid: p.pid, exe: p.exe, managedAt: p.managed?.seq)
        var ev = event(.managed, p, tid: p.pid, time: time, call: nil)
        ev.path = path
        ev.reason = why
        let seq = append(ev)
        _ = managedSet.addFile(path, ManagedReason(seq: seq, time: time, why: why))
        // Other processes reading the file already carry the taint now.
        for h in procs.values where h.alive && h !== p && h.managed == nil {
            if h.fds.fds.values.contains(where: { $0.kind == .file && $0.name == path && $0.readable }) {
                makeManaged(h, why: ManagedSet.sharedFileReason(path, writer: p.pid, exe: p.exe), seq: 0, time: time)
            }
        }
    }

    /// A managed process's data reaches the pipe, socket or file while its call runs, before the
    /// call's return is read: a reader on another vCPU (or scheduled before the writer's return)
    /// could take it and send it first. So the destination carries the taint from the call's
    /// entry, as the host sensor does at its seccomp stop; the return only confirms it.
    func carryAtEntry(_ e: GuestEntry, _ p: GuestProcess) {
        guard p.managed != nil, let (nr, fd) = destination(of: e), nr != GuestCalls.connect, let f = p.fds.fds[fd] else { return }
        if f.kind == .file { markFile(f.name, p, how: "written", time: e.timeNs) } else { carry(from: p, through: f, time: e.timeNs) }
    }

    /// The call (x86_64 number) and the descriptor it puts data into, for calls that write, send
    /// or connect (i386's socketcall decoded).
    func destination(of e: GuestEntry) -> (nr: Int64, fd: Int32)? {
        let (number, args) = e.decoded
        guard let nr = number else { return nil }
        let fd: UInt64
        switch nr {
        case GuestCalls.splice, GuestCalls.copyFileRange: fd = args[2]
        case GuestCalls.tee: fd = args[1]
        case _ where GuestCalls.writes.contains(nr) || GuestCalls.addressed.contains(nr) || GuestCalls.transfers.contains(nr),
             GuestCalls.vmsplice: fd = args[0]
        default: return nil
        }
        return (nr, Int32(truncatingIfNeeded: fd))
    }

    /// Data written by a managed process into a pipe or socket makes the other holders managed.
    func carry(from p: GuestProcess, through file: GuestFile, time: UInt64) {
        guard file.kind != .file else { return }
        for h in procs.values where h.alive && h !== p && h.managed == nil && h.fds !== p.fds {
            if h.fds.fds.values.contains(where: { $0.name == file.name }) {
                makeManaged(h, why: ManagedSet.channelReason(file.name, writer: p.pid, exe: p.exe), seq: 0, time: time)
            }
        }
    }

    func newObject(_ kind: GuestFile.Kind) -> String {
        defer { nextObject += 1 }
        return kind == .pipe ? "pipe:[vm:\(nextObject)]" : "socket:[vm:\(nextObject)]"
    }

    // MARK: events

    func event(_ kind: TraceEvent.Kind, _ p: GuestProcess, tid: Int32, time: UInt64, call: String?) -> TraceEvent {
        var ev = TraceEvent(kind: kind)
        ev.time = time
        ev.pid = p.pid
        ev.tid = tid
        ev.call = call
        ev.managed = p.managed != nil
        ev.vm = options.vm
        return ev
    }

    @discardableResult
    func append(_ ev: consuming TraceEvent) -> UInt64 {
        events += 1
        return log.append(ev)
    }

    func noteEgress(_ p: GuestProcess, _ what: String) {
        egressAttempts.append("pid \(p.pid) (\(p.exe)): \(what)")
    }
}
