import Foundation
import KanshiJournal
import Testing
@testable import KanshiBlock

@Suite struct NBDHandshakeTests {
    @Test func greetingAndGo() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        let (size, flags) = try c.handshake()
        #expect(size == 8 << 20)
        #expect(flags & NBD.hasFlags != 0 && flags & NBD.sendFlush != 0 && flags & NBD.sendFUA != 0)
        #expect(flags & NBD.sendTrim != 0 && flags & NBD.sendWriteZeroes != 0 && flags & NBD.readOnly == 0)
        try await f.stop()
    }

    @Test func listInfoAndExportName() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        let serverFlags = try c.readGreeting()
        #expect(serverFlags == NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        try c.sendClientFlags(NBD.clientFlagFixedNewstyle)  // no NO_ZEROES: expect the 124 zeros
        try c.sendOption(NBD.Option.list.rawValue)
        let (_, t1, d1) = try c.readOptionReply()
        #expect(t1 == NBD.Reply.server.rawValue)
        #expect(be32(d1, 0) == 6 && String(decoding: d1[4...], as: UTF8.self) == "kanshi")
        #expect(try c.readOptionReply().1 == NBD.Reply.ack.rawValue)
        // OPT_LIST with data is invalid.
        try c.sendOption(NBD.Option.list.rawValue, [1, 2])
        #expect(try c.readOptionReply().1 == NBD.Reply.errInvalid.rawValue)
        // OPT_INFO asking for name and description, then stays in option haggling.
        try c.sendOption(NBD.Option.info.rawValue, be(UInt32(6)) + Array("kanshi".utf8) + be(UInt16(2)) + be(UInt16(1)) + be(UInt16(2)))
        var infos: [UInt16: [UInt8]] = [:]
        while true {
            let (opt, type, data) = try c.readOptionReply()
            #expect(opt == NBD.Option.info.rawValue)
            if type == NBD.Reply.ack.rawValue { break }
            #expect(type == NBD.Reply.info.rawValue)
            infos[be16(data, 0)] = Array(data[2...])
        }
        #expect(be64(infos[0]!, 0) == 8 << 20)
        #expect(be32(infos[3]!, 0) == 512 && be32(infos[3]!, 4) == 4096 && be32(infos[3]!, 8) == 32 << 20)
        #expect(String(decoding: infos[1]!, as: UTF8.self) == "kanshi")
        #expect(infos[2] != nil)
        // Malformed OPT_INFO: name length past the data.
        try c.sendOption(NBD.Option.info.rawValue, be(UInt32(100)) + [1, 2])
        #expect(try c.readOptionReply().1 == NBD.Reply.errInvalid.rawValue)
        // Unsupported and unknown options are refused, the handshake goes on.
        try c.sendOption(NBD.Option.structuredReply.rawValue)
        #expect(try c.readOptionReply().1 == NBD.Reply.errUnsupported.rawValue)
        try c.sendOption(4242, [9, 9, 9])
        #expect(try c.readOptionReply().1 == NBD.Reply.errUnsupported.rawValue)
        try c.sendOption(NBD.Option.exportName.rawValue, Array("anything".utf8))
        let reply = try c.receive(10 + 124)
        #expect(be64(reply, 0) == 8 << 20)
        #expect(reply[10...].allSatisfy { $0 == 0 })
        #expect(try c.write([UInt8](repeating: 1, count: 512), at: 0) == 0)
        try await f.stop()
    }

    @Test func abortEndsTheConnection() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        _ = try c.readGreeting()
        try c.sendClientFlags(NBD.clientFlagFixedNewstyle)
        try c.sendOption(NBD.Option.abort.rawValue)
        #expect(try c.readOptionReply().1 == NBD.Reply.ack.rawValue)
        #expect(c.waitForClose())
        try await f.stop()
    }

    /// Input with no error reply in the protocol closes that connection only.
    @Test(arguments: ["unknown client flags", "no fixed newstyle", "bad option magic", "huge option",
                      "truncated handshake", "bad request magic", "huge write"])
    func malformedInputClosesOnlyThatConnection(_ what: String) async throws {
        let f = try await ServerFixture()
        let bystander = try f.client()
        try bystander.handshake()
        #expect(try bystander.write([UInt8](repeating: 0xAB, count: 4096), at: 0) == 0)

        let c = try f.client()
        _ = try c.readGreeting()
        switch what {
        case "unknown client flags": try c.sendClientFlags(0x80)
        case "no fixed newstyle": try c.sendClientFlags(0)
        case "bad option magic":
            try c.sendClientFlags(1)
            try c.send(be(UInt64(0x1234)) + be(UInt32(7)) + be(UInt32(0)))
        case "huge option":
            try c.sendClientFlags(1)
            try c.send(be(NBD.optionMagic) + be(UInt32(7)) + be(UInt32(1 << 30)))
        case "truncated handshake":
            try c.send([0, 0])
            shutdown(c.fd, Int32(SHUT_WR))
        case "bad request magic":
            try c.sendClientFlags(1)
            try c.sendOption(NBD.Option.exportName.rawValue)
            _ = try c.receive(10)
            try c.send(be(UInt32(0xdeadbeef)) + [UInt8](repeating: 0, count: 24))
        case "huge write":
            try c.sendClientFlags(1)
            try c.sendOption(NBD.Option.exportName.rawValue)
            _ = try c.receive(10)
            try c.sendRequest(NBD.Command.write.rawValue, cookie: 9, offset: 0, length: 1 << 30)
        default: Issue.record("unknown case")
        }
        #expect(c.waitForClose(), "\(what): the server should close the connection")

        // The other client is still served, and nothing it wrote is lost.
        let (e, data) = try bystander.read(at: 0, length: 4096)
        #expect(e == 0 && data == [UInt8](repeating: 0xAB, count: 4096))
        let fresh = try f.client()
        try fresh.handshake()
        #expect(try fresh.write([UInt8](repeating: 0xCD, count: 512), at: 4096) == 0)
        try await f.stop()
        #expect(try f.journaledWrites().map(\.0) == [0, 8])
        #expect(try JournalVerifier.verify(directory: f.journalPath).ok)
    }

    @Test func silentClientsAreDroppedAfterTheHandshakeTimeout() async throws {
        let f = try await ServerFixture(handshakeTimeout: .seconds(1))
        let c = try f.client()
        _ = try c.readGreeting()
        let start = Date()
        #expect(c.waitForClose())
        #expect(Date().timeIntervalSince(start) < 4)
        try await f.stop()
    }
}

