import Foundation
import KanshiCore
import KanshiJournal
import Logging
import Testing
@testable import KanshiAnalysis
@testable import KanshiML

final class Temp {
    let path = NSTemporaryDirectory() + "kanshi-analysis-" + UUID().uuidString
    init() { try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
    func write(_ rel: String, _ text: String) {
        let full = path + "/" + rel
        try! FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: full, contents: Data(text.utf8))
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite struct RanSAPReaderTests {
    @Test func parsesTheDatasetLayout() throws {
        let t = Temp()
        t.write("run/ata_read.csv", "1586844413,1023892573,7537667,1536\n1586844413,1025319255,7537290,4096\n")
        t.write("run/ata_write.csv", "1586844413,621437423,6614144,4096,0.38741399535582577,0.30724360189754524\r\n1586844415,869004200,6614152,4096,1e-3,0.2\n\n")
        let trace = try RanSAPReader.read(runDirectory: t.path + "/run")
        #expect(trace.reads.count == 2 && trace.writes.count == 2)
        #expect(trace.reads[0] == Access(timeNs: 1_586_844_414_023_892_573, lba: 7_537_667, size: 1536))
        #expect(trace.writes[0].timeNs == 1_586_844_413_621_437_423)
        #expect(abs(trace.writes[0].entropy - 0.387414) < 1e-6)
        #expect(abs(trace.writes[1].entropy - 0.001) < 1e-7)
    }

    @Test(arguments: [
        ("1,2,3\n", "expected 4 comma-separated fields, found 3"),
        ("1,2,x3,4\n", "LBA 'x3' is not a whole number"),
        ("1,2,3,\n", "size is not a number"),
    ])
    func malformedReadLinesNameFileAndLine(_ bad: String, _ reason: String) throws {
        let t = Temp()
        t.write("run/ata_read.csv", "1,2,3,4\n" + bad)
        t.write("run/ata_write.csv", "")
        do {
            _ = try RanSAPReader.read(runDirectory: t.path + "/run")
            Issue.record("expected an error")
        } catch let e as AnalysisError {
            #expect("\(e)" == "\(t.path)/run/ata_read.csv:2: \(reason)")
        }
    }

    @Test func badEntropyIsNamed() throws {
        let t = Temp()
        t.write("run/ata_write.csv", "1,2,3,4096,0.5,0.4\n1,2,3,4096,abc,0.4\n1,2,3,4096,7,0.4\n")
        #expect(throws: AnalysisError.self) { try RanSAPReader.read(runDirectory: t.path + "/run") }
        do { _ = try RanSAPReader.read(runDirectory: t.path + "/run") } catch { #expect("\(error)".hasSuffix("ata_write.csv:2: entropy 'abc' is not a number in [0, 1]")) }
    }

    @Test func aMissingWriteFileIsNamed() throws {
        let t = Temp()
        t.write("run/ata_read.csv", "1,2,3,4\n")
        do {
            _ = try RanSAPReader.read(runDirectory: t.path + "/run")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "\(t.path)/run/ata_write.csv: no such file")
        }
    }

    @Test func aRunWithNoWritesLoads() throws {
        let t = Temp()
        t.write("run/ata_read.csv", "1,2,3,4096\n")
        t.write("run/ata_write.csv", "")
        let trace = try RanSAPReader.read(runDirectory: t.path + "/run")
        #expect(trace.writes.isEmpty && trace.reads.count == 1)
    }
}

@Suite struct DatasetTests {
    func layout() -> Temp {
        let t = Temp()
        for run in ["original/hdd/TeslaCrypt/TeslaCrypt-1", "original/hdd/Firefox/Firefox-1", "extra/bl/Zip/Zip-1"] {
            t.write(run + "/ata_write.csv", "1,0,8,4096,0.9,0.8\n")
        }
        return t
    }

    @Test func labelsComeFromTheFamilyFolder() throws {
        let t = layout()
        let runs = try Dataset.discover(t.path)
        #expect(runs.map(\.name) == ["extra/bl/Zip/Zip-1", "original/hdd/Firefox/Firefox-1", "original/hdd/TeslaCrypt/TeslaCrypt-1"])
        #expect(runs.map(\.label) == [.benign, .benign, .ransomware])
        #expect(runs[2].setup == "original/hdd")
    }

    @Test func unknownFamiliesNeedALabelsFile() throws {
        let t = layout()
        t.write("original/hdd/Mystery/Mystery-1/ata_write.csv", "1,0,8,4096,0.9,0.8\n")
        do {
            _ = try Dataset.discover(t.path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("unknown family 'Mystery'"))
        }
        t.write("labels.csv", "# test labels\nMystery,ransomware\noriginal/hdd/Firefox/Firefox-1, ransomware\n")
        let runs = try Dataset.discover(t.path, labels: try Dataset.readLabels(t.path + "/labels.csv"))
        #expect(runs.first { $0.family == "Mystery" }?.label == .ransomware)
        #expect(runs.first { $0.family == "Firefox" }?.label == .ransomware)
        t.write("bad.csv", "Mystery,evil\n")
        do {
            _ = try Dataset.readLabels(t.path + "/bad.csv")
            Issue.record("expected an error")
        } catch {
            #expect("\(error)" == "\(t.path)/bad.csv:1: expected NAME,ransomware or NAME,benign")
        }
    }

    @Test func anEmptyDirectoryHasNoRuns() throws {
        let t = Temp()
        #expect(throws: AnalysisError.self) { try Dataset.discover(t.path) }
        #expect(throws: AnalysisError.self) { try Dataset.discover(t.path + "/missing") }
    }

    @Test func groupedFoldsNeverSplitARunAndMixLabels() {
        let labels: [Label] = (0..<41).map { $0 < 12 ? .ransomware : .benign }
        let folds = GroupedFolds.assign(labels: labels, folds: 5)
        #expect(folds.count == 41)
        for f in 0..<5 {
            let members = labels.indices.filter { folds[$0] == f }
            #expect(members.contains { labels[$0] == .ransomware } && members.contains { labels[$0] == .benign })
        }
        #expect(GroupedFolds.assign(labels: labels, folds: 5) == folds, "deterministic for a seed")
    }
}

@Suite struct FeatureTests {
    @Test func publishedFeaturesOfKnownWindows() {
        // Window 0: two reads (LBA 0 and 100), one write of entropy 0.5; window 2: one write of entropy 1.
        let trace = BlockTrace(
            reads: [Access(timeNs: 0, lba: 0, size: 4096), Access(timeNs: 10_000_000, lba: 100, size: 4096)],
            writes: [Access(timeNs: 20_000_000, lba: 8, size: 4096, entropy: 0.5),
                     Access(timeNs: 250_000_000, lba: 16, size: 2048, entropy: 1)])
        let t = WindowFeatures.compute(trace, windowNs: 100_000_000, set: .published)
        #expect(t.rows == 2, "idle windows are skipped")
        #expect(Array(t.row(0)) == [81920, 40960, 2500, 0, 0.5])
        #expect(Array(t.row(1)) == [0, 20480, 0, 0, 1])
        #expect(t.windowStart == [0, 200_000_000])
        #expect(t.writtenBytes == [4096, 2048])
    }

    @Test func structuralFeaturesAreExtendedWithoutEntropy() {
        let trace = BlockTrace(reads: [Access(timeNs: 0, lba: 800, size: 4096)],
                               writes: [Access(timeNs: 1_000, lba: 800, size: 4096, entropy: 0.99),
                                        Access(timeNs: 150_000_000, lba: 9000, size: 4096, entropy: 0.2)])
        let ext = WindowFeatures.compute(trace, set: .extended), st = WindowFeatures.compute(trace, set: .structural)
        #expect(st.names == WindowFeatures.structuralNames)
        #expect(!st.names.contains { $0.contains("entropy") })
        #expect(st.names.count == ext.names.count - 4, "four entropy features: mean, high fraction, and their 1 s averages")
        #expect(st.rows == ext.rows)
        for r in 0..<st.rows {
            for (c, name) in st.names.enumerated() {
                #expect(st.row(r)[st.row(r).startIndex + c] == ext.row(r)[ext.row(r).startIndex + ext.names.firstIndex(of: name)!])
            }
        }
    }

    @Test func aGapOfYearsCostsNothing() {
        let tenYears: UInt64 = 10 * 365 * 86_400 * 1_000_000_000
        let trace = BlockTrace(reads: [Access(timeNs: 5, lba: 0, size: 512)],
                               writes: [Access(timeNs: tenYears + 5, lba: 8, size: 4096, entropy: 1)])
        let t = WindowFeatures.compute(trace, set: .extended)
        #expect(t.rows == 2)
        #expect(t.windowStart == [5, tenYears + 5], "windows count from the first access")
        #expect(t.writtenBytes == [0, 4096])
    }

    @Test func overwriteAfterReadIsSeen() {
        let trace = BlockTrace(
            reads: [Access(timeNs: 0, lba: 800, size: 4096)],
            writes: [Access(timeNs: 1_000, lba: 800, size: 4096, entropy: 0.99), Access(timeNs: 2_000, lba: 808, size: 4096, entropy: 0.99),
                     Access(timeNs: 3_000, lba: 9000, size: 4096, entropy: 0.2)])
        let t = WindowFeatures.compute(trace, set: .extended)
        let row = Array(t.row(0))
        let col = { (n: String) in row[t.names.firstIndex(of: n)!] }
        #expect(abs(col("overwrite_after_read") - 1.0 / 3) < 1e-6)
        #expect(abs(col("high_entropy_frac") - 2.0 / 3) < 1e-6)
        #expect(abs(col("write_sequential_frac") - 1.0 / 3) < 1e-6)
        #expect(col("write_lba_spread") == 8200)
    }

    /// Read block 100 at 0; write it at 1 ms, at 200 ms and at 20 s; write block 101 right after (sequential, never read).
    func contextTrace() -> BlockTrace {
        BlockTrace(reads: [Access(timeNs: 0, lba: 800, size: 4096)],
                   writes: [Access(timeNs: 1_000_000, lba: 800, size: 4096, entropy: 0.95),
                            Access(timeNs: 200_000_000, lba: 800, size: 4096, entropy: 0.5),
                            Access(timeNs: 20_000_000_000, lba: 800, size: 4096, entropy: 0.99),
                            Access(timeNs: 20_000_001_000, lba: 808, size: 4096, entropy: 0.1)])
    }

    @Test func contextAveragesOfKnownWindows() {
        let t = WindowFeatures.compute(contextTrace(), windowNs: 100_000_000, set: .context)
        #expect(t.rows == 3)
        #expect(t.names == WindowFeatures.extendedNames + WindowFeatures.contextNames)
        func col(_ r: Int, _ n: String) -> Double { Double(t.row(r)[t.row(r).startIndex + t.names.firstIndex(of: n)!]) }
        func near(_ a: Double, _ b: Double, _ what: String) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b)), "\(what): \(a) != \(b)") }
        // Per 100 ms window the past keeps k = exp(-0.1 / horizon) and the window adds 1 - k of its own value;
        // the sums are divided by the weight of the time seen, 1 - k^n after n windows.
        let k5 = exp(-0.1 / 5), a5 = 1 - k5, k30 = exp(-0.1 / 30), a30 = 1 - k30
        // Window 0: one read and one write of 4 KiB, the write over the block just read.
        near(col(0, "io_active_5s"), 1, "active 5 s: the only window seen")
        near(col(0, "write_bps_5s"), 4096 / 0.1, "write throughput 5 s: no ramp from zero")
        near(col(0, "write_share_30s"), 0.5, "write share")
        near(col(0, "overwrite_after_read_30s"), 1, "overwrite after read")
        near(col(0, "rewrite_of_read_30s"), 1, "rewrite of read")
        near(col(0, "new_block_frac_5s"), 1, "new blocks")
        near(col(0, "write_lba_var_30s"), 0, "one LBA")
        near(col(0, "high_entropy_frac_5s"), 1, "high entropy")
        // Window 2 (200 ms; window 1 idle): the same block again, low entropy.
        near(col(1, "io_active_5s"), (a5 * k5 * k5 + a5) / (1 - pow(k5, 3)), "active decays through the idle window")
        near(col(1, "write_share_5s"), (k5 * k5 + 1) / (2 * k5 * k5 + 1), "write share 5 s")
        near(col(1, "new_block_frac_5s"), k5 * k5 / (k5 * k5 + 1), "the block is not new any more")
        near(col(1, "high_entropy_frac_5s"), k5 * k5 / (k5 * k5 + 1), "high-entropy bytes")
        near(col(1, "overwrite_after_read_5s"), 1, "still within 10 s of the read")
        // Window 200 (20 s): block 100 (read 20 s ago: a rewrite, no longer an overwrite after read), then block 101.
        let w0 = pow(k30, 200), w2 = pow(k30, 198)
        near(col(2, "overwrite_after_read_30s"), (w0 + w2) / (w0 + w2 + 2), "20 s is past the 10 s look-back")
        near(col(2, "rewrite_of_read_30s"), 1, "rewrites (w0 + w2 + 1) over reads w0, capped at 1")
        near(col(2, "rewrite_of_read_rate_30s"), a30 * (w0 + w2 + 1) / 0.1 / (1 - pow(k30, 201)), "rewrite rate")
        near(col(2, "new_block_frac_30s"), (w0 + 1) / (w0 + w2 + 2), "new blocks 30 s")
        near(col(2, "write_sequential_frac_5s"), 1 / (pow(k5, 200) + pow(k5, 198) + 2), "sequential")
        near(col(2, "write_entropy_30s"), (0.95 * w0 + 0.5 * w2 + 0.99 + 0.1) / (w0 + w2 + 2), "mean entropy 30 s")
        let n = w0 + w2 + 2, mean = (800 * (w0 + w2 + 1) + 808) / n
        near(col(2, "write_lba_var_30s"), (800 * 800 * (w0 + w2 + 1) + 808 * 808) / n - mean * mean, "weighted LBA variance")
        near(col(2, "io_active_30s"), a30 * (w0 + w2 + 1) / (1 - pow(k30, 201)), "active 30 s")
    }

    @Test func everyFeatureUsesOnlyThePast() {
        // The rows of a prefix of the trace are the first rows of the whole trace: what the live detector sees.
        var rng = SplitMix(seed: 3)
        var reads: [Access] = [], writes: [Access] = []
        for i in 0..<3000 {
            let t = UInt64(i) * 7_000_000 + rng.next() % 1_000_000
            let lba = (rng.next() % 5000) * 8
            if rng.next() % 3 == 0 { reads.append(Access(timeNs: t, lba: lba, size: 4096)) }
            else { writes.append(Access(timeNs: t, lba: lba, size: 4096, entropy: Float(rng.next() % 1000) / 1000)) }
        }
        let whole = WindowFeatures.compute(BlockTrace(reads: reads, writes: writes), set: .context)
        let cut: UInt64 = 9_000_000_000
        let prefix = WindowFeatures.compute(BlockTrace(reads: reads.filter { $0.timeNs < cut }, writes: writes.filter { $0.timeNs < cut }),
                                            set: .context)
        #expect(prefix.rows > 10 && prefix.rows < whole.rows)
        #expect(Array(whole.values.prefix(prefix.values.count)) == prefix.values)
    }

    @Test func namedColumnsAreTheSetsColumns() {
        let ext = WindowFeatures.compute(contextTrace(), set: .context)
        let names = ["write_bps_30s", "read_bps", "io_active_5s"]
        let some = WindowFeatures.compute(contextTrace(), names: names)
        #expect(some.names == names)
        for r in 0..<ext.rows {
            #expect(Array(some.row(r)) == names.map { ext.row(r)[ext.row(r).startIndex + ext.names.firstIndex(of: $0)!] })
        }
        #expect(WindowFeatures.unknown(["read_bps", "made_up"]) == ["made_up"])
    }

    @Test func verdictAveragesOfKnownWindows() {
        // Windows 0, 1 and 4 (2 and 3 idle) with first-stage probabilities 1, 0.5 and 0.
        let table = FeatureTable(names: ["x"], values: [7, 8, 9], windowStart: [1_000, 100_001_000, 400_001_000], writtenBytes: [0, 0, 0])
        let t = WindowFeatures.addingVerdicts([1, 0.5, 0], to: table, windowNs: 100_000_000)
        #expect(t.names == ["x", "verdict_5s", "verdict_30s"])
        #expect(Array(t.row(0)) == [7, 1, 1], "the first window: its own verdict")
        let k = exp(-0.1 / 5), a = 1 - k
        let v1 = (a * k + a * 0.5) / (1 - k * k)
        #expect(abs(Double(t.row(1)[t.row(1).startIndex + 1]) - v1) < 1e-6)
        let v4 = (a * pow(k, 4) + a * 0.5 * pow(k, 3)) / (1 - pow(k, 5))
        #expect(abs(Double(t.row(2)[t.row(2).startIndex + 1]) - v4) < 1e-6, "idle windows count as zeros")
        #expect(t.row(2).first == 9 && t.windowStart == table.windowStart)
    }

    /// Random reads and writes over 20 s, some at the same time, some gaps of seconds.
    func randomTrace(seed: UInt64) -> BlockTrace {
        var rng = SplitMix(seed: seed)
        var reads: [Access] = [], writes: [Access] = []
        var t: UInt64 = 1_000_000_000
        for _ in 0..<4000 {
            t += rng.next() % 50 == 0 ? rng.next() % 3_000_000_000 : rng.next() % 4_000_000
            let lba = (rng.next() % 3000) * 8
            if rng.next() % 3 == 0 { reads.append(Access(timeNs: t, lba: lba, size: 4096)) }
            writes.append(Access(timeNs: t, lba: rng.next() % 2 == 0 ? lba : lba + 8, size: 4096, entropy: Float(rng.next() % 1000) / 1000))
        }
        return BlockTrace(reads: reads, writes: writes)
    }

    /// The trace's accesses in time order, reads first at the same time.
    func merged(_ trace: BlockTrace) -> [(Access, Bool)] {
        var out: [(Access, Bool)] = []
        var r = 0, w = 0
        while r < trace.reads.count || w < trace.writes.count {
            if w >= trace.writes.count || (r < trace.reads.count && trace.reads[r].timeNs <= trace.writes[w].timeNs) {
                out.append((trace.reads[r], false)); r += 1
            } else {
                out.append((trace.writes[w], true)); w += 1
            }
        }
        return out
    }

    @Test(arguments: FeatureSet.blockSets)
    func theStreamGivesTheRowsOfTheWholeTrace(_ set: FeatureSet) {
        let trace = randomTrace(seed: 5)
        let batch = WindowFeatures.compute(trace, set: set)
        var stream = FeatureStream(windowNs: 100_000_000, names: WindowFeatures.names(set))
        var seen = 0
        for (i, (a, isWrite)) in merged(trace).enumerated() {
            if isWrite { stream.add(write: a) } else { stream.add(read: a) }
            if i % 500 == 499 {
                // Closed rows are final: they are already the whole trace's rows.
                let part = stream.table(from: seen)
                let closed = stream.closedRows - seen
                #expect(Array(part.values.prefix(closed * part.columns)) == Array(batch.values[(seen * batch.columns)..<(stream.closedRows * batch.columns)]))
                seen = stream.closedRows
            }
        }
        let all = stream.table()
        #expect(all.names == batch.names && all.rows == batch.rows && batch.rows > 100)
        #expect(all.values == batch.values)
        #expect(all.windowStart == batch.windowStart && all.writtenBytes == batch.writtenBytes)
    }

    @Test func theStreamReadsJournalEventsAsTheTraceDoes() {
        var stream = FeatureStream(windowNs: 100_000_000, names: WindowFeatures.structuralNames)
        var trace = BlockTrace(reads: [], writes: [])
        let events = [BlockEvent(operation: .read, timeNs: 10, lba: 0, length: 8192),
                      BlockEvent(operation: .write, timeNs: 20, lba: 0, length: 12288, entropies: [0.1, 0.95, 0.5]),
                      BlockEvent(operation: .flush, timeNs: 30, lba: 0, length: 0),
                      BlockEvent(operation: .write, timeNs: 150_000_000, lba: 24, length: 4096, entropies: [1])]
        for e in events { stream.append(e); trace.append(e) }
        let a = stream.table(), b = WindowFeatures.compute(trace, set: .structural)
        #expect(a.rows == 2 && a.values == b.values && a.writtenBytes == [12288, 4096])
        #expect(stream.closedRows == 1, "the second window is still open")
    }

    @Test func journalsReadLikeTheDataset() throws {
        let dir = NSTemporaryDirectory() + "kanshi-analysis-j-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "t")
        logger.logLevel = .critical
        let w = try JournalWriter(directory: dir, logger: logger)
        let data = [UInt8](repeating: 0, count: 4096) + (0..<4096).map { UInt8($0 % 256) }
        let e = BlockEvent(operation: .write, timeNs: 5_000, lba: 64, length: 8192, entropies: data.withUnsafeBytes { Entropy.perBlock($0) })
        let meta = BlockRecords.encodeMetadata(e)
        try meta.withUnsafeBytes { m in try data.withUnsafeBytes { d in _ = try w.append(kind: .blockWrite, timeNs: 5_000, parts: [m, d]) } }
        let r = BlockRecords.encodeMetadata(BlockEvent(operation: .read, timeNs: 4_000, lba: 0, length: 512))
        try r.withUnsafeBytes { _ = try w.append(kind: .blockRead, timeNs: 4_000, parts: [$0]) }
        try w.close()
        let trace = try BlockTrace.fromJournal(dir)
        #expect(trace.reads == [Access(timeNs: 4_000, lba: 0, size: 512)])
        #expect(trace.writes.map(\.lba) == [64, 72])
        #expect(trace.writes[0].entropy == 0 && abs(trace.writes[1].entropy - 1) < 1e-6)
    }
}

