import Foundation
import KanshiCore
import Testing
@testable import KanshiJournal

@Suite struct JournalWriteReadTests {
    @Test func appendedWritesReadBackInOrderWithData() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        var expected: [(UInt64, [UInt8])] = []
        for i in 0..<50 {
            let data = (0..<(512 * (i % 9 + 1))).map { UInt8(truncatingIfNeeded: $0 ^ i) }
            try appendWrite(w, lba: UInt64(i * 16), data: data, time: UInt64(1_000 + i))
            expected.append((UInt64(i * 16), data))
        }
        try w.close()
        let got = try writes(in: dir.path)
        #expect(got.count == 50)
        for (g, e) in zip(got, expected) {
            #expect(g.0 == e.0)
            #expect(g.1 == e.1)
        }
        var seqs: [UInt64] = []
        try JournalReader(directory: dir.path).forEachRecord { seqs.append($0.sequence) }
        #expect(seqs == Array(1...UInt64(seqs.count)))
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok)
        #expect(report.kinds["write"] == 50)
    }

    @Test func entropiesAndFlagsSurviveTheRoundTrip() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        let data = [UInt8](repeating: 0, count: 4096) + (0..<4096).map { UInt8($0 % 256) }
        let e = BlockEvent(operation: .write, timeNs: 42, lba: 8, length: UInt32(data.count), connection: 3, fua: true,
                           entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
        let meta = BlockRecords.encodeMetadata(e)
        try meta.withUnsafeBytes { m in try data.withUnsafeBytes { d in _ = try w.append(kind: .blockWrite, timeNs: 42, parts: [m, d]) } }
        try w.close()
        var seen: BlockEvent?
        try JournalReader(directory: dir.path).forEachBlockEvent { ev, d in
            seen = ev
            #expect(Array(d) == data)
        }
        #expect(seen == e)
    }

    @Test func aBatchGetsConsecutiveSequenceNumbersInOrder() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 64 << 10), logger: testLogger)
        try appendWrite(w, lba: 1, data: [1])
        let datas = (0..<40).map { i in [UInt8](repeating: UInt8(i), count: 4096) }
        let metas = datas.enumerated().map { i, d in
            BlockRecords.encodeMetadata(BlockEvent(operation: .write, timeNs: 5, lba: UInt64(100 + i), length: UInt32(d.count),
                                                   entropies: d.withUnsafeBytes { Entropy.perBlock($0) }))
        }
        // Own the bytes explicitly so the pointers stay valid for the whole append.
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: (metas[0].count + 4096) * 40, alignment: 8)
        defer { storage.deallocate() }
        var records: [JournalWriter.PendingRecord] = []
        var at = 0
        for (m, d) in zip(metas, datas) {
            let mp = UnsafeMutableRawBufferPointer(rebasing: storage[at..<at + m.count])
            mp.copyBytes(from: m)
            let dp = UnsafeMutableRawBufferPointer(rebasing: storage[at + m.count..<at + m.count + d.count])
            dp.copyBytes(from: d)
            at += m.count + d.count
            records.append(.init(kind: .blockWrite, timeNs: 5, parts: [UnsafeRawBufferPointer(mp), UnsafeRawBufferPointer(dp)]))
        }
        let first = try w.append(records)
        #expect(first == 2)
        try appendWrite(w, lba: 2, data: [2])
        try w.close()
        let got = try writes(in: dir.path)
        #expect(got.map(\.0) == [1] + (100..<140).map(UInt64.init) + [2])
        #expect(Array(got[1...40].map(\.1)) == datas)
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        #expect(report.segments.count > 1, "a batch larger than a segment still rotates after it")
    }

    @Test func segmentsRotateAndChain() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 64 << 10), logger: testLogger)
        for i in 0..<100 { try appendWrite(w, lba: UInt64(i), data: [UInt8](repeating: UInt8(i), count: 4096)) }
        try w.close()
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        #expect(report.segments.count > 5)
        #expect(report.segments.dropLast().allSatisfy { $0.sealed })
        #expect(try writes(in: dir.path).count == 100)
    }

    @Test func reopeningContinuesTheSequenceAndChain() throws {
        let dir = TempDir()
        for round in 0..<3 {
            let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 32 << 10), logger: testLogger)
            for i in 0..<10 { try appendWrite(w, lba: UInt64(round * 100 + i), data: [UInt8](repeating: 7, count: 4096)) }
            try w.close()
        }
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        #expect(try writes(in: dir.path).map(\.0) == (0..<3).flatMap { r in (0..<10).map { UInt64(r * 100 + $0) } })
    }

    @Test func aSecondWriterIsRefused() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(throws: JournalError.self) { _ = try JournalWriter(directory: dir.path, logger: testLogger) }
        do {
            _ = try JournalWriter(directory: dir.path, logger: testLogger)
        } catch {
            #expect("\(error)".contains("in use by another process"))
        }
        try w.close()
    }

    @Test func aDirectoryWithForeignFilesIsRefused() throws {
        let dir = TempDir()
        writeBytes(dir.path + "/notes.txt", Array("hello".utf8))
        do {
            _ = try JournalWriter(directory: dir.path, logger: testLogger)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("notes.txt"))
        }
    }

    @Test func aFileInsteadOfADirectoryIsRefused() throws {
        let dir = TempDir()
        writeBytes(dir.path + "/f", [1])
        #expect(throws: JournalError.self) { _ = try JournalWriter(directory: dir.path + "/f", logger: testLogger) }
        #expect(throws: JournalError.self) { _ = try JournalReader(directory: dir.path + "/missing") }
    }
}

