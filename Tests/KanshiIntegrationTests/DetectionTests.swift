import Foundation
import KanshiAnalysis
import Testing

/// The development split of RanSAP, shipped beside the repository.
enum RanSAP {
    static let archive = Paths.root.deletingLastPathComponent().appendingPathComponent("shared/datasets/ransap-dev.tar.xz").path
    static var available: Bool { FileManager.default.fileExists(atPath: archive) || Tools.requireAll }

    /// Extracts the named runs of `original/win7-250gb-hdd` into `dir`.
    static func extract(_ runs: [String], into dir: String) throws {
        let members = runs.map { "./dataset/original/win7-250gb-hdd/\($0)" }
        let r = try run(["tar", "-xJf", archive, "-C", dir] + members, timeout: 300)
        guard r.ok else { throw Failure("tar: \(r.stderr)") }
    }
}

@Suite(.serialized) struct DetectionCLITests {
    static let runs = [
        "TeslaCrypt/TeslaCrypt-20200414_15-11-44", "TeslaCrypt/TeslaCrypt-20200414_15-18-06", "TeslaCrypt/TeslaCrypt-20200414_15-41-32",
        "Firefox/Firefox-20210617_23-06-08", "Firefox/Firefox-20210617_23-13-25",
        "Excel/Excel-20210707_21-32-38", "Excel/Excel-20210707_21-11-24",
    ]

