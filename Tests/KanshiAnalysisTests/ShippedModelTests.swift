import Foundation
import Testing
@testable import KanshiAnalysis
@testable import KanshiML
import KanshiTrace

/// The detector shipped in models/ (the demo's default) and the training the demo does with --dataset.
@Suite struct ShippedModelTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let shipped = root + "/models/sandbox-detector.json"

    @Test func theShippedModelLoadsAndSeesTodaysFeatures() throws {
        let m = try DetectorModel.load(from: Self.shipped)
        // A model is only usable while Kanshi computes the features it was trained on, by name
        // and in order: a change of the features must come with a remade model (models/README.md).
        #expect(m.featureNames == WindowFeatures.names(m.featureSet), "remake models/sandbox-detector.json: scripts/train-detector.sh")
        #expect(m.windowNs == 100_000_000)
        let table = ModelTests().synthetic(200, ransomware: true, seed: 7)
        let p = try m.predict(table)
        #expect(p.count == table.rows && p.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    /// The process detector shipped beside it (the demo's, with the VM sensor): a process model
    /// on today's process-window features; it names a synthetic in-place encryptor and not a copier.
    @Test func theShippedProcessModelLoadsAndSeesTodaysFeatures() throws {
        let m = try DetectorModel.load(from: Self.root + "/models/process-detector.json", for: .processes)
        #expect(m.featureNames == ProcessWindows.names, "remake models/process-detector.json: scripts/train-detector.sh --process")
        let ransomware = ProcessTraining.RecordedRun(name: "inplace", label: .ransomware,
                                                     events: ProcessWindowsTests.run("inplace", files: 60).events, workload: "inplace")
        #expect(try ProcessTraining.replay(ransomware, model: m).namedTheWorkload)
        let copier = ProcessTraining.RecordedRun(name: "copy-tree", label: .benign,
                                                 events: ProcessWindowsTests.run("copy-tree", files: 60).events, workload: "copy-tree")
        #expect(try ProcessTraining.replay(copier, model: m).alert == nil)
    }

    /// Writes a run in the RanSAP layout under `dir` (ata_read.csv, ata_write.csv).
    func writeRun(_ dir: String, ransomware: Bool, seed: UInt64) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var rng = SplitMix(seed: seed)
        var reads = "", writes = ""
        for i in 0..<400 {
            let t = UInt64(1_700_000_000) * 1_000_000_000 + UInt64(i) * 5_000_000
            let lba = rng.next() % 1_000_000
            reads += "\(t / 1_000_000_000),\(t % 1_000_000_000),\(lba),4096\n"
            let e = ransomware ? 0.97 + Double(rng.next() % 100) / 5000 : Double(rng.next() % 600) / 1000
            let w = t + 1_000
            writes += "\(w / 1_000_000_000),\(w % 1_000_000_000),\(ransomware ? lba : rng.next() % 1_000_000),4096,\(e),0\n"
        }
        try reads.write(toFile: dir + "/ata_read.csv", atomically: true, encoding: .utf8)
        try writes.write(toFile: dir + "/ata_write.csv", atomically: true, encoding: .utf8)
    }

    @Test func theDemoTrainsOnADatasetInProcess() throws {
        let t = Temp()
        for i in 0..<3 {
            try writeRun("\(t.path)/kanshi-sandbox/kanshi-inplace/kanshi-inplace-\(i + 1)", ransomware: true, seed: UInt64(i))
            try writeRun("\(t.path)/kanshi-sandbox/kanshi-compress/kanshi-compress-\(i + 1)", ransomware: false, seed: UInt64(10 + i))
        }
        let r = try DetectorTraining.train(dataset: t.path, classifier: .gbdt, featureSet: .extended, stacked: false, ruleThreshold: 0.5)
        #expect(r.runs == 6 && r.windows > 0)
        #expect(r.model.firstAlert(try r.model.predict(ModelTests().synthetic(400, ransomware: true, seed: 99))) != nil)
        #expect(r.model.firstAlert(try r.model.predict(ModelTests().synthetic(400, ransomware: false, seed: 98))) == nil)
    }

    @Test func trainingOnOneClassNamesTheDataset() throws {
        let t = Temp()
        try writeRun("\(t.path)/kanshi-sandbox/kanshi-compress/kanshi-compress-1", ransomware: false, seed: 1)
        let e = #expect(throws: AnalysisError.self) {
            try DetectorTraining.train(dataset: t.path, classifier: .rf, featureSet: .extended, stacked: false, ruleThreshold: nil)
        }
        #expect("\(e!)".contains(t.path) && "\(e!)".contains("ransomware and benign"))
    }
}