@Suite struct NBDTransmissionTests {
    @Test func writeReadFlushTrimZero() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        let data = (0..<65536).map { UInt8(truncatingIfNeeded: $0 * 31 + 7) }
        #expect(try c.write(data, at: 1 << 20) == 0)
        let (e, back) = try c.read(at: 1 << 20, length: 65536)
        #expect(e == 0 && back == data)
        #expect(try c.simple(.flush) == 0)
        #expect(f.imageBytes(1 << 20, 65536) == data)
        #expect(try c.simple(.trim, offset: 1 << 20, length: 4096) == 0)
        #expect(try c.read(at: 1 << 20, length: 4096).1 == [UInt8](repeating: 0, count: 4096))
        #expect(try c.simple(.writeZeroes, offset: (1 << 20) + 8192, length: 4096) == 0)
        #expect(try c.read(at: (1 << 20) + 8192, length: 4096).1 == [UInt8](repeating: 0, count: 4096))
        #expect(try c.read(at: (1 << 20) + 4096, length: 4096).1 == Array(data[4096..<8192]))
        #expect(try c.simple(.cache, offset: 0, length: 4096) == 0)
        #expect(try c.write([UInt8](repeating: 5, count: 4096), at: 0, fua: true) == 0)
        try c.sendRequest(NBD.Command.disconnect.rawValue, cookie: 0, offset: 0, length: 0)
        #expect(c.waitForClose(), "NBD_CMD_DISC has no reply; the server closes")
        try await f.stop()
        let writes = try f.journaledWrites()
        #expect(writes.count == 2)
        #expect(writes[0].0 == 2048 && writes[0].1 == data && !writes[0].2)
        #expect(writes[1].0 == 0 && writes[1].2, "FUA is recorded")
        var kinds: [RecordKind] = []
        try JournalReader(directory: f.journalPath).forEachRecord { kinds.append($0.kind) }
        for k in [RecordKind.blockRead, .blockFlush, .blockTrim, .blockWriteZeroes, .note] { #expect(kinds.contains(k)) }
    }

