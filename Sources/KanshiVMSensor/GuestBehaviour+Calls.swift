import KanshiTrace

/// x86_64 numbers of the calls the model decodes (i386 calls are mapped to them).
enum GuestCalls {
    static let read: Int64 = 0, write: Int64 = 1, open: Int64 = 2, close: Int64 = 3, mmap: Int64 = 9
    static let rtSigreturn: Int64 = 15, pread64: Int64 = 17, pwrite64: Int64 = 18, readv: Int64 = 19, writev: Int64 = 20
    static let pipe: Int64 = 22, dup: Int64 = 32, dup2: Int64 = 33, sendfile: Int64 = 40, socket: Int64 = 41
    static let connect: Int64 = 42, accept: Int64 = 43, sendto: Int64 = 44, recvfrom: Int64 = 45, sendmsg: Int64 = 46
    static let recvmsg: Int64 = 47, bind: Int64 = 49, socketpair: Int64 = 53, clone: Int64 = 56, fork: Int64 = 57
    static let vfork: Int64 = 58, execve: Int64 = 59, exit: Int64 = 60, fcntl: Int64 = 72, truncate: Int64 = 76
    static let ftruncate: Int64 = 77, chdir: Int64 = 80, fchdir: Int64 = 81, rename: Int64 = 82, rmdir: Int64 = 84
    static let creat: Int64 = 85, link: Int64 = 86, unlink: Int64 = 87, symlink: Int64 = 88, exitGroup: Int64 = 231
    static let openat: Int64 = 257, unlinkat: Int64 = 263, renameat: Int64 = 264, linkat: Int64 = 265
    static let symlinkat: Int64 = 266, splice: Int64 = 275, tee: Int64 = 276, vmsplice: Int64 = 278, accept4: Int64 = 288, dup3: Int64 = 292
    static let pipe2: Int64 = 293, preadv: Int64 = 295, pwritev: Int64 = 296, recvmmsg: Int64 = 299
    static let sendmmsg: Int64 = 307, renameat2: Int64 = 316, execveat: Int64 = 322, copyFileRange: Int64 = 326
    static let preadv2: Int64 = 327, pwritev2: Int64 = 328, clone3: Int64 = 435, openat2: Int64 = 437
    static let utime: Int64 = 132, utimes: Int64 = 235, futimesat: Int64 = 261, utimensat: Int64 = 280
    static let reads: Numbers = [read, pread64, readv, preadv, preadv2]
    static let writes: Numbers = [write, pwrite64, writev, pwritev, pwritev2]
    /// Data from one descriptor to another; calls that name where their data goes.
    static let transfers: Numbers = [sendfile, splice, tee, copyFileRange]
    static let addressed: Numbers = [connect, sendto, sendmsg, sendmmsg]

    /// A handful of call numbers, asked about for every call: a scan beats hashing.
    struct Numbers: ExpressibleByArrayLiteral, Sendable {
        let numbers: [Int64]
        init(arrayLiteral elements: Int64...) { numbers = elements }
        func contains(_ nr: Int64) -> Bool {
            for n in numbers where n == nr { return true }
            return false
        }
    }
    /// i386 socketcall (102): its first argument names the call.
    static let socketcall: Int64 = 102
    /// (send and recv take sendto's and recvfrom's first four arguments, without an address.)
    static let socketcallNumbers: [UInt64: Int64] = [1: socket, 2: bind, 3: connect, 5: accept, 8: socketpair, 9: sendto,
                                                     10: recvfrom, 11: sendto, 12: recvfrom, 16: sendmsg, 17: recvmsg,
                                                     18: accept4, 19: recvmmsg, 20: sendmmsg]
}