@Suite struct ModelTests {
    /// Runs where ransomware writes fast and randomly, benign slowly with low entropy.
    func synthetic(_ n: Int, ransomware: Bool, seed: UInt64) -> FeatureTable {
        var rng = SplitMix(seed: seed)
        var writes: [Access] = [], reads: [Access] = []
        for i in 0..<n {
            let t = UInt64(i) * 5_000_000
            let lba = rng.next() % 1_000_000
            reads.append(Access(timeNs: t, lba: lba, size: 4096))
            let e: Float = ransomware ? 0.97 + Float(rng.next() % 100) / 5000 : Float(rng.next() % 600) / 1000
            writes.append(Access(timeNs: t + 1_000, lba: ransomware ? lba : rng.next() % 1_000_000, size: 4096, entropy: e))
        }
        return WindowFeatures.compute(BlockTrace(reads: reads, writes: writes), set: .extended)
    }

    @Test(arguments: ClassifierKind.allCases)
    func trainsPredictsAndRoundTrips(_ kind: ClassifierKind) throws {
        let tables = (0..<6).map { synthetic(400, ransomware: $0 % 2 == 0, seed: UInt64($0)) }
        let labels: [Label] = (0..<6).map { $0 % 2 == 0 ? .ransomware : .benign }
        let model = try DetectorModel.train(kind, tables: tables, labels: labels, featureSet: .extended, windowNs: 100_000_000, threads: 1)
        let testR = synthetic(300, ransomware: true, seed: 99), testB = synthetic(300, ransomware: false, seed: 98)
        let pR = try model.predict(testR), pB = try model.predict(testB)
        #expect(pR.filter { $0 >= 0.5 }.count > pR.count * 9 / 10)
        #expect(pB.filter { $0 < 0.5 }.count > pB.count * 9 / 10)
        #expect(model.firstAlert(pR) != nil)
        #expect(model.firstAlert(pB) == nil)

        let path = NSTemporaryDirectory() + "kanshi-model-" + UUID().uuidString + ".json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        let loaded = try DetectorModel.load(from: path)
        #expect(try loaded.predict(testR) == pR)
    }

