import KanshiTrace

/// What to do with a frame the guest sent.
public enum EgressDecision: Sendable, Equatable {
    case pass
    /// Dropped: the managed process it belongs to (nil: not attributed), and why.
    case drop(pid: Int32?, why: String)
}

/// Egress at the VM's NIC: every frame the guest sends is attributed to the processes whose
/// sockets send to its destination (learnt from their connect, sendto and sendmsg calls — at
/// the call's entry, before the frame can leave); frames of a managed process's flow are
/// dropped, and so, while any managed process runs, are frames nothing explains (fail closed).
extension GuestBehaviour {
    /// Learns where a call is about to send, at its entry (the frame follows before the call returns).
    func learnEgress(_ e: GuestEntry, _ p: GuestProcess) {
        var nr = e.x86_64Number
        var fdArg = e.args[0]
        if e.i386 && e.nr == GuestCalls.socketcall, let sc = e.item(.socketcall), sc.bytes.count >= 4 {
            nr = GuestCalls.socketcallNumbers[e.args[0]]
            fdArg = UInt64(sc.bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        }
        guard let nr, [GuestCalls.connect, GuestCalls.sendto, GuestCalls.sendmsg, GuestCalls.sendmmsg].contains(nr) else { return }
        let fd = Int32(truncatingIfNeeded: fdArg)
        guard let f = p.fds.fds[fd], let proto = f.wireProtocol,
              let addr = e.item(.sockaddr), !addr.unreadable, let key = FlowKey(sockaddr: addr.bytes, proto: proto) else { return }
        if nr == GuestCalls.connect {
            p.fds.fds[fd]?.peerKey = key
            if let a = SocketAddress(bytes: addr.bytes) { p.fds.fds[fd]?.peer = a.text }
        } else {
            sentTo[key, default: []].insert(p.pid)
        }
    }

    /// Whether a frame the guest sent may leave, and why not.
    public func decide(_ frame: EthernetFrame) -> EgressDecision {
        let managedRunning = procs.values.contains { $0.alive && $0.managed != nil }
        let unattributed = EgressDecision.drop(pid: nil, why: "frame to \(frame.destinationText) belongs to no process the sensor knows, while managed processes run (fail closed)")
        switch frame.kind {
        case .link: return .pass
        case .other: return managedRunning && options.failClosed ? unattributed : .pass
        case .ipv4, .ipv6: break
        }
        let key = FlowKey(frame: frame)
        var pids = sentTo[key] ?? []
        for p in procs.values where p.alive && p.fds.fds.values.contains(where: { $0.peerKey == key }) { pids.insert(p.pid) }
        let owners = pids.sorted().compactMap { procs[$0] }.filter(\.alive)
        if let m = owners.first(where: { $0.managed != nil }) {
            return .drop(pid: m.pid, why: "frame to \(frame.destinationText) of a flow of managed pid \(m.pid) (\(m.exe)); managed because: \(m.managed!.why)")
        }
        if owners.isEmpty && managedRunning && options.failClosed { return unattributed }
        return .pass
    }

    /// Logs a dropped frame: the first drop of each destination and process as a `blocked` event, all of them counted.
    public func recordDrop(_ frame: EthernetFrame, pid: Int32?, why: String, time: UInt64) {
        let key = "\(pid ?? 0) \(frame.destinationText)"
        droppedFrames[key, default: 0] += 1
        guard droppedFrames[key] == 1 else { return }
        let p = pid.flatMap { procs[$0] }
        var ev = TraceEvent(kind: .blocked)
        ev.time = time
        ev.pid = pid ?? 0
        ev.tid = pid ?? 0
        ev.call = "net"
        ev.addr = frame.destinationText
        ev.blocked = true
        ev.managed = p?.managed != nil
        ev.reason = why + " (further frames of this flow are dropped without a log line; counted in the summary)"
        ev.vm = options.vm
        append(ev)
        summary.blocked(pid: pid ?? 0, exe: p?.exe ?? "?", call: "net", why: why)
    }
}