extension GuestBehaviour {
    /// A call with its result (nil: it never returned the usual way) becomes events and managed-set decisions.
    func complete(_ e: GuestEntry, ret: Int64?, items extra: [GuestItem], time: UInt64) {
        guard let p = procs[e.who.pid] ?? Optional(process(e.who, time: time)) else { return }
        if e.items.isEmpty && extra.isEmpty && !e.modelled {
            // A call the model does not decode, naming no file (--all-calls): logged as it is.
            logCall(e, p, ret: ret)
            return
        }
        var items = e.items
        for x in extra {
            if let i = items.firstIndex(where: { $0.tag == x.tag && $0.unreadable }) { items[i] = x } else { items.append(x) }
        }
        func text(_ tag: GuestItem.Tag) -> String? { items.first { $0.tag == tag && !$0.unreadable }?.text }
        func int32(_ a: UInt64) -> Int32 { Int32(truncatingIfNeeded: a) }
        let (nr, args) = e.decoded
        let tid = e.who.tid
        var ev = event(.notice, p, tid: tid, time: time, call: e.name)
        ev.ret = ret
        let ok = ret.map { $0 >= 0 } ?? false
        let retFd: Int32? = ok ? Int32(truncatingIfNeeded: ret!) : nil
        guard let nr else { logCall(e, p, ret: ret, path: text(.path1)); return }
        switch nr {
        case GuestCalls.open, GuestCalls.creat, GuestCalls.openat, GuestCalls.openat2:
            let flags: UInt64
            switch nr {
            case GuestCalls.open: flags = args[1]
            case GuestCalls.creat: flags = GuestFlags.create | GuestFlags.truncate | GuestFlags.writeOnly
            case GuestCalls.openat: flags = args[2]
            default: flags = items.first { $0.tag == .openHow }.map { $0.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } } ?? 0
            }
            let acc = flags & GuestFlags.accessMode
            let creat = flags & GuestFlags.create != 0, trunc = flags & GuestFlags.truncate != 0
            let opath = flags & GuestFlags.path != 0
            let readable = acc == 0 || acc == GuestFlags.readWrite
            let writable = acc == GuestFlags.writeOnly || acc == GuestFlags.readWrite || trunc
            let dirfd = nr == GuestCalls.openat || nr == GuestCalls.openat2 ? int32(args[0]) : GuestProcess.atFdCwd
            let path = p.resolve(text(.path1), dirfd: dirfd)
            ev.kind = .open
            ev.path = path
            ev.flags = (acc == 0 ? "r" : acc == 1 ? "w" : "rw") + (creat ? ",creat" : "") + (trunc ? ",trunc" : "") + (opath ? ",path" : "")
            ev.fd = retFd
            if let fd = retFd, let path {
                p.fds.fds[fd] = GuestFile(kind: .file, name: path, readable: readable && !opath)
                if !opath {
                    summary.opened(path, read: readable, write: writable)
                    if p.managed == nil, readable, let why = managedSet.taint(of: path) {
                        let seq = append(ev)
                        makeManaged(p, why: why, seq: seq, time: time)
                        return
                    }
                    if p.managed != nil && (writable || creat) {
                        append(ev)
                        markFile(path, p, how: creat ? "created or opened for writing" : "opened for writing", time: time)
                        return
                    }
                }
            }
        case GuestCalls.close:
            let fd = int32(args[0])
            retireSockets(of: p, only: fd, time: time)
            guard let f = p.fds.fds.removeValue(forKey: fd) else { logCall(e, p, ret: ret); return }
            ev.kind = .close; ev.fd = fd; ev.path = f.name
            if f.written > 0 {
                ev.bytes = f.written
                if f.entropyBytes > 0 { ev.entropy = f.entropyWeighted / Double(f.entropyBytes) }
            }
        case GuestCalls.dup, GuestCalls.dup2, GuestCalls.dup3, GuestCalls.fcntl:
            if nr == GuestCalls.fcntl && args[1] != GuestFlags.fcntlDupFd && args[1] != GuestFlags.fcntlDupFdCloexec {
                logCall(e, p, ret: ret); return
            }
            ev.kind = .dup; ev.fd = int32(args[0])
            if let fd = retFd, var f = p.fds.fds[int32(args[0])] {
                // dup2 and dup3 close what the target held: a written file's close, as the kernel does it.
                if fd != int32(args[0]), let old = p.fds.fds[fd] { implicitClose(p, fd: fd, old, call: e.name, tid: tid, time: time) }
                f.written = 0; f.entropyWeighted = 0; f.entropyBytes = 0  // what is written through the copy counts there
                p.fds.fds[fd] = f; ev.fd2 = fd; ev.path = f.name
            }
        case GuestCalls.pipe, GuestCalls.pipe2, GuestCalls.socketpair:
            ev.kind = nr == GuestCalls.socketpair ? .socket : .pipe
            if ret == 0, let pair = items.first(where: { $0.tag == .fdPair }), pair.bytes.count == 8 {
                let (a, b) = pair.bytes.withUnsafeBytes { ($0.loadUnaligned(as: Int32.self), $0.loadUnaligned(fromByteOffset: 4, as: Int32.self)) }
                let kind: GuestFile.Kind = nr == GuestCalls.socketpair ? .socket : .pipe
                let name = newObject(kind)
                p.fds.fds[a] = GuestFile(kind: kind, name: name, domain: nr == GuestCalls.socketpair ? args[0] : 0)
                p.fds.fds[b] = GuestFile(kind: kind, name: name, domain: nr == GuestCalls.socketpair ? args[0] : 0)
                ev.fd = a; ev.fd2 = b; ev.path = name; ev.path2 = name
            }
        case GuestCalls.socket:
            ev.kind = .socket
            ev.flags = "domain=\(SocketAddress.familyName(args[0])) type=\(args[1] & 0xf)"
            if let fd = retFd {
                let name = newObject(.socket)
                p.fds.fds[fd] = GuestFile(kind: .socket, name: name, domain: args[0], type: args[1], protocolNumber: args[2])
                ev.fd = fd; ev.path = name
            }
        case GuestCalls.connect, GuestCalls.bind:
            ev.kind = nr == GuestCalls.connect ? .connect : .bind
            let fd = int32(args[0])
            ev.fd = fd; ev.path = p.fds.fds[fd]?.name
            let addr = items.first { $0.tag == .sockaddr && !$0.unreadable }.flatMap { SocketAddress(bytes: $0.bytes) }
            ev.addr = addr?.text
            if nr == GuestCalls.connect, let addr {
                summary.peer(addr.text, pid: p.pid)
                if ret == 0 || ret == -115 { p.fds.fds[fd]?.peer = addr.text }  // 0 or EINPROGRESS (also set at entry)
                if p.managed != nil && addr.isExternal(loopbackExternal: options.loopbackExternal) { noteEgress(p, "connect to \(addr.text)") }
            }
        case GuestCalls.accept, GuestCalls.accept4:
            ev.kind = .accept; ev.fd = int32(args[0])
            if let fd = retFd {
                let name = newObject(.socket)
                let listener = p.fds.fds[int32(args[0])]
                p.fds.fds[fd] = GuestFile(kind: .socket, name: name, domain: listener?.domain ?? 0, type: listener?.type ?? 0,
                                          protocolNumber: listener?.protocolNumber ?? 0)
                ev.fd2 = fd; ev.path = name
            }
        case GuestCalls.sendto, GuestCalls.sendmsg, GuestCalls.sendmmsg:
            ev.kind = .send
            let fd = int32(args[0])
            ev.fd = fd; ev.path = p.fds.fds[fd]?.name
            let addr = items.first { $0.tag == .sockaddr && !$0.unreadable }.flatMap { SocketAddress(bytes: $0.bytes) }
            ev.addr = addr?.text ?? p.fds.fds[fd]?.peer
            if ok { ev.bytes = ret }
            if let a = ev.addr { summary.peer(a, pid: p.pid) }
            if p.managed != nil, let f = p.fds.fds[fd] {
                if let addr, addr.isExternal(loopbackExternal: options.loopbackExternal) {
                    noteEgress(p, "\(e.name) to \(addr.text)")
                } else if f.domain == 2 || f.domain == 10, let peer = f.peer {
                    noteEgress(p, "\(e.name) on a socket connected to \(peer)")
                }
                carry(from: p, through: f, time: time)
            }
        case GuestCalls.recvfrom, GuestCalls.recvmsg, GuestCalls.recvmmsg:
            ev.kind = .recv
            ev.fd = int32(args[0]); ev.path = p.fds.fds[int32(args[0])]?.name
            if ok { ev.bytes = ret }
        case _ where GuestCalls.reads.contains(nr) || GuestCalls.writes.contains(nr):
            let isWrite = GuestCalls.writes.contains(nr)
            let fd = int32(args[0])
            let f = p.fds.fds[fd]
            if isWrite, p.managed != nil, let f {
                if f.kind == .file { markFile(f.name, p, how: "written", time: time) } else { carry(from: p, through: f, time: time) }
                if f.kind == .socket, f.domain == 2 || f.domain == 10, let peer = f.peer { noteEgress(p, "\(e.name) on a socket connected to \(peer)") }
            }
            if isWrite, ok, ret! > 0, let f, f.kind == .file {
                summary.wrote(f.name)
                p.fds.fds[fd]?.written += ret!
                if let item = items.first(where: { $0.tag == .writeEntropy }), item.bytes.count == 4 {
                    let milli = item.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt16.self) }
                    p.fds.fds[fd]?.entropyWeighted += Double(milli) / 1000 * Double(ret!)
                    p.fds.fds[fd]?.entropyBytes += ret!
                }
            }
            guard options.allCalls || (isWrite && p.managed != nil) else { return }
            ev.kind = isWrite ? .write : .read
            ev.fd = fd; ev.path = f?.name
            if ok { ev.bytes = ret }
        case GuestCalls.sendfile, GuestCalls.splice, GuestCalls.tee, GuestCalls.copyFileRange:
            ev.kind = .transfer
            let (src, dst) = nr == GuestCalls.sendfile ? (int32(args[1]), int32(args[0]))
                : nr == GuestCalls.tee ? (int32(args[0]), int32(args[1])) : (int32(args[0]), int32(args[2]))
            let s = p.fds.fds[src], d = p.fds.fds[dst]
            ev.fd = src; ev.fd2 = dst; ev.path = s?.name; ev.path2 = d?.name
            if ok { ev.bytes = ret }
            if p.managed == nil, let s, s.kind == .file, let why = managedSet.taint(of: s.name) {
                let seq = append(ev)
                makeManaged(p, why: why, seq: seq, time: time)
                return
            }
            if p.managed != nil, let d {
                if d.kind == .file { markFile(d.name, p, how: "written", time: time) } else { carry(from: p, through: d, time: time) }
            }
        case GuestCalls.rename, GuestCalls.renameat, GuestCalls.renameat2, GuestCalls.link, GuestCalls.linkat:
            let isRename = nr == GuestCalls.rename || nr == GuestCalls.renameat || nr == GuestCalls.renameat2
            ev.kind = isRename ? .rename : .link
            let at = nr != GuestCalls.rename && nr != GuestCalls.link
            ev.path = p.resolve(text(.path1), dirfd: at ? int32(args[0]) : GuestProcess.atFdCwd)
            ev.path2 = p.resolve(text(.path2), dirfd: at ? int32(args[2]) : GuestProcess.atFdCwd)
            if ret == 0, let from = ev.path, let to = ev.path2 {
                if isRename { summary.renamed(from, to) }
                append(ev)
                let verb = isRename ? "renamed" : "linked"
                if managedSet.files[from] != nil { markFile(to, p, how: "\(verb) from managed file \(from)", time: time) }
                else if p.managed != nil { markFile(to, p, how: "\(verb) from \(from)", time: time) }
                return
            }
        case GuestCalls.symlink, GuestCalls.symlinkat:
            ev.kind = .symlink
            ev.path = text(.path1)
            ev.path2 = p.resolve(text(.path2), dirfd: nr == GuestCalls.symlinkat ? int32(args[1]) : GuestProcess.atFdCwd)
            if ret == 0, p.managed != nil, let to = ev.path2 { append(ev); markFile(to, p, how: "linked from \(ev.path ?? "?")", time: time); return }
        case GuestCalls.unlink, GuestCalls.unlinkat, GuestCalls.rmdir:
            ev.kind = .unlink
            ev.path = p.resolve(text(.path1), dirfd: nr == GuestCalls.unlinkat ? int32(args[0]) : GuestProcess.atFdCwd)
            if ret == 0, let path = ev.path { summary.deleted(path) }
        case GuestCalls.utime, GuestCalls.utimes, GuestCalls.futimesat, GuestCalls.utimensat:
            ev.kind = .utime
            let atCall = nr == GuestCalls.futimesat || nr == GuestCalls.utimensat
            // utimensat with no path (futimens) is about the descriptor itself.
            if atCall && args[1] == 0 {
                ev.path = p.fds.fds[int32(args[0])]?.name
            } else {
                ev.path = p.resolve(text(.path1), dirfd: atCall ? int32(args[0]) : GuestProcess.atFdCwd)
            }
            let call = FileTimes.Call(x86_64: nr) ?? .utimes  // (nr is one of the four here)
            let times = items.first { $0.tag == .fileTimes }
            let set = FileTimes.describe(call, bytes: times?.bytes, wordSize: e.i386 ? 4 : 8, unreadable: times?.unreadable == true)
            ev.flags = set.flags
            ev.reason = set.reason
        case GuestCalls.truncate, GuestCalls.ftruncate:
            ev.kind = .truncate
            ev.path = nr == GuestCalls.truncate ? p.resolve(text(.path1)) : p.fds.fds[int32(args[0])]?.name
            if nr == GuestCalls.ftruncate { ev.fd = int32(args[0]) }
            ev.bytes = Int64(bitPattern: args[1])
            if ret == 0, let path = ev.path, path.hasPrefix("/") {
                summary.wrote(path)
                if p.managed != nil { append(ev); markFile(path, p, how: "truncated", time: time); return }
            }
        case GuestCalls.mmap:
            let fd = int32(args[4])
            guard fd >= 0, let f = p.fds.fds[fd], f.kind == .file else { logCall(e, p, ret: ret); return }
            let prot = args[2], flags = args[3]
            ev.kind = .mmap; ev.fd = fd; ev.path = f.name; ev.bytes = Int64(bitPattern: args[1])
            ev.flags = (prot & 1 != 0 ? "r" : "-") + (prot & 2 != 0 ? "w" : "-") + (prot & 4 != 0 ? "x" : "-") + (flags & 1 != 0 ? " shared" : " private")
            if ok, p.managed != nil, prot & GuestFlags.protWrite != 0, flags & GuestFlags.mapShared != 0 {
                append(ev); markFile(f.name, p, how: "mapped shared and writable", time: time); return
            }
        case GuestCalls.execve, GuestCalls.execveat:
            ev.kind = .exec
            ev.path = p.resolve(text(.path1), dirfd: nr == GuestCalls.execveat ? int32(args[0]) : GuestProcess.atFdCwd)
            ev.argv = items.filter { $0.tag == .argv }.map { $0.unreadable ? "<unreadable>" : $0.text }
            // A successful exec does not return to the old program: no result means it worked.
            let worked = ret == nil || ret == 0
            ev.ret = worked ? 0 : ret
            if worked {
                p.argv = ev.argv?.isEmpty == false ? ev.argv! : [ev.path ?? p.comm]
                summary.exec(pid: p.pid, argv: p.argv)
            }
        case GuestCalls.fork, GuestCalls.vfork, GuestCalls.clone, GuestCalls.clone3:
            guard let child = retFd, child > 0 else { logCall(e, p, ret: ret); return }
            var flags: UInt64 = nr == GuestCalls.clone ? args[0] : 0
            if nr == GuestCalls.clone3, let f = items.first(where: { $0.tag == .cloneFlags }), f.bytes.count == 8 {
                flags = f.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            }
            if flags & GuestFlags.cloneThread != 0 {
                ev.kind = .thread; ev.child = child
            } else {
                let c = procs[child].flatMap { $0.alive ? $0 : nil }
                    ?? adopt(pid: child, ppid: p.pid, comm: p.comm, time: time, sharedFiles: flags & GuestFlags.cloneFiles != 0, seenFirst: false)
                if c.announced { return }
                c.announced = true
                ev.kind = .spawn; ev.child = child
                ev.call = nr == GuestCalls.vfork ? "vfork" : nr == GuestCalls.fork ? "fork" : "clone"
                if let m = c.managed { ev.reason = m.why }
            }
        case GuestCalls.chdir:
            if ret == 0, let d = p.resolve(text(.path1)) { p.cwd = d }
            logCall(e, p, ret: ret, path: p.resolve(text(.path1))); return
        case GuestCalls.fchdir:
            if ret == 0, let f = p.fds.fds[int32(args[0])] { p.cwd = f.name }
            logCall(e, p, ret: ret); return
        default:
            logCall(e, p, ret: ret, path: p.resolve(text(.path1)), path2: p.resolve(text(.path2)))
            return
        }
        append(ev)
    }

    /// Any other call: logged only with `allCalls`, by name, with its raw arguments and the paths it names.
    func logCall(_ e: GuestEntry, _ p: GuestProcess, ret: Int64?, path: String? = nil, path2: String? = nil) {
        guard options.allCalls else { return }
        var ev = event(.call, p, tid: e.who.tid, time: e.timeNs, call: e.name)
        ev.ret = ret
        ev.args = e.args
        ev.path = path
        ev.path2 = path2
        append(ev)
    }
}
