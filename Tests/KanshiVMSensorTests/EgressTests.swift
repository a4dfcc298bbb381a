import Foundation
import KanshiTrace
import Testing
@testable import KanshiVMSensor

/// Frames as the guest's NIC sends them, judged against what the sensor learnt from the calls.
@Suite struct EgressTests {
    static func ipv4(proto: UInt8, to dst: [UInt8], port: UInt16, from sport: UInt16 = 40000, syn: Bool = false) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: 14 + 20 + 20)
        f[12] = 0x08; f[13] = 0x00
        f[14] = 0x45; f[14 + 9] = proto
        f[14 + 12] = 10; f[14 + 13] = 0; f[14 + 14] = 2; f[14 + 15] = 15
        for (i, b) in dst.enumerated() { f[14 + 16 + i] = b }
        f[34] = UInt8(sport >> 8); f[35] = UInt8(sport & 0xff)
        f[36] = UInt8(port >> 8); f[37] = UInt8(port & 0xff)
        if syn { f[34 + 13] = 0x02 }
        return f
    }

    static func sockaddr(_ a: [UInt8], _ port: UInt16) -> [UInt8] {
        [2, 0, UInt8(port >> 8), UInt8(port & 0xff)] + a + [UInt8](repeating: 0, count: 8)
    }

    func model(_ records: [[UInt8]], protect: [String] = ["/secret"]) throws -> GuestBehaviour {
        let log = try EventLog(path: "/dev/null")
        defer { log.close() }
        var o = GuestBehaviourOptions()
        o.protect = protect
        let m = GuestBehaviour(options: o, log: log, managed: ManagedSet())
        for r in records { m.consume(try RecordBytes.decode(r)) }
        return m
    }

    let host: [UInt8] = [10, 0, 2, 2]

    /// pid 70 opens a TCP socket and starts connecting to 10.0.2.2:8080 (the entry only: the SYN goes out first).
    func connecting(pid: Int32, readsSecret: Bool) -> [[UInt8]] {
        var r: [[UInt8]] = []
        if readsSecret {
            r += [RecordBytes.entry(cookie: 1, tid: pid, nr: 2, args: [0, 0], items: [RecordBytes.path("/secret")]), RecordBytes.ret(cookie: 1, 3)]
        }
        r += [RecordBytes.entry(cookie: 2, tid: pid, nr: 41, args: [2, 1, 0]), RecordBytes.ret(cookie: 2, 4),
              RecordBytes.entry(cookie: 3, tid: pid, nr: 42, args: [4, 0x1000, 16], items: [RecordBytes.item(.sockaddr, Self.sockaddr(host, 8080))])]
        return r
    }

    @Test func framesAreParsed() {
        let f = EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080, from: 41000, syn: true))
        #expect(f.kind == .ipv4 && f.proto == 6 && f.destination == host && f.port == 8080 && f.sourcePort == 41000 && f.tcpSyn)
        #expect(f.destinationText == "10.0.2.2:8080 (tcp)")
        var arp = [UInt8](repeating: 0, count: 42); arp[12] = 0x08; arp[13] = 0x06
        #expect(EthernetFrame(arp).kind == .link)
        #expect(EthernetFrame([1, 2, 3]).kind == .other)
        var v6 = [UInt8](repeating: 0, count: 14 + 40 + 8); v6[12] = 0x86; v6[13] = 0xdd; v6[14] = 0x60
        v6[14 + 6] = 58; v6[14 + 24] = 0xff; v6[14 + 25] = 0x02  // to ff02::..., ICMPv6
        #expect(EthernetFrame(v6).kind == .link)
    }

    @Test func aManagedProcessesConnectionIsDroppedAnOtherOneIsNot() throws {
        let managed = try model(connecting(pid: 70, readsSecret: true))
        let syn = EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080, syn: true))
        guard case .drop(let pid, let why) = managed.decide(syn, now: 10) else { Issue.record("not dropped"); return }
        #expect(pid == 70 && why.contains("read protected file /secret"))
        // The connection stays dropped, whatever comes later on it.
        #expect(managed.decide(EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080)), now: 11) != .pass)
        let plain = try model(connecting(pid: 71, readsSecret: false))
        #expect(plain.decide(syn, now: 10) == .pass)
    }

    @Test func unexplainedFramesAreDroppedOnlyWhileManagedProcessesRun() throws {
        let records = connecting(pid: 72, readsSecret: true)
        let m = try model(records)
        let stray = EthernetFrame(Self.ipv4(proto: 17, to: [10, 0, 2, 3], port: 53))
        guard case .drop(nil, _) = m.decide(stray, now: 10) else { Issue.record("an unexplained frame passed while pid 72 is managed"); return }
        m.consume(try RecordBytes.decode(RecordBytes.exit(tid: 72, code: 0)))
        #expect(m.decide(stray, now: 10) == .pass)
    }

    @Test func datagramsOfAManagedSocketAreDroppedAfterItsOwnerEnded() throws {
        let m = try model([
            RecordBytes.entry(cookie: 1, tid: 73, nr: 2, args: [0, 0], items: [RecordBytes.path("/secret")]), RecordBytes.ret(cookie: 1, 3),
            RecordBytes.entry(cookie: 2, tid: 73, nr: 41, args: [2, 2, 0]), RecordBytes.ret(cookie: 2, 4),
            RecordBytes.entry(cookie: 3, tid: 73, nr: 44, args: [4, 0, 9, 0, 0x1000, 16], items: [RecordBytes.item(.sockaddr, Self.sockaddr(host, 9000))],
                              time: 1_000),
            RecordBytes.ret(cookie: 3, 9),
            RecordBytes.exit(tid: 73, code: 0),
        ])
        let datagram = EthernetFrame(Self.ipv4(proto: 17, to: host, port: 9000))
        #expect(m.decide(datagram, now: 2_000_000) != .pass, "a datagram queued before the exit left")
        // Long after, a new socket to the same place is not held back.
        let later = EthernetFrame(Self.ipv4(proto: 17, to: host, port: 9000, from: 41234))
        #expect(m.decide(later, now: 60_000_000_000) == .pass)
    }

    /// The exfil fixture's "pipe" route, in the order a loaded guest can run it: the managed parent's
    /// write into the pipe has entered (the data is in the pipe) but its return is not read yet when
    /// the child, started before the secret was read, takes the data and connects out.
    @Test func aPipeReaderIsManagedFromTheWritersEntryNotItsReturn() throws {
        let m = try model([
            RecordBytes.entry(cookie: 1, tid: 80, nr: 293, args: [0x2000, 0]),
            RecordBytes.ret(cookie: 1, 0, items: [RecordBytes.item(.fdPair, [3, 0, 0, 0, 4, 0, 0, 0])]),
            RecordBytes.entry(cookie: 2, tid: 80, nr: 57),
            RecordBytes.ret(cookie: 2, 81),
            RecordBytes.entry(cookie: 3, tid: 81, ppid: 80, nr: 3, args: [4]), RecordBytes.ret(cookie: 3, 0),
            RecordBytes.entry(cookie: 4, tid: 80, nr: 3, args: [3]), RecordBytes.ret(cookie: 4, 0),
            RecordBytes.entry(cookie: 5, tid: 80, nr: 2, args: [0, 0], items: [RecordBytes.path("/secret")]), RecordBytes.ret(cookie: 5, 3),
            RecordBytes.entry(cookie: 6, tid: 80, nr: 1, args: [4, 0x1000, 22]),  // no return yet
            RecordBytes.entry(cookie: 7, tid: 81, ppid: 80, nr: 0, args: [3, 0x3000, 4200]), RecordBytes.ret(cookie: 7, 22),
        ] + connecting(pid: 81, readsSecret: false))
        let syn = EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080, syn: true))
        guard case .drop(let pid, let why) = m.decide(syn, now: 10) else { Issue.record("the pipe reader's connection left"); return }
        #expect(pid == 81 && why.contains("received data through pipe:[vm:1] from managed pid 80"), "\(why)")
    }

    /// The same for a file: a process that has the file open reads what a managed writer puts
    /// there before the write's return is read.
    @Test func aFileReaderIsManagedFromTheWritersEntry() throws {
        let m = try model([
            RecordBytes.entry(cookie: 1, tid: 82, nr: 2, args: [0, 2], items: [RecordBytes.path("/tmp/shared")]), RecordBytes.ret(cookie: 1, 5),
            RecordBytes.entry(cookie: 2, tid: 83, nr: 2, args: [0, 0], items: [RecordBytes.path("/tmp/shared")]), RecordBytes.ret(cookie: 2, 6),
            RecordBytes.entry(cookie: 3, tid: 82, nr: 2, args: [0, 0], items: [RecordBytes.path("/secret")]), RecordBytes.ret(cookie: 3, 3),
            RecordBytes.entry(cookie: 4, tid: 82, nr: 1, args: [5, 0x1000, 22]),  // no return yet
            RecordBytes.entry(cookie: 5, tid: 83, nr: 0, args: [6, 0x3000, 4200]), RecordBytes.ret(cookie: 5, 22),
        ] + connecting(pid: 83, readsSecret: false))
        #expect(m.managedSet.files["/tmp/shared"] != nil)
        let syn = EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080, syn: true))
        guard case .drop(let pid, _) = m.decide(syn, now: 10) else { Issue.record("the file reader's connection left"); return }
        #expect(pid == 83)
    }

    /// An i386 socketcall's six 32-bit arguments, as the plugin copies them.
    static func socketcallArgs(_ words: [UInt32]) -> [UInt8] {
        (words + [UInt32](repeating: 0, count: 6 - words.count)).flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * $0)) } }
    }

    /// A 32-bit process's send (socketcall 9: send has no address) into a socket pair carries the
    /// taint from its entry too: the child holding the other end cannot connect out.
    @Test func an_i386SendIntoASocketPairIsCarriedFromItsEntry() throws {
        let m = try model([
            RecordBytes.entry(cookie: 10, tid: 84, nr: 102, args: [8, 0x7000], items: [RecordBytes.item(.socketcall, Self.socketcallArgs([1, 1, 0, 0x7100]))], i386: true),
            RecordBytes.ret(cookie: 10, 0, items: [RecordBytes.item(.fdPair, [3, 0, 0, 0, 4, 0, 0, 0])]),
            RecordBytes.entry(cookie: 11, tid: 84, nr: 2, i386: true), RecordBytes.ret(cookie: 11, 85),
            RecordBytes.entry(cookie: 12, tid: 85, ppid: 84, nr: 6, args: [3], i386: true), RecordBytes.ret(cookie: 12, 0),
            RecordBytes.entry(cookie: 13, tid: 84, nr: 5, args: [0x1000, 0], items: [RecordBytes.path("/secret")], i386: true), RecordBytes.ret(cookie: 13, 5),
            RecordBytes.entry(cookie: 14, tid: 84, nr: 102, args: [9, 0x7000], items: [RecordBytes.item(.socketcall, Self.socketcallArgs([3, 0x1000, 22, 0]))],
                              i386: true),  // no return yet
        ] + connecting(pid: 85, readsSecret: false))
        let syn = EthernetFrame(Self.ipv4(proto: 6, to: host, port: 8080, syn: true))
        guard case .drop(let pid, let why) = m.decide(syn, now: 10) else { Issue.record("the socket pair's other holder connected out"); return }
        #expect(pid == 85 && why.contains("from managed pid 84"), "\(why)")
    }

    /// A socketcall whose arguments the record cuts short is not decoded (no call read from past
    /// its end); the calls after it are.
    @Test func aCutShortSocketcallIsNotDecoded() throws {
        let m = try model([
            RecordBytes.entry(cookie: 21, tid: 86, nr: 5, args: [0x1000, 0], items: [RecordBytes.path("/secret")], i386: true), RecordBytes.ret(cookie: 21, 5),
            RecordBytes.entry(cookie: 20, tid: 86, nr: 102, args: [3, 0x7000], items: [
                RecordBytes.item(.socketcall, [4, 0, 0, 0, 0, 0x60, 0, 0]),
                RecordBytes.item(.sockaddr, Self.sockaddr(host, 8080))], i386: true),
            RecordBytes.ret(cookie: 20, 0),
            RecordBytes.entry(cookie: 22, tid: 86, nr: 5, args: [0x1000, 0x41], items: [RecordBytes.path("/tmp/after")], i386: true), RecordBytes.ret(cookie: 22, 6),
        ])
        #expect(m.egressAttempts.isEmpty, "\(m.egressAttempts)")
        #expect(m.managedSet.processes.map(\.pid) == [86])
        #expect(m.managedSet.files["/tmp/after"] != nil)  // the call after it, created by the managed process
    }
}
