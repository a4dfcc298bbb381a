import Foundation
import KanshiCore
import Testing
@testable import KanshiJournal

/// A journal copied chunk by chunk into a replica, as a sensor ships it to the server.
@Suite struct JournalShippingTests {
    /// A journal of `writes` 4 KiB writes (random data) in 64 KiB segments, with a sync (checkpoint) every 5.
    static func journal(_ dir: String, writes: Int, seed: UInt8 = 1) throws {
        let w = try JournalWriter(directory: dir, options: .init(segmentBytes: 64 << 10), logger: testLogger)
        var g = SplitMix(seed: UInt64(seed))
        for i in 0..<writes {
            try appendWrite(w, lba: UInt64(i * 8), data: (0..<4096).map { _ in UInt8(truncatingIfNeeded: g.next()) }, time: UInt64(1_000 + i))
            if i % 5 == 4 { try w.sync() }
        }
        try w.close()
    }

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Ships everything from the replica's end; returns the chunks sent.
    @discardableResult
    static func ship(_ source: String, into replica: JournalReplica, limit: Int = 20_000) throws -> Int {
        var n = 0
        while let c = try JournalChunks.next(directory: source, from: replica.position, limit: limit) {
            let a = try c.bytes.withUnsafeBytes { try replica.append(at: c.position, $0) }
            #expect(a.next == c.next)
            n += 1
        }
        return n
    }

