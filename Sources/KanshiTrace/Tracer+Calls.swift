import CKanshiTrace
#if canImport(Glibc)
import Glibc
#endif

/// Decoding of calls at their seccomp (entry) and exit stops.
extension Tracer {
    func onEntry(_ tid: Int32) {
        guard let r = Ptrace.regs(tid), let p = proc(tid) else { resume(tid); return }
        let nr = r.nr
        if let cut = p.isolated, let refusal = networkCutCheck(tid, p, r) {
            deny(tid, p, r, refusal, because: "network cut: \(cut)")
            return
        }
        if p.managed != nil, let refusal = egressCheck(tid, p, r) {
            deny(tid, p, r, refusal)
            return
        }
        if p.managed != nil, let refusal = memoryWriteCheck(tid, p, r) {
            deny(tid, p, r, refusal.why, path: refusal.path, fdArgument: false)
            return
        }
        var call = PendingCall(nr: nr, regs: r)
        var wantExit = true
        switch nr {
        case SC.open, SC.creat, SC.openat, SC.openat2:
            break  // the path is read at the exit stop: from /proc for a new descriptor, from memory on failure
        case SC.close:
            wantExit = false
            let fd = r.argFd(0)
            if let info = p.fds.lookup(fd) {
                var e = event(.close, tid, p, nr)
                e.fd = fd; e.path = info.name
                log.append(e)
            }
            p.fds.remove(fd)
        case SC.execve:
            call.path = resolvePath(tid, -100, r.arg(0)); call.argv = readArgv(tid, r.arg(1))
        case SC.execveat:
            call.path = resolvePath(tid, r.argFd(0), r.arg(1)); call.argv = readArgv(tid, r.arg(2))
        case SC.rename, SC.link:
            call.path = resolvePath(tid, -100, r.arg(0)); call.path2 = resolvePath(tid, -100, r.arg(1))
        case SC.renameat, SC.renameat2, SC.linkat:
            call.path = resolvePath(tid, r.argFd(0), r.arg(1)); call.path2 = resolvePath(tid, r.argFd(2), r.arg(3))
        case SC.symlink:
            call.path = Ptrace.readString(tid, r.arg(0)); call.path2 = resolvePath(tid, -100, r.arg(1))
        case SC.symlinkat:
            call.path = Ptrace.readString(tid, r.arg(0)); call.path2 = resolvePath(tid, r.argFd(1), r.arg(2))
        case SC.utime, SC.utimes:
            call.path = resolvePath(tid, -100, r.arg(0)); call.times = fileTimes(tid, nr, r.arg(1))
        case SC.futimesat, SC.utimensat:
            // utimensat with no path (futimens) is about the descriptor itself.
            call.path = r.arg(1) == 0 ? p.fds.name(r.argFd(0)) : resolvePath(tid, r.argFd(0), r.arg(1))
            call.times = fileTimes(tid, nr, r.arg(2))
        case SC.unlink, SC.rmdir, SC.truncate: call.path = resolvePath(tid, -100, r.arg(0))
        case SC.unlinkat: call.path = resolvePath(tid, r.argFd(0), r.arg(1))
        case SC.connect, SC.bind: call.path2 = readSockaddr(tid, r.arg(1), r.arg(2))?.text
        case SC.sendto: call.path2 = readSockaddr(tid, r.arg(4), r.arg(5))?.text
        case SC.sendmsg: call.path2 = msgName(tid, r.arg(1))?.text
        case SC.mmap:
            wantExit = false
            let fd = r.argFd(4)
            if let info = p.fds.lookup(fd) {
                var e = event(.mmap, tid, p, nr)
                e.fd = fd; e.path = info.name; e.bytes = r.argInt(1)
                let prot = r.arg(2), flags = r.arg(3)
                e.flags = (prot & 1 != 0 ? "r" : "-") + (prot & 2 != 0 ? "w" : "-") + (prot & 4 != 0 ? "x" : "-") + (flags & 1 != 0 ? " shared" : " private")
                log.append(e)
                if p.managed != nil && prot & 2 != 0 && flags & 1 != 0 && info.kind == .file {
                    markFile(info.name, p, how: "mapped shared and writable")
                }
            }
        case _ where SC.writes.contains(nr) && !options.traceAllIO:
            // A managed process's write (it passed egressCheck): one stop, not two. `bytes` is the
            // requested count (flags "requested"); --all-io stops at the exit too for the exact count.
            wantExit = false
            let fd = r.argFd(0)
            var e = event(.write, tid, p, nr)
            e.fd = fd
            e.path = p.fds.lookup(fd)?.name
            e.flags = "requested"
            if nr == SC.write || nr == SC.pwrite64 {
                e.bytes = r.argInt(2)
            } else if let iov = Ptrace.readBytes(tid, r.arg(1), Int(min(r.arg(2), 1024)) * 16) {
                e.bytes = iov.withUnsafeBytes { b in
                    (0..<iov.count / 16).reduce(Int64(0)) { $0 &+ Int64(bitPattern: b.loadUnaligned(fromByteOffset: $1 * 16 + 8, as: UInt64.self)) }
                }
            }
            if let path = e.path, path.hasPrefix("/") { summary.wrote(path) }
            log.append(e)
        case SC.fcntl:
            // Only F_DUPFD and F_DUPFD_CLOEXEC make descriptors.
            wantExit = r.arg(1) == 0 || r.arg(1) == 1030
        default: break
        }
        if wantExit { pending[tid] = call }
        resume(tid)
    }

