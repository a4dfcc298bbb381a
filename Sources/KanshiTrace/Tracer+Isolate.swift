import CKanshiTrace
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Requests to cut processes off the network, from other threads (a rule's isolate action),
/// taken by the tracer's own thread between stops.
final class NetworkCutRequests: @unchecked Sendable {
    let lock = NSLock()
    var queue: [(pids: [Int32], why: String)] = []
    /// Requests made and taken so far (a requester waits until its own is taken).
    var asked: UInt64 = 0
    var taken: UInt64 = 0
    /// The tracer loop's thread while it runs (pthread_t), to wake it from its wait.
    var thread: UInt?
}

/// The signal that wakes the tracer's loop from its wait (a handler that does nothing; SIGURG
/// is ignored by default, so a stray one harms no one).
let tracerWakeSignal = SIGURG

extension Tracer {
    /// Cuts the network of the processes `pids` and of the processes they start from now on:
    /// every later socket(AF_INET, AF_INET6, AF_PACKET), connect on such a socket, and send or
    /// write into one is refused (logged as `blocked`, with `why`). Unix sockets, pipes and
    /// files still work. Safe from any thread: returns once the tracer has taken the request
    /// (or after about a second, when its loop has ended).
    public func cutNetwork(_ pids: [Int32], why: String) {
        let ticket: UInt64 = networkCuts.lock.withLock {
            networkCuts.queue.append((pids, why))
            networkCuts.asked += 1
            return networkCuts.asked
        }
        for _ in 0..<1000 {
            let (done, thread) = networkCuts.lock.withLock { (networkCuts.taken >= ticket, networkCuts.thread) }
            if done { return }
            // The loop checks the queue before each wait; a wake lost just before the wait is sent again.
            if let thread { _ = ckt_wake_thread(thread, tracerWakeSignal) }
            usleep(1000)
        }
    }

    /// On the tracer's thread: the requests made since the last look.
    func takeNetworkCuts() {
        let requests: [(pids: [Int32], why: String)] = networkCuts.lock.withLock {
            defer { networkCuts.queue = []; networkCuts.taken = networkCuts.asked }
            return networkCuts.queue
        }
        for r in requests {
            for pid in r.pids { cutNetworkNow(pid, why: r.why) }
        }
    }

    private func cutNetworkNow(_ pid: Int32, why: String) {
        guard let p = procs[pid], p.alive, p.isolated == nil else { return }
        p.isolated = why
        var e = TraceEvent(kind: .notice)
        e.pid = pid; e.tid = pid; e.managed = p.managed != nil
        e.reason = "network cut: \(why)"
        log.append(e)
        summary.networkCut(pid: pid, why: why)
        logger.debug("pid \(pid) network cut: \(why)")
        installStricterFilterNow(p)
    }

    /// For a process whose network is cut, at a seccomp stop: why the call must be refused, or nil.
    func networkCutCheck(_ tid: Int32, _ p: Proc, _ r: ckt_regs) -> String? {
        switch r.nr {
        case SC.socket:
            let family = r.arg(0)
            return Self.networkFamilies.contains(family) ? "socket(\(SocketAddress.familyName(family)))" : nil
        case SC.connect, SC.sendto, SC.sendmsg, SC.sendmmsg, SC.sendfile, SC.vmsplice:
            return networkSocket(p, r.argFd(0))
        case _ where SC.writes.contains(r.nr):
            return networkSocket(p, r.argFd(0))
        case SC.splice, SC.copyFileRange:
            return networkSocket(p, r.argFd(2))
        case SC.tee:
            return networkSocket(p, r.argFd(1))
        default:
            return nil
        }
    }

    /// AF_INET, AF_INET6, AF_PACKET.
    static let networkFamilies: Set<UInt64> = [2, 10, 17]

    /// Why a call on `fd` goes to the network, or nil when `fd` is no network socket. A socket
    /// whose family cannot be read is taken for one (fail closed).
    private func networkSocket(_ p: Proc, _ fd: Int32) -> String? {
        if let info = p.fds.lookup(fd), info.kind != .socket { return nil }
        switch inspectSocket(p, fd) {
        case .none:
            return nil
        case .uninspectable(let why):
            return why
        case .socket(let family, _, let peer):
            guard Self.networkFamilies.contains(UInt64(family)) else { return nil }
            let to = peer.flatMap(SocketAddress.init(bytes:)).map { " to \($0)" } ?? ""
            return "\(SocketAddress.familyName(UInt64(family))) socket fd \(fd)\(to)"
        }
    }
}
