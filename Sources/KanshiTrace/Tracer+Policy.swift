import CKanshiTrace
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The managed set at work: who becomes managed, what carries it, what is refused.
extension Tracer {
    /// Makes a process managed (its threads too). The stricter filter is
    /// installed at its next stop that allows it — at once when the caller is at an exit stop.
    func makeManaged(_ p: Proc, why: String, seq: UInt64) {
        guard p.managed == nil else { return }
        var e = TraceEvent(kind: .managed)
        e.pid = p.pid; e.tid = p.pid; e.managed = true; e.reason = why
        let own = log.append(e)
        let reason = ManagedReason(seq: seq == 0 ? own : seq, time: Clock.nowNs(), why: why)
        p.managed = reason
        managedSet.processes.append(.init(pid: p.pid, exe: p.exe, reason: reason))
        summary.managedProcess(pid: p.pid, why: why)
        logger.debug("pid \(p.pid) managed: \(why)")
    }

    /// Makes a running process managed and installs its filter before returning
    /// (so the data that made it managed cannot reach it first).
    func makeManagedNow(_ pid: Int32, why: String) {
        guard let p = procs[pid], p.alive, p.managed == nil else { return }
        makeManaged(p, why: why, seq: 0)
        installStricterFilterNow(p)
    }

    /// Interrupts the process's threads and installs the stricter filter (managed, or network
    /// cut) at the first stop that allows it, before returning.
    func installStricterFilterNow(_ p: Proc) {
        let pid = p.pid
        guard !p.upgraded else { return }
        let tids = threads.filter { $0.value == pid }.map(\.key).sorted()
        // A held new tracee is stopped already; it is upgraded when released.
        if tids.contains(where: { heldNew.contains($0) }) { return }
        for t in tids { _ = Ptrace.interrupt(t) }
        // Wait (up to 2 s) for a stop of the process where the filter can be installed. A thread that
        // does not stop by then is in an uninterruptible wait (a vfork parent): its interrupt stays
        // pending and it stops — and is upgraded by the main loop — before it runs any instruction.
        let deadline = Clock.nowNs() + 2_000_000_000
        var waitOn = tids
        while let t = waitOn.first, p.alive, !p.upgraded, Clock.nowNs() < deadline {
            guard threads[t] != nil else { waitOn.removeFirst(); continue }
            if let (tid, status) = Ptrace.poll(t) { handle(tid, status) } else { usleep(50) }
        }
    }

    /// A file becomes managed because a managed process wrote (created, renamed, linked) it.
    func markFile(_ path: String, _ p: Proc, how: String) {
        guard managedSet.canManage(path) else { return }
        let why = ManagedSet.fileReason(how, pid: p.pid, exe: p.exe, managedAt: p.managed?.seq)
        var e = TraceEvent(kind: .managed)
        e.pid = p.pid; e.tid = p.pid; e.path = path; e.managed = p.managed != nil; e.reason = why
        let seq = log.append(e)
        _ = managedSet.addFile(path, ManagedReason(seq: seq, time: Clock.nowNs(), why: why))
        // A shared file carries the taint: other traced processes that have it open for reading
        // already (reads do not stop the tracer) become managed now.
        carry(from: p, link: path, readersOnly: true)
    }

    /// Data written by a managed process into a pipe or Unix socket makes every
    /// other traced process holding the other end managed.
    func carry(from p: Proc, link: String, readersOnly: Bool = false) {
        // A stream of writes into the same pipe scans its holders once until descriptors change.
        let key = "\(p.pid) \(link)"
        if carriedAt[key] == fdEpoch { return }
        carriedAt[key] = fdEpoch
        let holders = procs.values.filter { $0.alive && $0.pid != p.pid && $0.managed == nil && holds($0.pid, link, readersOnly) }
        for h in holders {
            let how = readersOnly ? ManagedSet.sharedFileReason(link, writer: p.pid, exe: p.exe)
                                  : ManagedSet.channelReason(link, writer: p.pid, exe: p.exe)
            makeManagedNow(h.pid, why: how)
        }
    }