@Suite struct JournalTailTests {
    @Test func followsAGrowingJournalAcrossSegments() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 32 << 10), logger: testLogger)
        let tail = try JournalTail(directory: dir.path)
        var seen: [UInt64] = []
        var lbas: [UInt64] = []
        for round in 0..<5 {
            for i in 0..<7 { try appendWrite(w, lba: UInt64(round * 100 + i), data: [UInt8](repeating: 1, count: 4096)) }
            try tail.poll { r in
                seen.append(r.sequence)
                if let (e, _) = try BlockRecords.decode(r) { lbas.append(e.lba) }
            }
        }
        try w.close()
        try tail.poll { r in seen.append(r.sequence) }
        #expect(seen == Array(1...UInt64(seen.count)), "every record once, in order")
        #expect(lbas == (0..<5).flatMap { r in (0..<7).map { UInt64(r * 100 + $0) } })
        #expect(try tail.poll { _ in } == 0)
    }

    @Test func aPartlyWrittenRecordWaitsForTheNextPoll() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        try appendWrite(w, lba: 1, data: [UInt8](repeating: 1, count: 512))
        try w.close()
        let path = segmentPath(dir.path, 1)
        let full = fileBytes(path)
        let extra = [UInt8](repeating: 0xAB, count: 10)
        writeBytes(path, full + extra)  // the start of a record still being written
        let tail = try JournalTail(directory: dir.path)
        var n = 0
        try tail.poll { _ in n += 1 }
        #expect(n == 2, "the write and the checkpoint; the partial record is left for later")
    }
}

@Suite struct JournalCrashRecoveryTests {
    /// A journal of `n` writes, closed.
    func makeJournal(_ n: Int) throws -> TempDir {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        for i in 0..<n { try appendWrite(w, lba: UInt64(i * 8), data: [UInt8](repeating: UInt8(i), count: 4096)) }
        try w.close()
        return dir
    }

    @Test(arguments: [1, 31, 32, 100, 4000])
    func aTornLastRecordIsCutAndReported(keep: Int) throws {
        let dir = try makeJournal(5)
        let path = segmentPath(dir.path, 1)
        // Append the start of one more record, as a crash mid-write leaves it.
        let before = fileBytes(path)
        let extra = try {
            let other = try makeJournal(1)
            let b = fileBytes(segmentPath(other.path, 1))
            return Array(b[JournalFormat.segmentHeaderLength...])
        }()
        writeBytes(path, before + extra.prefix(keep))
        let verify = try JournalVerifier.verify(directory: dir.path)
        #expect(verify.ok)
        #expect(verify.tornTail != nil)

        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        let r = try #require(w.recovery)
        #expect(r.offset == UInt64(before.count))
        #expect(r.bytesCut == UInt64(min(keep, extra.count)))
        try appendWrite(w, lba: 999, data: [UInt8](repeating: 9, count: 512))
        try w.close()
        let got = try writes(in: dir.path)
        #expect(got.map(\.0) == [0, 8, 16, 24, 32, 999])
        let after = try JournalVerifier.verify(directory: dir.path)
        #expect(after.ok && after.tornTail == nil)
        #expect(after.kinds["note"] == 1, "the recovery is recorded in the journal")
    }