    static func files(_ dir: String) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasSuffix(".kjs") {
            out[name] = fileBytes(dir + "/" + name)
        }
        return out
    }

    @Test func aCopyShippedInChunksIsTheJournalByteForByte() throws {
        let src = TempDir(), dst = TempDir()
        try Self.journal(src.path, writes: 60)
        let replica = try JournalReplica(directory: dst.path + "/copy")
        let chunks = try Self.ship(src.path, into: replica)
        #expect(chunks > 10)
        #expect(Self.files(src.path) == Self.files(dst.path + "/copy"))
        let report = try JournalVerifier.verify(directory: dst.path + "/copy")
        #expect(report.ok && report.segments.count > 3, "\(String(describing: report.problem))")
        // Nothing more to send.
        #expect(try JournalChunks.next(directory: src.path, from: replica.position) == nil)
        #expect(try JournalChunks.bytesAfter(directory: src.path, position: replica.position) == 0)
    }

    @Test func aReplicaReopenedHalfwayGoesOnWhereItEnded() throws {
        let src = TempDir(), dst = TempDir()
        try Self.journal(src.path, writes: 40)
        var replica = try JournalReplica(directory: dst.path)
        var sent = 0
        while sent < 7, let c = try JournalChunks.next(directory: src.path, from: replica.position, limit: 9000) {
            try c.bytes.withUnsafeBytes { _ = try replica.append(at: c.position, $0) }
            sent += 1
        }
        let before = replica.position
        replica = try JournalReplica(directory: dst.path)
        #expect(replica.position == before)
        try Self.ship(src.path, into: replica)
        #expect(Self.files(src.path) == Self.files(dst.path))
    }

    @Test func aTornRecordLeftByACrashIsCutOffOnReopen() throws {
        let src = TempDir(), dst = TempDir()
        try Self.journal(src.path, writes: 3)
        let replica = try JournalReplica(directory: dst.path)
        try Self.ship(src.path, into: replica)
        let end = replica.position
        // The start of a record appended (written, never synced nor acknowledged): here the first record's first 40 bytes.
        let path = segmentPath(dst.path, end.segment)
        let first = Array(fileBytes(path)[JournalFormat.segmentHeaderLength..<(JournalFormat.segmentHeaderLength + 40)])
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        h.seekToEndOfFile()
        h.write(Data(first))
        try h.close()
        let again = try JournalReplica(directory: dst.path)
        #expect(again.position == end)
        #expect(UInt64(fileBytes(path).count) == end.offset)
    }

    /// Every refusal leaves the copy as it was, and the right chunk is still taken after it.
    @Test func badChunksAreRefusedAndChangeNothing() throws {
        let src = TempDir(), other = TempDir(), dst = TempDir()
        try Self.journal(src.path, writes: 30)
        try Self.journal(other.path, writes: 30, seed: 9)
        let replica = try JournalReplica(directory: dst.path)
        // Ship the first segment and a bit of the second.
        while replica.position.segment < 2, let c = try JournalChunks.next(directory: src.path, from: replica.position, limit: 20_000) {
            try c.bytes.withUnsafeBytes { _ = try replica.append(at: c.position, $0) }
        }
        let first = try #require(try JournalChunks.next(directory: src.path, from: replica.position, limit: 9000))
        try first.bytes.withUnsafeBytes { _ = try replica.append(at: first.position, $0) }
        let next = try #require(try JournalChunks.next(directory: src.path, from: replica.position, limit: 9000))
        let stored = Self.files(dst.path), position = replica.position, sequence = replica.nextSequence

        func refused(_ at: ShipPosition, _ bytes: [UInt8], _ check: (ReplicaError) -> Bool, _ what: Comment) {
            do {
                try bytes.withUnsafeBytes { _ = try replica.append(at: at, $0) }
                Issue.record("accepted: \(what)")
            } catch let e as ReplicaError {
                #expect(check(e), "\(what): \(e)")
            } catch {
                Issue.record("\(what): \(error)")
            }
            #expect(Self.files(dst.path) == stored, "\(what) changed the copy")
            #expect(replica.position == position && replica.nextSequence == sequence)
        }
        func malformed(_ e: ReplicaError, _ text: String) -> Bool {
            if case .malformed(_, let why) = e { return why.contains(text) }
            return false
        }
        refused(first.position, first.bytes, { $0 == .outOfOrder(expected: position, got: first.position) }, "a duplicate")
        refused(next.next, next.bytes, { if case .outOfOrder = $0 { return true } else { return false } }, "a gap")
        var flipped = next.bytes
        flipped[flipped.count / 2] ^= 0x40
        refused(next.position, flipped, { malformed($0, "checksum") }, "a flipped bit")
        refused(next.position, Array(next.bytes.dropLast(10)), { malformed($0, "runs past the end") }, "a cut record")
        refused(next.position, [], { malformed($0, "empty") }, "an empty chunk")
        // A valid record from another journal: its sequence number or chain does not fit here.
        let foreign = try #require(try JournalChunks.next(directory: other.path, from: ShipPosition(segment: 1, offset: 96), limit: 1))
        refused(next.position, foreign.bytes, { malformed($0, "sequence number") }, "another journal's record")
        // Another journal's second segment (valid on its own): its header names another chain.
        let otherSecond = try #require(try JournalChunks.next(directory: other.path, from: ShipPosition(segment: 2, offset: 0)))
        let fresh = TempDir()
        let r2 = try JournalReplica(directory: fresh.path)
        let own = try #require(try JournalChunks.next(directory: src.path, from: .start, limit: 1 << 20))
        try own.bytes.withUnsafeBytes { _ = try r2.append(at: own.position, $0) }
        #expect(r2.position == ShipPosition(segment: 2, offset: 0))
        do {
            try otherSecond.bytes.withUnsafeBytes { _ = try r2.append(at: r2.position, $0) }
            Issue.record("another chain's segment was accepted")
        } catch let e as ReplicaError {
            #expect(malformed(e, "chain is broken"), "\(e)")
        }
        // After all that, the right chunk goes in and the copy still verifies.
        try next.bytes.withUnsafeBytes { _ = try replica.append(at: next.position, $0) }
        try Self.ship(src.path, into: replica)
        #expect(Self.files(src.path) == Self.files(dst.path))
        #expect(try JournalVerifier.verify(directory: dst.path).ok)
    }

    @Test func aChangedCheckpointIsRefused() throws {
        let src = TempDir(), dst = TempDir()
        try Self.journal(src.path, writes: 6)
        // Rewrite the first record's data (recomputing its checksum): the checkpoint after it no longer matches.
        let path = segmentPath(src.path, 1)
        var bytes = fileBytes(path)
        let first = JournalFormat.segmentHeaderLength
        let length = Int(bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: first + 4, as: UInt32.self) })
        bytes[first + length - 1] ^= 0xff
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[(first + 4)..<(first + length)])) }
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { bytes[first + i] = $0[i] } }
        writeBytes(path, bytes)
        let replica = try JournalReplica(directory: dst.path)
        do {
            try Self.ship(src.path, into: replica, limit: 1 << 20)
            Issue.record("a segment with a changed record and its old checkpoint was accepted")
        } catch let ReplicaError.malformed(_, why) {
            #expect(why.contains("checkpoint hash does not match") || why.contains("seal hash does not match"), "\(why)")
        }
        #expect(replica.position == .start)
    }
}