    @Test func theRunRuleIsChosenOnTrainingRunsOnly() throws {
        let tables = (0..<6).map { synthetic(300, ransomware: $0 % 2 == 0, seed: UInt64(10 + $0)) }
        let labels: [Label] = (0..<6).map { $0 % 2 == 0 ? .ransomware : .benign }
        let (model, choice) = try RuleSelection.train(.gbdt, tables: tables, labels: labels, featureSet: .extended,
                                                      windowNs: 100_000_000, threads: 1)
        #expect(model.ruleHorizon == choice.horizon && model.ruleFraction == choice.fraction)
        #expect(choice.falseAlarms == 0 && choice.missed == 0, "separable runs: a rule without errors exists")
        #expect(RuleSelection.horizons.contains(choice.horizon))
        // Shortest delay wins among error-free rules: nothing faster than the chosen one is error-free on such data.
        #expect(choice.horizon <= 5, "chose \(choice.horizon) windows")
        #expect(model.ruleThreshold == choice.threshold && RuleSelection.thresholds.contains(choice.threshold))
        let (fixed, c2) = try RuleSelection.train(.gbdt, tables: tables, labels: labels, featureSet: .extended,
                                                  windowNs: 100_000_000, thresholds: [0.55], threads: 1)
        #expect(c2.threshold == 0.55 && fixed.ruleThreshold == 0.55, "a given threshold is kept, horizon and fraction chosen for it")
    }