    @Test func aZeroFilledTailIsCut() throws {
        let dir = try makeJournal(3)
        let path = segmentPath(dir.path, 1)
        let before = fileBytes(path)
        writeBytes(path, before + [UInt8](repeating: 0, count: 8192))
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(w.recovery?.bytesCut == 8192)
        try w.close()
        #expect(try writes(in: dir.path).count == 3)
    }

    @Test func damageBeforeTheEndIsNotCutAndNothingIsTouched() throws {
        let dir = try makeJournal(5)
        let path = segmentPath(dir.path, 1)
        var bytes = fileBytes(path)
        let offsets = recordOffsets(path)
        bytes[offsets[2] + 100] ^= 0xff
        writeBytes(path, bytes)
        do {
            _ = try JournalWriter(directory: dir.path, logger: testLogger)
            Issue.record("expected the writer to refuse a damaged journal")
        } catch let JournalError.corrupt(location, reason) {
            #expect(location.offset == UInt64(offsets[2]))
            #expect(reason.contains("checksum"))
        }
        #expect(fileBytes(path) == bytes, "refusing must not modify the journal")
    }
}

@Suite struct JournalTamperTests {
    func makeJournal(segmentBytes: UInt64 = 256 << 20, writes n: Int = 20) throws -> TempDir {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: segmentBytes), logger: testLogger)
        for i in 0..<n {
            try appendWrite(w, lba: UInt64(i * 8), data: [UInt8](repeating: UInt8(i), count: 4096))
            if i % 5 == 4 { try w.sync() }
        }
        try w.close()
        return dir
    }

    @Test func aFlippedByteIsNamed() throws {
        let dir = try makeJournal()
        let path = segmentPath(dir.path, 1)
        var bytes = fileBytes(path)
        let offsets = recordOffsets(path)
        bytes[offsets[3] + 200] ^= 1
        writeBytes(path, bytes)
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.location.offset == UInt64(offsets[3]))
        #expect(p.location.sequence == 4)
        #expect(p.reason.contains("checksum"))
    }

    @Test func aChangeWithARecomputedChecksumBreaksTheHash() throws {
        let dir = try makeJournal()
        let path = segmentPath(dir.path, 1)
        var bytes = fileBytes(path)
        let o = recordOffsets(path)[1]
        let len = Int(bytes[o + 4]) | Int(bytes[o + 5]) << 8 | Int(bytes[o + 6]) << 16 | Int(bytes[o + 7]) << 24
        bytes[o + len - 1] ^= 0x55
        let crc = CRC32C.checksum(Array(bytes[(o + 4)..<(o + len)]))
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { bytes[o + i] = $0[i] } }
        writeBytes(path, bytes)
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.reason.contains("hash does not match"))
    }

    @Test func aRemovedRecordBreaksTheSequence() throws {
        let dir = try makeJournal()
        let path = segmentPath(dir.path, 1)
        let bytes = fileBytes(path)
        let o = recordOffsets(path)
        writeBytes(path, Array(bytes[..<o[2]]) + Array(bytes[o[3]...]))
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.reason.contains("sequence number 4 where 3 was expected"))
    }

    @Test func aRemovedSegmentIsNamed() throws {
        let dir = try makeJournal(segmentBytes: 16 << 10, writes: 40)
        try FileManager.default.removeItem(atPath: segmentPath(dir.path, 3))
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.reason.contains("missing"))
        #expect(p.location.segmentPath.hasSuffix(JournalFormat.segmentName(3)))
    }

    @Test func removedFirstSegmentsAreDetected() throws {
        let dir = try makeJournal(segmentBytes: 16 << 10, writes: 40)
        // Remove segment 1 and renumber the rest, as a careful forger would.
        let count = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("segment-") }.count
        try FileManager.default.removeItem(atPath: segmentPath(dir.path, 1))
        for i in 2...UInt64(count) {
            try FileManager.default.moveItem(atPath: segmentPath(dir.path, i), toPath: segmentPath(dir.path, i - 1))
        }
        let r = try JournalVerifier.verify(directory: dir.path)
        #expect(r.problem != nil)
    }

    @Test func swappedSegmentsAreDetected() throws {
        let dir = try makeJournal(segmentBytes: 16 << 10, writes: 40)
        let a = segmentPath(dir.path, 2), b = segmentPath(dir.path, 3)
        let ab = fileBytes(a), bb = fileBytes(b)
        writeBytes(a, bb)
        writeBytes(b, ab)
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.location.segmentPath.hasSuffix(JournalFormat.segmentName(2)))
    }

    @Test func aReplacedSegmentBreaksTheChain() throws {
        // Segment 2 from a different journal with identical content but another time.
        let dir = try makeJournal(segmentBytes: 16 << 10, writes: 40)
        let other = try makeJournal(segmentBytes: 16 << 10, writes: 40)
        writeBytes(segmentPath(dir.path, 2), fileBytes(segmentPath(other.path, 2)))
        let r = try JournalVerifier.verify(directory: dir.path)
        let p = try #require(r.problem)
        #expect(p.reason.contains("previous-segment hash") || p.reason.contains("hash does not match"))
    }

    @Test func aDamagedHeaderIsNamed() throws {
        let dir = try makeJournal()
        let path = segmentPath(dir.path, 1)
        var bytes = fileBytes(path)
        bytes[20] ^= 1
        writeBytes(path, bytes)
        let r = try JournalVerifier.verify(directory: dir.path)
        #expect(r.problem?.reason.contains("header checksum") == true)
        #expect(throws: JournalError.self) { try JournalReader(directory: dir.path).forEachRecord { _ in } }
    }
}

