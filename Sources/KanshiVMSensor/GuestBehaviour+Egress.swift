import KanshiTrace

/// What to do with a frame the guest sent.
public enum EgressDecision: Sendable, Equatable {
    case pass
    /// Dropped: the managed process it belongs to (nil: not attributed), and why.
    case drop(pid: Int32?, why: String)
}

/// A socket a managed process held when it closed it or ended: its frames may still be on
/// their way (queued data, retransmissions), so they stay blocked.
struct RetiredSocket: Sendable {
    var pid: Int32
    var why: String
    var timeNs: UInt64
}

/// Egress at the VM's NIC. Every frame the guest sends is attributed to the socket objects
/// that send to its destination — learnt from connect, sendto and sendmsg at the call's entry,
/// before the frame can leave — and, once a TCP connection's first frame or a UDP socket's
/// first datagram has been seen, pinned to them by its source port. A frame is dropped when a
/// managed process holds one of its sockets, or held it when it closed it or ended (queued data
/// and retransmissions follow later); a connection once dropped stays dropped; and while any
/// managed process runs, frames nothing explains are dropped too (fail closed).
extension GuestBehaviour {
    /// How long after its last send a socket closed by a managed process (or by its end) still
    /// claims frames: TCP retransmits for long, a datagram leaves within milliseconds.
    static let retiredTCPGraceNs: UInt64 = 120_000_000_000
    static let retiredUDPGraceNs: UInt64 = 3_000_000_000

    /// Learns where a call is about to send, at its entry (the frame follows before the call returns).
    func learnEgress(_ e: GuestEntry, _ p: GuestProcess) {
        guard let (nr, fd) = destination(of: e) else { return }
        // Data into a socket: when it last sent (to attribute its datagrams after it is gone).
        if let f = p.fds.fds[fd], f.kind == .socket { lastSend[f.name] = e.timeNs }
        guard GuestCalls.addressed.contains(nr) else { return }
        guard let f = p.fds.fds[fd], let proto = f.wireProtocol,
              let addr = e.item(.sockaddr), !addr.unreadable, let key = FlowKey(sockaddr: addr.bytes, proto: proto) else { return }
        if nr == GuestCalls.connect {
            p.fds.fds[fd]?.peerKey = key
            if let a = SocketAddress(bytes: addr.bytes) { p.fds.fds[fd]?.peer = a.text }
        }
        socketsTo[key, default: []].insert(f.name)
    }

    /// A managed process lets go of its sockets (closes one, or ends): they stay blocked.
    func retireSockets(of p: GuestProcess, only fd: Int32? = nil, time: UInt64) {
        guard let m = p.managed else { return }
        let files = fd.map { p.fds.fds[$0].map { [$0] } ?? [] } ?? Array(p.fds.fds.values)
        for f in files where f.kind == .socket && f.wireProtocol != nil {
            retired[f.name] = RetiredSocket(pid: p.pid, why: "\(p.exe), managed because: \(m.why)", timeNs: time)
        }
    }

    /// Whether a frame the guest sent may leave, and why not.
    public func decide(_ frame: EthernetFrame, now: UInt64) -> EgressDecision {
        let managedRunning = procs.values.contains { $0.alive && $0.managed != nil }
        let unattributed = EgressDecision.drop(pid: nil, why: "frame to \(frame.destinationText) belongs to no socket the sensor knows, while managed processes run (fail closed)")
        switch frame.kind {
        case .link: return .pass
        case .other: return managedRunning && options.failClosed ? unattributed : .pass
        case .ipv4, .ipv6: break
        }
        let key = FlowKey(frame: frame)
        let connection = ConnectionKey(flow: key, sourcePort: frame.sourcePort)
        if let t = blockedConnections[connection] { return .drop(pid: t.pid, why: t.why) }
        var sockets = connections[connection] ?? []
        if sockets.isEmpty {
            let known = socketsTo[key] ?? []
            if frame.proto == 6 && frame.tcpSyn {
                // A connection attempt comes from a live socket connecting there that has no connection yet.
                sockets = known.filter { name in
                    !pinned.contains(name) && holders(of: name).contains { $0.fds.fds.values.contains { $0.name == name && $0.peerKey == key } }
                }
            } else {
                let grace = frame.proto == 6 ? Self.retiredTCPGraceNs : Self.retiredUDPGraceNs
                sockets = known.filter { name in
                    !holders(of: name).isEmpty || (retired[name] != nil && now &- (lastSend[name] ?? retired[name]!.timeNs) < grace)
                }
            }
            // A TCP connection is pinned at its first segment, a datagram socket at its first datagram.
            if !sockets.isEmpty && (frame.proto != 6 || frame.tcpSyn) {
                connections[connection] = sockets
                if frame.proto == 6 { pinned.formUnion(sockets) }
            }
        }
        if sockets.isEmpty { return managedRunning && options.failClosed ? unattributed : .pass }
        for name in sockets.sorted() {
            if let m = holders(of: name).first(where: { $0.managed != nil }) {
                return block(connection, pid: m.pid, why: "frame to \(frame.destinationText) from \(name) of managed pid \(m.pid) (\(m.exe)); managed because: \(m.managed!.why)")
            }
            if let r = retired[name] {
                return block(connection, pid: r.pid, why: "frame to \(frame.destinationText) from \(name), which managed pid \(r.pid) held until it closed it or ended (\(r.why))")
            }
        }
        return .pass
    }

    private func block(_ c: ConnectionKey, pid: Int32, why: String) -> EgressDecision {
        blockedConnections[c] = (pid, why)
        return .drop(pid: pid, why: why)
    }

    /// Live processes whose descriptor tables hold the socket object `name`.
    func holders(of name: String) -> [GuestProcess] {
        procs.values.filter { $0.alive && $0.fds.fds.values.contains { $0.name == name } }.sorted { $0.pid < $1.pid }
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
