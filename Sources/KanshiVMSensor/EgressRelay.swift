import Foundation
import KanshiSystem

/// Every frame the guest sends passes through here: QEMU's filter-redirector on the user
/// network's receive queue (what the guest transmits) writes it to one socket; kanshi decides
/// and writes the frames that may leave to the other socket, whose redirector puts them back
/// on the queue towards slirp. Framing both ways: a 4-byte big-endian length, then the frame.
/// If kanshi stops reading, the guest's network stalls (nothing leaves unchecked).
public final class EgressRelay: @unchecked Sendable {
    /// The most QEMU sends in one frame (no vnet header; jumbo frames are not configured).
    static let maxFrame = 65_536

    let fromGuest: UnixListener
    let toGuest: UnixListener
    let pcap: PcapWriter?
    private let lock = NSLock()
    // SAFETY: the counters and connections are touched under `lock`; the relay thread owns the loop.
    private var connections: [UnixConnection] = []
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    private var started = false
    public private(set) var framesSeen: UInt64 = 0
    public private(set) var framesDropped: UInt64 = 0
    public private(set) var bytesPassed: UInt64 = 0
    private var failure: String?

    /// Listens in `directory` (QEMU connects when it starts); `pcap` records every frame the guest sent.
    public init(directory: String, pcap: String?) throws {
        fromGuest = try UnixListener(path: directory + "/net-from-guest.sock")
        toGuest = try UnixListener(path: directory + "/net-to-guest.sock")
        self.pcap = try pcap.map { try PcapWriter(path: $0) }
    }

    /// QEMU arguments: the guest's NIC on user networking, and the two redirectors (the one that
    /// injects frames first: the other order loops injected frames back to us).
    public var qemuArguments: [String] {
        ["-netdev", "user,id=kanshi-net", "-device", "virtio-net-pci,netdev=kanshi-net",
         "-chardev", "socket,id=kanshi-net-in,path=\(toGuest.path)",
         "-chardev", "socket,id=kanshi-net-out,path=\(fromGuest.path)",
         "-object", "filter-redirector,id=kanshi-filter-in,netdev=kanshi-net,queue=rx,indev=kanshi-net-in",
         "-object", "filter-redirector,id=kanshi-filter-out,netdev=kanshi-net,queue=rx,outdev=kanshi-net-out"]
    }

    /// Relays on a thread of its own; `decide` says whether a frame may leave.
    public func start(decide: @escaping @Sendable ([UInt8]) -> Bool) {
        started = true
        let t = Thread { [self] in
            defer { done.signal() }
            do { try relay(decide) } catch {
                lock.lock(); if !stopping { failure = "\(error)" }; lock.unlock()
            }
        }
        t.name = "kanshi-vm-egress"
        t.start()
    }

    private func relay(_ decide: @Sendable ([UInt8]) -> Bool) throws {
        var input: UnixConnection?, output: UnixConnection?
        while input == nil || output == nil {
            lock.lock(); let stop = stopping; lock.unlock()
            if stop { return }
            if input == nil, let c = try fromGuest.accept(timeoutMs: 100) { input = c; remember(c) }
            if output == nil, let c = try toGuest.accept(timeoutMs: 100) { output = c; remember(c) }
        }
        guard let input, let output else { return }
        while true {
            guard let len = try input.readExactly(4) else { return }
            let n = Int(len[0]) << 24 | Int(len[1]) << 16 | Int(len[2]) << 8 | Int(len[3])
            guard n > 0, n <= Self.maxFrame else { throw VMSensorError.network("QEMU sent a frame of \(n) bytes") }
            guard let frame = try input.readExactly(n) else { return }
            pcap?.write(frame)
            let pass = decide(frame)
            lock.lock()
            framesSeen += 1
            if pass { bytesPassed += UInt64(n) } else { framesDropped += 1 }
            lock.unlock()
            if pass { try output.writeAll(len + frame) }
        }
    }

    private func remember(_ c: UnixConnection) { lock.lock(); connections.append(c); lock.unlock() }

    /// Stops relaying (after QEMU ended) and closes the sockets; returns an error the relay met, if any.
    public func stop() -> String? {
        lock.lock()
        stopping = true
        for c in connections { c.shutdownBoth() }
        lock.unlock()
        if started { done.wait() }
        fromGuest.close()
        toGuest.close()
        pcap?.close()
        lock.lock(); defer { lock.unlock() }
        return failure
    }
}

/// A pcap file (Ethernet link type, microsecond times).
final class PcapWriter {
    let file: SystemFile
    var offset: UInt64 = 0

    init(path: String) throws {
        file = try SystemFile(path: path, mode: [.readWrite, .create, .truncate])
        var h: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { h += $0 } }
        u32(0xa1b2c3d4); u16(2); u16(4); u32(0); u32(0); u32(65_535); u32(1)
        try append(h)
    }

    func write(_ frame: [UInt8]) {
        let now = FileSystem.nowNs()
        var r: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { r += $0 } }
        u32(UInt32(now / 1_000_000_000)); u32(UInt32(now % 1_000_000_000 / 1000)); u32(UInt32(frame.count)); u32(UInt32(frame.count))
        try? append(r + frame)
    }

    private func append(_ b: [UInt8]) throws {
        try b.withUnsafeBytes { try file.write($0, at: offset) }
        offset += UInt64(b.count)
    }

    func close() { try? file.syncData() }
}