    @Test func theRuleCountsWindowsOverItsOwnThreshold() throws {
        let tables = [synthetic(100, ransomware: true, seed: 1), synthetic(100, ransomware: false, seed: 2)]
        var model = try DetectorModel.train(.gbdt, tables: tables, labels: [.ransomware, .benign], featureSet: .extended,
                                            windowNs: 100_000_000, ruleHorizon: 2, ruleFraction: 1, ruleThreshold: 0.8, threads: 1)
        #expect(model.firstAlert([0.6, 0.7, 0.85, 0.9]) == 3, "two windows in a row over 0.8")
        model.ruleThreshold = nil
        #expect(model.firstAlert([0.6, 0.7, 0.85, 0.9]) == 1, "without its own threshold the rule uses the window threshold, 0.5")
    }

    @Test func ruleVerdictsAndDelaysOnHeldOutRuns() {
        // Four 100 ms windows; the first write is in the second window.
        let table = FeatureTable(names: [], values: [], windowStart: [0, 100_000_000, 200_000_000, 300_000_000],
                                 writtenBytes: [0, 4096, 4096, 4096])
        let held: [(probabilities: [Float], label: Label, table: FeatureTable)] = [
            ([0.9, 0.95, 0.4, 0.99], .ransomware, table), ([0.6, 0.7, 0.6, 0.7], .benign, table), ([0.1, 0.2, 0.3, 0.2], .benign, table),
        ]
        let loose = RuleSelection.judge(held, threshold: 0.5, horizon: 2, fraction: 1, windowNs: 100_000_000)
        #expect(loose.falseAlarms == 1 && loose.missed == 0)
        #expect(loose.medianDelayNs == 100_000_000, "alert at the end of window 1, 100 ms after the first write")
        let strict = RuleSelection.judge(held, threshold: 0.8, horizon: 2, fraction: 1, windowNs: 100_000_000)
        #expect(strict.falseAlarms == 0 && strict.missed == 0 && strict.medianDelayNs == 100_000_000)
        let tooStrict = RuleSelection.judge(held, threshold: 0.8, horizon: 3, fraction: 1, windowNs: 100_000_000)
        #expect(tooStrict.missed == 1 && tooStrict.medianDelayNs == nil, "window 2 breaks every run of three")
    }