@Suite struct RanSAPExportTests {
    @Test func rowsFollowTheDatasetLayout() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, logger: testLogger)
        let data = [UInt8](repeating: 0, count: 4096) + (0..<4096).map { UInt8($0 % 256) } + [UInt8](repeating: 1, count: 512)
        try appendWrite(w, lba: 100, data: data, time: 1_586_844_413_621_437_423)
        let read = BlockRecords.encodeMetadata(BlockEvent(operation: .read, timeNs: 1_586_844_413_000_000_005, lba: 64, length: 6144))
        try read.withUnsafeBytes { _ = try w.append(kind: .blockRead, timeNs: 1_586_844_413_000_000_005, parts: [$0]) }
        try w.close()
        let out = TempDir()
        let s = try RanSAPExport.export(journal: JournalReader(directory: dir.path), to: out.path)
        #expect(s.writeRows == 3 && s.readRows == 2)
        let writesCSV = try String(contentsOfFile: out.path + "/ata_write.csv", encoding: .utf8)
        let rows = writesCSV.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(rows[0][0] == "1586844413" && rows[0][1] == "621437423" && rows[0][2] == "100" && rows[0][3] == "4096")
        #expect(Double(rows[0][4]) == 0)
        #expect(rows[1][2] == "108" && abs(Double(rows[1][4])! - 1) < 1e-12)
        #expect(rows[2][2] == "116" && rows[2][3] == "512")
        #expect(rows.allSatisfy { $0.count == 6 })
        let readsCSV = try String(contentsOfFile: out.path + "/ata_read.csv", encoding: .utf8)
        #expect(readsCSV == "1586844413,5,64,4096\n1586844413,5,72,2048\n")
    }
}