    @Test func badRequestsGetErrorRepliesAndTheConnectionGoesOn() async throws {
        let f = try await ServerFixture(sizeMiB: 8)
        let c = try f.client()
        try c.handshake()
        let size: UInt64 = 8 << 20
        let block = [UInt8](repeating: 0x11, count: 4096)
        // Past the end: reads EINVAL, writes ENOSPC (the payload is consumed).
        #expect(try c.read(at: size, length: 512).0 == NBD.Errno.inval.rawValue)
        #expect(try c.read(at: size - 512, length: 1024).0 == NBD.Errno.inval.rawValue)
        #expect(try c.read(at: UInt64.max - 511, length: 512).0 == NBD.Errno.inval.rawValue)
        #expect(try c.write(block, at: size - 2048) == NBD.Errno.nospc.rawValue)
        #expect(try c.simple(.trim, offset: size, length: 4096) == NBD.Errno.nospc.rawValue)
        // Misaligned offset or length.
        #expect(try c.read(at: 100, length: 512).0 == NBD.Errno.inval.rawValue)
        #expect(try c.write([UInt8](repeating: 1, count: 700), at: 0) == NBD.Errno.inval.rawValue)
        #expect(try c.write(block, at: 3) == NBD.Errno.inval.rawValue)
        // Zero length, oversized (payload read and discarded), unknown command, block status.
        #expect(try c.read(at: 0, length: 0).0 == NBD.Errno.inval.rawValue)
        #expect(try c.read(at: 0, length: 64 << 20).0 == NBD.Errno.inval.rawValue)
        #expect(try c.write([UInt8](repeating: 2, count: (32 << 20) + 512), at: 0) == NBD.Errno.inval.rawValue)
        #expect(try c.simple(.blockStatus, offset: 0, length: 4096) == NBD.Errno.inval.rawValue)
        try c.sendRequest(77, cookie: 77, offset: 0, length: 0)
        #expect(try c.readReply() == (NBD.Errno.inval.rawValue, 77))
        // Still served, and none of the refused writes reached the image or the journal.
        #expect(try c.write(block, at: 0) == 0)
        #expect(try c.read(at: 0, length: 4096).1 == block)
        try await f.stop()
        #expect(try f.journaledWrites().count == 1)
        #expect(f.imageBytes(Int(size) - 2048, 2048).allSatisfy { $0 == 0 })
    }

    @Test func aRequestSplitIntoSingleBytesIsHandled() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        let data = (0..<1024).map { UInt8(truncatingIfNeeded: $0) }
        let bytes = be(NBD.requestMagic) + be(UInt16(0)) + be(NBD.Command.write.rawValue) + be(UInt64(5)) + be(UInt64(512)) + be(UInt32(1024)) + data
        for b in bytes { try c.send([b]) }
        #expect(try c.readReply() == (0, 5))
        // Several requests in one send.
        var batch: [UInt8] = []
        for i in 0..<8 { batch += be(NBD.requestMagic) + be(UInt16(0)) + be(NBD.Command.read.rawValue) + be(UInt64(100 + i)) + be(UInt64(512)) + be(UInt32(512)) }
        try c.send(batch)
        for i in 0..<8 {
            #expect(try c.readReply() == (0, UInt64(100 + i)))
            #expect(try c.receive(512) == Array(data[0..<512]))
        }
        try await f.stop()
    }

    @Test func readOnlyExportsRefuseChanges() async throws {
        let f = try await ServerFixture(readOnly: true)
        let c = try f.client()
        let (_, flags) = try c.handshake()
        #expect(flags & NBD.readOnly != 0)
        #expect(try c.write([UInt8](repeating: 1, count: 512), at: 0) == NBD.Errno.perm.rawValue)
        #expect(try c.simple(.trim, offset: 0, length: 512) == NBD.Errno.perm.rawValue)
        #expect(try c.simple(.writeZeroes, offset: 0, length: 512) == NBD.Errno.perm.rawValue)
        #expect(try c.read(at: 0, length: 512).0 == 0)
        #expect(try c.simple(.flush) == 0)
        try await f.stop()
        #expect(try f.journaledWrites().isEmpty)
    }

    @Test func severalClientsAtOnce() async throws {
        let f = try await ServerFixture(sizeMiB: 16)
        let socket = f.socketPath
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<4 {
                group.addTask {
                    let c = try RawNBDClient(socketPath: socket)
                    try c.handshake()
                    for i in 0..<50 {
                        let data = [UInt8](repeating: UInt8(client * 50 + i), count: 4096)
                        let offset = UInt64(client) << 22 + UInt64(i) * 4096
                        guard try c.write(data, at: offset, cookie: UInt64(i)) == 0 else { throw TestFailure("write failed") }
                        guard try c.read(at: offset, length: 4096, cookie: UInt64(i)).1 == data else { throw TestFailure("read back differs") }
                    }
                    guard try c.simple(.flush) == 0 else { throw TestFailure("flush failed") }
                }
            }
            try await group.waitForAll()
        }
        try await f.stop()
        let writes = try f.journaledWrites()
        #expect(writes.count == 200)
        for (lba, data, _) in writes {
            let offset = Int(lba * 512)
            #expect(f.imageBytes(offset, 4096) == data)
        }
        #expect(try JournalVerifier.verify(directory: f.journalPath).ok)
    }

    @Test func disconnectClosesAfterOutstandingWork() async throws {
        let f = try await ServerFixture()
        let c = try f.client()
        try c.handshake()
        let data = [UInt8](repeating: 0x77, count: 8192)
        try c.sendRequest(NBD.Command.write.rawValue, flags: NBD.commandFlagFUA, cookie: 1, offset: 0, length: 8192, payload: data)
        try c.sendRequest(NBD.Command.disconnect.rawValue, cookie: 2, offset: 0, length: 0)
        #expect(try c.readReply() == (0, 1))
        #expect(c.waitForClose())
        #expect(f.imageBytes(0, 8192) == data)
        try await f.stop()
    }
}