    @Test(arguments: [ClassifierKind.gbdt, .knn])
    func stackedModelsTrainPredictAndRoundTrip(_ kind: ClassifierKind) throws {
        let tables = (0..<6).map { synthetic(300, ransomware: $0 % 2 == 0, seed: UInt64(20 + $0)) }
        let labels: [Label] = (0..<6).map { $0 % 2 == 0 ? .ransomware : .benign }
        let model = try DetectorModel.train(kind, tables: tables, labels: labels, featureSet: .extended, windowNs: 100_000_000,
                                            stacked: true, threads: 1)
        #expect(model.stage1?.count == 1 && model.featureNames == tables[0].names)
        #expect(model.inputNames == tables[0].names + ["verdict_5s", "verdict_30s"] && model.mean.count == model.inputNames.count)
        let testR = synthetic(200, ransomware: true, seed: 97), testB = synthetic(200, ransomware: false, seed: 96)
        let pR = try model.predict(testR), pB = try model.predict(testB)
        #expect(pR.filter { $0 >= 0.5 }.count > pR.count * 9 / 10)
        #expect(pB.filter { $0 < 0.5 }.count > pB.count * 9 / 10)
        let path = NSTemporaryDirectory() + "kanshi-model-" + UUID().uuidString + ".json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        #expect(try DetectorModel.load(from: path).predict(testR) == pR)
        // A first stage that does not fit the model is refused.
        var broken = model
        broken.stage1![0].featureNames.removeLast()
        try broken.save(to: path)
        #expect(throws: AnalysisError.self) { try DetectorModel.load(from: path) }
    }