/// The staged writer (`Options.staged`): records pass through shared memory
/// and reach the segment by direct I/O on a thread of their own.
@Suite struct StagedJournalTests {
    @Test func stagedRecordsRoundTripAcrossSegmentsAndReopening() throws {
        let dir = TempDir()
        var expected: [(UInt64, [UInt8])] = []
        var shared: [String] = []
        for round in 0..<3 {
            let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 64 << 10, staged: true), logger: testLogger)
            if let p = w.stagingPath {
                shared.append(p)
                #expect(FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
            }
            for i in 0..<60 {
                // Odd sizes, so records end anywhere in a block.
                let data = (0..<(100 + 517 * (i % 11))).map { UInt8(truncatingIfNeeded: $0 &* 7 ^ i ^ round) }
                let lba = UInt64(round * 1000 + i)
                try appendWrite(w, lba: lba, data: data, time: UInt64(1_000 + round * 100 + i))
                expected.append((lba, data))
                if i % 25 == 0 { try w.sync() }
            }
            try w.close()
        }
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        #expect(report.segments.count > 3)
        let got = try writes(in: dir.path)
        #expect(got.map(\.0) == expected.map(\.0))
        #expect(got.map(\.1) == expected.map(\.1))
        // Closed cleanly: no shared memory and no pointer to it are left.
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
        for p in shared { #expect(!FileManager.default.fileExists(atPath: p)) }
    }

    @Test func twoThreadsAppendingThroughManyRotationsLeaveAnIntactChain() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 24 << 10, staged: true), logger: testLogger)
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
            for i in 0..<600 {
                let data = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 64 + (i * 37 + thread * 11) % 3000)
                try? appendWrite(w, lba: UInt64(thread * 10_000 + i), data: data)
                if i % 97 == 0 { try? w.sync() }
            }
        }
        try w.close()
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        #expect(report.segments.count > 40)
        let got = try writes(in: dir.path)
        #expect(got.count == 1200)
        for t in 0..<2 {
            #expect(got.map(\.0).filter { $0 / 10_000 == UInt64(t) } == (0..<600).map { UInt64(t * 10_000 + $0) }, "each thread's writes in its order")
        }
    }

    /// A pointer to something that is not this journal's ring (a damaged
    /// pointer, or a file of someone else's) is dropped; the file is not
    /// read, changed or removed.
    @Test(arguments: ["kanshi-journal-not-a-ring", "unrelated-file"])
    func aPointerToAForeignFileLeavesTheFileAlone(name: String) throws {
        let dir = TempDir()
        let other = TempDir()
        do {
            let w = try JournalWriter(directory: dir.path, logger: testLogger)
            try appendWrite(w, lba: 1, data: [1, 2, 3])
            try w.close()
        }
        let foreign = other.path + "/" + name
        let content = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        writeBytes(foreign, content)
        writeBytes(dir.path + "/STAGING", Array((foreign + "\n").utf8))
        let again = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(again.recoveredStagedBytes == 0)
        try again.close()
        #expect(fileBytes(foreign) == content)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
        #expect(try JournalVerifier.verify(directory: dir.path).ok)
    }

    /// A copy of a journal whose server was killed does not take the
    /// original's staged records (nor remove them); the original still does.
    @Test func aCopiedJournalLeavesTheOriginalsStagedRecords() throws {
        let dir = TempDir()
        let copy = TempDir()
        let shared: String
        do {
            let w = try JournalWriter(directory: dir.path, options: .init(staged: true), logger: testLogger)
            guard let p = w.stagingPath else { try w.close(); return }
            shared = p
            try appendWrite(w, lba: 1, data: [UInt8](repeating: 1, count: 4096))
            try w.sync()
            w.pauseStagingForTesting()
            try appendWrite(w, lba: 2, data: [UInt8](repeating: 2, count: 4096))
            w.abandonForTesting()
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name != "LOCK" {
            try FileManager.default.copyItem(atPath: dir.path + "/" + name, toPath: copy.path + "/" + name)
        }
        let copied = try JournalWriter(directory: copy.path, logger: testLogger)
        #expect(copied.recoveredStagedBytes == 0)
        try copied.close()
        #expect(FileManager.default.fileExists(atPath: shared))
        let original = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(original.recoveredStagedBytes > 4096)
        try original.close()
        #expect(try writes(in: dir.path).map(\.0) == [1, 2])
        #expect(!FileManager.default.fileExists(atPath: shared))
    }

    /// Shared memory without room for the ring: private memory instead, and
    /// nothing left behind (rather than SIGBUS on a later store).
    @Test(.enabled(if: geteuid() == 0, "needs root to mount a small tmpfs"))
    func noRoomForSharedMemoryFallsBackToPrivateMemory() throws {
        let dir = TempDir()
        let shm = TempDir()
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=1m", "tmpfs", shm.path]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0)
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [shm.path]
            try? umount.run()
            umount.waitUntilExit()
        }
        let area = try StagingArea(journal: dir.path, capacity: 8 << 20, sharedDirectory: shm.path)
        #expect(area.path == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: shm.path).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
        area.stop(journal: dir.path)
    }

    @Test func aTailFollowsAStagedJournalAcrossSegments() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(segmentBytes: 32 << 10, staged: true), logger: testLogger)
        let tail = try JournalTail(directory: dir.path)
        var lbas: [UInt64] = []
        var seen: [UInt64] = []
        for round in 0..<5 {
            for i in 0..<7 { try appendWrite(w, lba: UInt64(round * 100 + i), data: [UInt8](repeating: 1, count: 1000 + i)) }
            try w.sync()
            try tail.poll { r in
                seen.append(r.sequence)
                if let (e, _) = try BlockRecords.decode(r) { lbas.append(e.lba) }
            }
            #expect(lbas.count == (round + 1) * 7, "everything synced is visible")
        }
        try w.close()
        try tail.poll { r in seen.append(r.sequence) }
        #expect(seen == Array(1...UInt64(seen.count)))
        #expect(lbas == (0..<5).flatMap { r in (0..<7).map { UInt64(r * 100 + $0) } })
    }

    @Test func aSyncedStagedRecordIsInTheFileAtOnce() throws {
        let dir = TempDir()
        let w = try JournalWriter(directory: dir.path, options: .init(staged: true), logger: testLogger)
        try appendWrite(w, lba: 5, data: [UInt8](repeating: 9, count: 4096))
        try w.sync()
        var seen: [UInt64] = []
        try JournalTail(directory: dir.path).poll { r in
            if r.kind == .blockWrite { seen.append(r.sequence) }
        }
        #expect(seen == [1])
        try w.close()
    }

    @Test func recordsAKilledStagedWriterHeldInMemoryAreRecovered() throws {
        let dir = TempDir()
        let shared: String
        do {
            let w = try JournalWriter(directory: dir.path, options: .init(staged: true), logger: testLogger)
            guard let p = w.stagingPath else {
                // No /dev/shm: a killed writer loses its staged records; nothing to test here.
                try w.close()
                return
            }
            shared = p
            for i in 0..<30 { try appendWrite(w, lba: UInt64(i), data: [UInt8](repeating: UInt8(i), count: 4096)) }
            try w.sync()
            w.pauseStagingForTesting()
            for i in 30..<50 { try appendWrite(w, lba: UInt64(i), data: [UInt8](repeating: UInt8(i), count: 3000 + i)) }
            w.abandonForTesting()
        }
        #expect(FileManager.default.fileExists(atPath: shared))
        #expect(FileManager.default.fileExists(atPath: dir.path + "/STAGING"))

        let again = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(again.recoveredStagedBytes > 20 * 3000)
        try again.close()
        #expect(!FileManager.default.fileExists(atPath: shared))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
        let report = try JournalVerifier.verify(directory: dir.path)
        #expect(report.ok, "\(String(describing: report.problem))")
        let got = try writes(in: dir.path)
        #expect(got.map(\.0) == (0..<50).map(UInt64.init))
        #expect(got.last?.1 == [UInt8](repeating: 49, count: 3049))
        var notes: [String] = []
        try JournalReader(directory: dir.path).forEachRecord { r in
            if r.kind == .note { notes.append(String(decoding: r.payload, as: UTF8.self)) }
        }
        #expect(notes.contains { $0.contains("recovered-staged-records") })
    }

    @Test func closingLetsTheNextWriterInWhileTheClosedOneIsStillHeld() throws {
        let dir = TempDir()
        let first = try JournalWriter(directory: dir.path, logger: testLogger)
        try appendWrite(first, lba: 1, data: [1, 2, 3])
        // Open: a second writer is refused.
        #expect(throws: JournalError.self) { _ = try JournalWriter(directory: dir.path, logger: testLogger) }
        try first.close()
        // Closed but still referenced (as a thread finishing with it would): the lock is free.
        let second = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(throws: JournalError.self) { try appendWrite(first, lba: 2, data: [4]) }
        try appendWrite(second, lba: 2, data: [4, 5])
        try second.close()
        withExtendedLifetime(first) {}
        #expect(try JournalVerifier.verify(directory: dir.path).ok)
    }

    @Test func aPointerToMissingSharedMemoryIsDropped() throws {
        let dir = TempDir()
        do {
            let w = try JournalWriter(directory: dir.path, logger: testLogger)
            try appendWrite(w, lba: 1, data: [1, 2, 3])
            try w.close()
        }
        writeBytes(dir.path + "/STAGING", Array("/dev/shm/kanshi-journal-gone-0\n".utf8))
        let again = try JournalWriter(directory: dir.path, logger: testLogger)
        #expect(again.recoveredStagedBytes == 0)
        try again.close()
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/STAGING"))
        #expect(try JournalVerifier.verify(directory: dir.path).ok)
    }
}