    func onExit(_ tid: Int32) {
        guard let call = pending.removeValue(forKey: tid) else {
            if needsUpgrade(tid) { upgrade(tid, at: .exit) }
            resume(tid)
            return
        }
        if !call.denied, let p = proc(tid), let r = Ptrace.regs(tid) {
            finish(tid, p, call, r.result)
        }
        if needsUpgrade(tid) { upgrade(tid, at: .exit) }
        resume(tid)
    }

    func event(_ kind: TraceEvent.Kind, _ tid: Int32, _ p: Proc, _ nr: Int64) -> TraceEvent {
        var e = TraceEvent(kind: kind)
        e.pid = p.pid; e.tid = tid; e.call = SC.name(nr); e.managed = p.managed != nil
        return e
    }

    private func finish(_ tid: Int32, _ p: Proc, _ call: PendingCall, _ ret: Int64) {
        let r = call.regs, nr = call.nr
        if ret >= 0 { fdEpoch &+= 1 }  // (over-counts: any successful traced call)
        var e = event(.notice, tid, p, nr)
        e.ret = ret
        switch nr {
        case SC.open, SC.openat, SC.creat, SC.openat2:
            var flags: UInt64
            switch nr {
            case SC.open: flags = r.arg(1)
            case SC.creat: flags = 0o1101
            case SC.openat: flags = r.arg(2)
            default: flags = Ptrace.readU64(tid, r.arg(2)) ?? 0
            }
            let acc = flags & 3, creat = flags & 0o100 != 0, trunc = flags & 0o1000 != 0
            let readable = acc == 0 || acc == 2, writable = acc == 1 || acc == 2 || trunc
            e.kind = .open
            e.flags = (acc == 0 ? "r" : acc == 1 ? "w" : "rw") + (creat ? ",creat" : "") + (trunc ? ",trunc" : "") + (flags & 0o10000000 != 0 ? ",path" : "")
            if ret < 0 {
                e.path = nr == SC.open || nr == SC.creat ? resolvePath(tid, -100, r.arg(0)) : resolvePath(tid, r.argFd(0), r.arg(1))
            } else {
                let fd = Int32(ret)
                let info = p.fds.refresh(fd)
                if let info { e.path = info.name }
                e.fd = fd
                if p.managed != nil, let info, info.kind == .file,
                   killIfForeignMemory(tid, p, fd: fd, path: info.name, writable: acc != 0) { return }
                if let path = e.path, info?.kind == .file, flags & 0o10000000 == 0 {
                    summary.opened(path, read: readable, write: writable)
                    if p.managed == nil, readable, let why = managedSet.taint(of: path) {
                        let seq = log.append(e)
                        makeManaged(p, why: why, seq: seq)
                        return
                    }
                    if p.managed != nil && (writable || creat) { markFile(path, p, how: creat ? "created or opened for writing" : "opened for writing") }
                }
            }
        case SC.dup, SC.dup2, SC.dup3, SC.fcntl:
            e.kind = .dup
            e.fd = r.argFd(0)
            if ret >= 0 {
                e.fd2 = Int32(ret)
                if let info = p.fds.lookup(r.argFd(0)) { p.fds.set(Int32(ret), info); e.path = info.name }
            }
        case SC.pipe, SC.pipe2, SC.socketpair:
            e.kind = nr == SC.socketpair ? .socket : .pipe
            if ret == 0, let (a, b) = Ptrace.readI32Pair(tid, r.arg(nr == SC.socketpair ? 3 : 0)) {
                e.fd = a; e.fd2 = b
                e.path = p.fds.refresh(a)?.name; e.path2 = p.fds.refresh(b)?.name
            }
        case SC.socket:
            e.kind = .socket
            e.flags = "domain=\(SocketAddress.familyName(r.arg(0))) type=\(r.arg(1) & 0xf)"
            if ret >= 0 { e.fd = Int32(ret); e.path = p.fds.refresh(Int32(ret))?.name }
        case SC.connect, SC.bind:
            e.kind = nr == SC.connect ? .connect : .bind
            e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0)); e.addr = call.path2
            if nr == SC.connect, let a = call.path2 { summary.peer(a, pid: p.pid) }
        case SC.accept, SC.accept4:
            e.kind = .accept
            e.fd = r.argFd(0)
            if ret >= 0 {
                e.fd2 = Int32(ret)
                e.path = p.fds.refresh(Int32(ret))?.name
                if r.arg(1) != 0, let len = Ptrace.readBytes(tid, r.arg(2), 4) {
                    let n = UInt64(len.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
                    e.addr = readSockaddr(tid, r.arg(1), n)?.text
                    if let a = e.addr { summary.peer(a, pid: p.pid) }
                }
            }
        case SC.sendto, SC.sendmsg, SC.sendmmsg:
            e.kind = .send
            e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0)); e.addr = call.path2
            if ret >= 0 { e.bytes = ret }
            if let a = call.path2 { summary.peer(a, pid: p.pid) }
        case SC.recvfrom, SC.recvmsg, SC.recvmmsg:
            e.kind = .recv
            e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0))
            if ret >= 0 { e.bytes = ret }
            if nr == SC.recvfrom, ret >= 0, r.arg(4) != 0, let len = Ptrace.readBytes(tid, r.arg(5), 4) {
                e.addr = readSockaddr(tid, r.arg(4), UInt64(len.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }))?.text
            }
        case _ where SC.reads.contains(nr) || SC.writes.contains(nr):
            e.kind = SC.reads.contains(nr) ? .read : .write
            e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0))
            if ret >= 0 { e.bytes = ret }
            if e.kind == .write, ret > 0, let path = e.path, path.hasPrefix("/") { summary.wrote(path) }
        case SC.sendfile, SC.splice, SC.tee, SC.copyFileRange:
            e.kind = .transfer
            let (inFd, outFd) = nr == SC.sendfile ? (r.argFd(1), r.argFd(0)) : nr == SC.tee ? (r.argFd(0), r.argFd(1)) : (r.argFd(0), r.argFd(2))
            e.fd = inFd; e.fd2 = outFd; e.path = p.fds.name(inFd); e.path2 = p.fds.name(outFd)
            if ret >= 0 { e.bytes = ret }
            if ret > 0, let out = e.path2, out.hasPrefix("/") {
                summary.wrote(out)
                if p.managed == nil, let src = e.path, let why = managedSet.taint(of: src) {
                    let seq = log.append(e)
                    makeManaged(p, why: why, seq: seq)
                    return
                }
            }
        case SC.vmsplice:
            e.kind = .write
            e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0))
            if ret >= 0 { e.bytes = ret }
        case SC.rename, SC.renameat, SC.renameat2:
            e.kind = .rename; e.path = call.path; e.path2 = call.path2
            if ret == 0, let from = call.path, let to = call.path2 {
                summary.renamed(from, to)
                if let f = managedSet.files[from] {
                    _ = f
                    markFile(to, p, how: "renamed from managed file \(from)")
                } else if p.managed != nil {
                    markFile(to, p, how: "renamed from \(from)")
                }
            }
        case SC.link, SC.linkat, SC.symlink, SC.symlinkat:
            e.kind = nr == SC.link || nr == SC.linkat ? .link : .symlink
            e.path = call.path; e.path2 = call.path2
            if ret == 0, let from = call.path, let to = call.path2 {
                if managedSet.files[from] != nil { markFile(to, p, how: "linked to managed file \(from)") }
                else if p.managed != nil { markFile(to, p, how: "linked from \(from)") }
            }
        case SC.unlink, SC.unlinkat, SC.rmdir:
            e.kind = .unlink; e.path = call.path
            if ret == 0, let path = call.path { summary.deleted(path) }
        case SC.utime, SC.utimes, SC.futimesat, SC.utimensat:
            e.kind = .utime; e.path = call.path
            e.flags = call.times?.flags; e.reason = call.times?.reason
        case SC.truncate, SC.ftruncate:
            e.kind = .truncate
            if nr == SC.ftruncate { e.fd = r.argFd(0); e.path = p.fds.name(r.argFd(0)) } else { e.path = call.path }
            e.bytes = r.argInt(1)
            if ret == 0, let path = e.path, path.hasPrefix("/") {
                summary.wrote(path)
                if p.managed != nil { markFile(path, p, how: "truncated") }
            }
        case SC.execve, SC.execveat:
            e.kind = .exec; e.path = call.path; e.argv = call.argv
            if ret == 0 {
                p.argv = call.argv ?? p.argv
                summary.exec(pid: p.pid, argv: p.argv)
            }
        default: return
        }
        log.append(e)
    }

    // MARK: reading arguments

    /// What a utime-family call sets: "now" (no times, or UTIME_NOW/UTIME_OMIT for both) or
    /// "set" with the modification time given (seconds since the epoch), read from the caller.
    func fileTimes(_ tid: Int32, _ nr: Int64, _ addr: UInt64) -> (flags: String, reason: String?) {
        guard let call = FileTimes.Call(x86_64: nr) else { return ("set", "times unreadable") }
        guard addr != 0 else { return FileTimes.describe(call, bytes: nil) }
        let b = Ptrace.readBytes(tid, addr, FileTimes.size(call, wordSize: 8))
        return FileTimes.describe(call, bytes: b, unreadable: b == nil)
    }

    /// A path argument made absolute against the directory descriptor (or the cwd for AT_FDCWD).
    func resolvePath(_ tid: Int32, _ dirfd: Int32, _ addr: UInt64) -> String? {
        guard let s = Ptrace.readString(tid, addr) else { return nil }
        if s.hasPrefix("/") { return ManagedSet.normalize(s) }
        let base = dirfd == -100 ? Ptrace.link("/proc/\(tid)/cwd") : Ptrace.link("/proc/\(tid)/fd/\(dirfd)")
        return ManagedSet.normalize(s, cwd: base ?? "/")
    }

    func readArgv(_ tid: Int32, _ addr: UInt64) -> [String]? {
        guard addr != 0 else { return nil }
        var out: [String] = []
        for i in 0..<256 {
            guard let ptr = Ptrace.readU64(tid, addr + UInt64(i * 8)) else { return out }
            if ptr == 0 { break }
            out.append(Ptrace.readString(tid, ptr) ?? "<unreadable>")
        }
        return out
    }

    func readSockaddr(_ tid: Int32, _ addr: UInt64, _ len: UInt64) -> SocketAddress? {
        guard addr != 0, len >= 2 else { return nil }
        guard let b = Ptrace.readBytes(tid, addr, Int(min(len, 128))) else { return nil }
        return SocketAddress(bytes: b)
    }

    /// The destination address of a msghdr, if it names one.
    func msgName(_ tid: Int32, _ msghdr: UInt64) -> SocketAddress? {
        guard let b = Ptrace.readBytes(tid, msghdr, 16) else { return nil }
        let (name, len) = b.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        return readSockaddr(tid, name, UInt64(len))
    }
}

extension SocketAddress {
    public static func familyName(_ f: UInt64) -> String {
        switch f { case 1: "unix"; case 2: "inet"; case 10: "inet6"; case 16: "netlink"; case 17: "packet"; default: "\(f)" }
    }
}