    @Test(.enabled(if: RanSAP.available, "the RanSAP archive is not at ../shared/datasets/ransap-dev.tar.xz"))
    func crossValidateTrainEvaluateOnRealRuns() throws {
        let s = Scratch("detect")
        try RanSAP.extract(Self.runs, into: s.path)
        let data = s.file("dataset")
        let cv = try run([Paths.kanshi, "cross-validate", "--dataset", data, "--folds", "2", "--classifier", "rf", "--json"], timeout: 300)
        try #require(cv.ok, "\(cv.stderr)")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(cv.stdout.utf8)) as? [String: Any])
        let windows = try #require(obj["windows"] as? [String: Any])
        let f1 = try #require(windows["f1"] as? Double)
        #expect(f1 > 0.8, "window F1 \(f1)")
        let runs = try #require(obj["runs"] as? [[String: Any]])
        #expect(runs.count == Self.runs.count)
        for r in runs where r["label"] as? String == "ransomware" { #expect(r["flagged"] as? Bool == true, "\(r)") }

        let model = s.file("model.json")
        let train = try run([Paths.kanshi, "train", "--dataset", data, "--classifier", "gbdt", "--model", model], timeout: 300)
        #expect(train.ok, "\(train.stderr)")
        let ev = try run([Paths.kanshi, "evaluate", "--model", model, "--dataset", data], timeout: 300)
        #expect(ev.ok && ev.stdout.contains("windows: precision"), "\(ev.stdout)\(ev.stderr)")
        #expect(ev.stdout.contains("ransomware missed: 0"), "\(ev.stdout)")
    }

    @Test func benchFeaturesCountsEveryRecord() throws {
        let s = Scratch("benchfeat")
        try FileManager.default.createDirectory(atPath: s.file("d/Zip/r1"), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: s.file("d/Zip/r1/ata_write.csv"), contents: Data("1,2,3,4096,0.5,0.5\n1,300000000,11,4096,0.9,0.8\n".utf8))
        _ = FileManager.default.createFile(atPath: s.file("d/Zip/r1/ata_read.csv"), contents: Data("1,5,3,4096\n".utf8))
        let r = try run([Paths.kanshi, "bench", "features", "--dataset", s.file("d"), "--rounds", "1", "--json"])
        try #require(r.ok, "\(r.stderr)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(o["records"] as? Int == 3)
        #expect(o["windows"] as? Int == 2)
        #expect((o["featuresRecordsPerSecond"] as? Double ?? 0) > 0)
    }

    @Test func badDatasetsAreNamed() throws {
        let s = Scratch("baddata")
        let empty = try run([Paths.kanshi, "cross-validate", "--dataset", s.path])
        #expect(!empty.ok && empty.stderr.contains("no recordings found"), "\(empty.stderr)")
        try FileManager.default.createDirectory(atPath: s.file("x/TeslaCrypt/r1"), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: s.file("x/TeslaCrypt/r1/ata_write.csv"), contents: Data("1,2,3,4096,0.5,0.5\n1,2,3\n".utf8))
        let bad = try run([Paths.kanshi, "train", "--dataset", s.file("x"), "--model", s.file("m.json")])
        #expect(!bad.ok && bad.stderr.contains("ata_write.csv:2: expected 6 comma-separated fields, found 3"), "\(bad.stderr)")
        let missing = try run([Paths.kanshi, "evaluate", "--model", s.file("nope.json"), "--dataset", s.file("x")])
        #expect(!missing.ok && missing.stderr.contains("nope.json: no such file"), "\(missing.stderr)")
    }

    @Test func badRuleThresholdsAreNamed() throws {
        let s = Scratch("badrule")
        let alone = try run([Paths.kanshi, "train", "--dataset", s.path, "--model", s.file("m.json"), "--rule-threshold", "0.9"])
        #expect(!alone.ok && alone.stderr.contains("no recordings found"), "a threshold alone is accepted: \(alone.stderr)")
        let zero = try run([Paths.kanshi, "train", "--dataset", s.path, "--model", s.file("m.json"), "--rule-threshold", "0"])
        #expect(!zero.ok && zero.stderr.contains("--rule-threshold must be in (0, 1), got 0.0"), "\(zero.stderr)")
        let out = try run([Paths.kanshi, "cross-validate", "--dataset", s.path, "--rule-horizon", "5", "--rule-fraction", "0.8",
                           "--rule-threshold", "1.5"])
        #expect(!out.ok && out.stderr.contains("--rule-threshold must be in (0, 1), got 1.5"), "\(out.stderr)")
    }

    @Test func droppedFeaturesMustBeInTheSet() throws {
        let s = Scratch("baddrop")
        let bad = try run([Paths.kanshi, "cross-validate", "--dataset", s.path, "--features", "structural", "--drop-features", "write_bps,made_up"])
        #expect(!bad.ok && bad.stderr.contains("--drop-features: 'made_up' is not a feature of the structural set"), "\(bad.stderr)")
        let entropy = try run([Paths.kanshi, "train", "--dataset", s.path, "--model", s.file("m.json"), "--features", "structural",
                               "--drop-features", "write_entropy_mean"])
        #expect(!entropy.ok && entropy.stderr.contains("'write_entropy_mean' is not a feature of the structural set"), "\(entropy.stderr)")
        let all = WindowFeatures.names(.published).joined(separator: ",")
        let none = try run([Paths.kanshi, "train", "--dataset", s.path, "--model", s.file("m.json"), "--features", "published", "--drop-features", all])
        #expect(!none.ok && none.stderr.contains("--drop-features leaves no feature"), "\(none.stderr)")
    }
}

@Suite struct JournalAsDatasetTests {
    /// A journal recorded by `kanshi disk serve` and its RanSAP export read
    /// back through the same reader give the same accesses.
    @Test(.enabled(if: Tools.available("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)"))
    func exportedCSVReadsLikeTheJournal() throws {
        let s = Scratch("jds")
        try makeImage(s.file("disk.img"), bytes: 8 << 20)
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"))
        let r = try run(["qemu-io", "-f", "raw", server.uri, "-c", "write -P 0x41 0 64k",
                         "-c", "read 0 128k", "-c", "write -P 7 4M 12k"])
        #expect(r.ok, "\(r.stderr)")
        try server.stop()
        let export = try run([Paths.kanshi, "journal", "export", s.file("j"), "--out", s.file("csv")])
        #expect(export.ok, "\(export.stderr)")
        let fromJournal = try BlockTrace.fromJournal(s.file("j"))
        let fromCSV = try RanSAPReader.read(runDirectory: s.file("csv"))
        #expect(fromJournal.reads == fromCSV.reads)
        #expect(fromJournal.writes.count == fromCSV.writes.count && fromJournal.writes.count == 19)
        for (a, b) in zip(fromJournal.writes, fromCSV.writes) {
            #expect(a.timeNs == b.timeNs && a.lba == b.lba && a.size == b.size)
            #expect(abs(a.entropy - b.entropy) < 1e-6)
        }
    }
}