    private func holds(_ pid: Int32, _ link: String, _ readersOnly: Bool) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return false }
        return names.contains { fd in
            guard Ptrace.link("/proc/\(pid)/fd/\(fd)") == link else { return false }
            guard readersOnly else { return true }
            // /proc/PID/fdinfo/FD "flags:" is octal; access mode O_WRONLY (1) cannot read.
            guard let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8),
                  let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") }),
                  let flags = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces), radix: 8) else { return true }
            return flags & 3 != 1
        }
    }

    /// For a managed process at a seccomp stop: why the call must be refused, or nil.
    func egressCheck(_ tid: Int32, _ p: Proc, _ r: ckt_regs) -> String? {
        switch r.nr {
        case SC.connect:
            guard let a = readSockaddr(tid, r.arg(1), r.arg(2)) else { return nil }
            return a.isExternal(loopbackExternal: options.loopbackExternal) ? "connect to \(a) (off the machine)" : nil
        case SC.sendto:
            return socketCheck(tid, p, r.argFd(0), explicit: readSockaddr(tid, r.arg(4), r.arg(5)))
        case SC.sendmsg:
            return socketCheck(tid, p, r.argFd(0), explicit: msgName(tid, r.arg(1)))
        case SC.sendmmsg:
            var first: SocketAddress?
            for i in 0..<min(r.arg(2), 1024) {
                guard let a = msgName(tid, r.arg(1) + i * 64) else { continue }
                if a.isExternal(loopbackExternal: options.loopbackExternal) { return "sendmmsg to \(a) (off the machine)" }
                if first == nil { first = a }
            }
            return socketCheck(tid, p, r.argFd(0), explicit: first)
        case _ where SC.writes.contains(r.nr), SC.sendfile, SC.vmsplice:
            return fdCheck(tid, p, r.argFd(0))
        case SC.splice, SC.copyFileRange:
            return fdCheck(tid, p, r.argFd(2))
        case SC.tee:
            return fdCheck(tid, p, r.argFd(1))
        default:
            return nil
        }
    }

    private func fdCheck(_ tid: Int32, _ p: Proc, _ fd: Int32) -> String? {
        guard let info = p.fds.lookup(fd) else { return nil }
        switch info.kind {
        case .file: markFile(info.name, p, how: "written"); return nil
        case .pipe: carry(from: p, link: info.name); return nil
        case .socket: return socketCheck(tid, p, fd, explicit: nil)
        case .other: return nil
        }
    }

    /// Looks at the socket itself (a duplicate taken with pidfd_getfd): Unix
    /// sockets carry the taint to their peer; Internet sockets to a non-local
    /// address are refused; anything that cannot be inspected is refused.
    private func socketCheck(_ tid: Int32, _ p: Proc, _ fd: Int32, explicit: SocketAddress?) -> String? {
        let family: Int32, type: Int32, peer: [UInt8]?
        switch inspectSocket(p, fd) {
        case .none: return nil
        case .uninspectable(let why): return why
        case .socket(let f, let t, let connectedPeer): family = f; type = t; peer = connectedPeer
        }
        switch family {
        case 1:
            let ino = p.fds.lookup(fd)?.inode ?? 0
            let peerIno = ino == 0 ? 0 : ckt_unix_peer_inode(ino)
            if peerIno > 0 { carry(from: p, link: "socket:[\(peerIno)]") }
            return nil
        case 16:
            return nil
        case 2, 10:
            return inetCheck(fd, type: type, explicit: explicit, peer: peer)
        default:
            return "send on a socket of family \(family) (not inspected; refused, fail closed)"
        }
    }

    enum SocketLook {
        /// No descriptor, or not a socket.
        case none
        /// Could not be looked at (why, for a refusal: fail closed).
        case uninspectable(String)
        /// Its family, type and, when connected, its peer's address bytes.
        case socket(family: Int32, type: Int32, peer: [UInt8]?)
    }

    /// Looks at a traced process's socket through a duplicate taken with pidfd_getfd.
    func inspectSocket(_ p: Proc, _ fd: Int32) -> SocketLook {
        let local = ckt_steal_fd(p.pid, fd)  // pidfd_open wants the thread-group leader
        if local == -EBADF { return .none }
        guard local >= 0 else { return .uninspectable("socket fd \(fd) could not be inspected (errno \(-local)); refused, fail closed") }
        var family: Int32 = 0, type: Int32 = 0, connected: Int32 = 0
        var peer = [UInt8](repeating: 0, count: 128)
        var peerLen: UInt32 = 128
        let rc = ckt_socket_info(local, &family, &type, &peer, &peerLen, &connected)
        Glibc.close(local)
        if rc == -ENOTSOCK { return .none }
        guard rc == 0 else { return .uninspectable("socket fd \(fd) could not be inspected (errno \(-rc)); refused, fail closed") }
        return .socket(family: family, type: type, peer: connected != 0 ? Array(peer[0..<Int(peerLen)]) : nil)
    }

    /// Where an Internet socket's data goes. A stream socket sends to its connected peer whatever
    /// address the call names (TCP ignores it), so only the peer counts, and one that is not
    /// connected (or still connecting) cannot be judged: refused. A datagram (or raw) socket sends
    /// to the address the call names, else to its peer: each that is there is judged.
    private func inetCheck(_ fd: Int32, type: Int32, explicit: SocketAddress?, peer: [UInt8]?) -> String? {
        let external = options.loopbackExternal
        if type == Int32(SOCK_STREAM.rawValue) {
            guard let peer else {
                return "stream socket fd \(fd) is not connected (or still connecting): its peer cannot be judged; refused, fail closed"
            }
            guard let a = SocketAddress(bytes: peer) else {
                return "stream socket fd \(fd): peer address not understood; refused, fail closed"
            }
            return a.isExternal(loopbackExternal: external) ? "send to \(a) (the socket's peer, off the machine)" : nil
        }
        if let explicit, explicit.isExternal(loopbackExternal: external) { return "send to \(explicit) (off the machine)" }
        if let peer {
            guard let a = SocketAddress(bytes: peer) else {
                return "socket fd \(fd): peer address not understood; refused, fail closed"
            }
            if a.isExternal(loopbackExternal: external) { return "send to \(a) (the socket's peer, off the machine)" }
        }
        return nil  // no address and no peer: the kernel refuses it anyway
    }

    /// Refuses the call at its seccomp stop: the call is skipped and returns -errno.
    /// `path` names what the call is about when its first argument is not a descriptor.
    func deny(_ tid: Int32, _ p: Proc, _ r: ckt_regs, _ why: String, path: String? = nil, fdArgument: Bool = true, because: String? = nil) {
        var regs = r
        regs.orig_rax = UInt64.max
        regs.rax = UInt64(bitPattern: -Int64(options.denyErrno))
        Ptrace.setRegs(tid, regs)
        var e = event(.blocked, tid, p, r.nr)
        if !fdArgument {
            e.path = path
        } else {
            e.fd = r.argFd(0)
            e.path = p.fds.lookup(r.argFd(0))?.name
        }
        e.blocked = true
        e.ret = -Int64(options.denyErrno)
        e.reason = "\(why); \(because ?? "process managed because: \(p.managed?.why ?? "?")")"
        log.append(e)
        summary.blocked(pid: p.pid, exe: p.exe, call: SC.name(r.nr), why: e.reason!)
        if needsUpgrade(tid) {
            var call = PendingCall(nr: r.nr, regs: r)
            call.denied = true
            pending[tid] = call
        }
        resume(tid)
    }
}