    @Test func badModelFilesAreRefused() throws {
        let path = NSTemporaryDirectory() + "kanshi-badmodel-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data("{\"format\": 1}".utf8))
        do {
            _ = try DetectorModel.load(from: path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("not a Kanshi detector model"))
        }
        #expect(throws: AnalysisError.self) { try DetectorModel.load(from: path + "-missing") }
    }

    @Test func aModelWithFeaturesThisVersionLacksIsRefused() throws {
        let tables = [synthetic(100, ransomware: true, seed: 1), synthetic(100, ransomware: false, seed: 2)]
        var model = try DetectorModel.train(.gbdt, tables: tables, labels: [.ransomware, .benign], featureSet: .extended, windowNs: 100_000_000, threads: 1)
        model.featureNames[3] = "write_lba_entropy_9s"
        let path = NSTemporaryDirectory() + "kanshi-model-" + UUID().uuidString + ".json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try model.save(to: path)
        do {
            _ = try DetectorModel.load(from: path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains(path) && "\(error)".contains("write_lba_entropy_9s"))
        }
    }

    @Test func featuresMustMatchTheModel() throws {
        let tables = [synthetic(100, ransomware: true, seed: 1), synthetic(100, ransomware: false, seed: 2)]
        let model = try DetectorModel.train(.gbdt, tables: tables, labels: [.ransomware, .benign], featureSet: .extended, windowNs: 100_000_000, threads: 1)
        var t = tables[0]
        t.names[0] = "other"
        #expect(throws: AnalysisError.self) { try model.predict(t) }
    }
}
