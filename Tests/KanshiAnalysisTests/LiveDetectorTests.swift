import Foundation
import KanshiCore
import Testing
@testable import KanshiAnalysis
@testable import KanshiML

/// The live detector predicts each window once, as it closes, and must say what predicting the
/// whole recording at once says.
@Suite struct LiveDetectorTests {
    /// A recording's block events: benign (slow, low entropy) then ransomware (fast, reading and
    /// overwriting with random data) from `attackNs` on.
    func events(seed: UInt64, attackNs: UInt64, count: Int) -> [BlockEvent] {
        var rng = SplitMix(seed: seed)
        var out: [BlockEvent] = []
        for i in 0..<count {
            let t = 1_700_000_000_000_000_000 + UInt64(i) * 5_000_000
            let lba = (rng.next() % 100_000) * 8
            let attack = t >= 1_700_000_000_000_000_000 + attackNs
            out.append(BlockEvent(operation: .read, timeNs: t, lba: lba, length: 4096))
            let e: Float = attack ? 0.97 + Float(rng.next() % 100) / 5000 : Float(rng.next() % 600) / 1000
            out.append(BlockEvent(operation: .write, timeNs: t + 1_000, lba: attack ? lba : (rng.next() % 100_000) * 8, length: 4096,
                                  entropies: [e]))
        }
        return out
    }

    func model(stacked: Bool) throws -> DetectorModel {
        let tables = (0..<6).map { ModelTests().synthetic(400, ransomware: $0 % 2 == 0, seed: UInt64($0)) }
        let labels: [Label] = (0..<6).map { $0 % 2 == 0 ? .ransomware : .benign }
        return try DetectorModel.train(.gbdt, tables: tables, labels: labels, featureSet: .extended, windowNs: 100_000_000,
                                       stacked: stacked, threads: 1)
    }

    @Test(arguments: [false, true])
    func incrementalEqualsWholeRecording(stacked: Bool) throws {
        let m = try model(stacked: stacked)
        let evs = events(seed: 3, attackNs: 4_000_000_000, count: 1600)
        let live = try LiveDetector(model: m)
        var last: LiveDetector.Windows?
        // Fed in uneven chunks, as a journal's polls deliver it.
        var i = 0, chunk = 1
        while i < evs.count {
            for e in evs[i..<min(i + chunk, evs.count)] { live.append(e) }
            i += chunk
            chunk = chunk * 3 % 97 + 1
            last = try live.update()
        }
        var stream = FeatureStream(windowNs: m.windowNs, names: m.featureNames)
        for e in evs { stream.append(e) }
        let whole = try m.predict(stream.table())
        let w = try #require(last)
        #expect(w.starts == stream.table().windowStart)
        #expect(w.probabilities.count == whole.count)
        for (a, b) in zip(w.probabilities, whole) { #expect(abs(a - b) < 1e-5) }
        // Each closed window went through the model once; the open one once per update.
        #expect(live.windowsPredicted < whole.count * 2)
    }

    @Test func theAlertComesAfterTheAttackStarts() throws {
        let m = try model(stacked: false)
        let live = try LiveDetector(model: m)
        let evs = events(seed: 5, attackNs: 4_000_000_000, count: 1600)
        var alert: LiveDetector.Alert?
        for (i, e) in evs.enumerated() {
            live.append(e)
            if i % 50 == 49, alert == nil { alert = try live.evaluate(sinceNs: evs[0].timeNs) }
        }
        let a = try #require(alert)
        #expect(a.windowStartNs + m.windowNs > evs[0].timeNs + 4_000_000_000)
        // Nothing when only the benign part is seen.
        let quiet = try LiveDetector(model: m)
        for e in evs where e.timeNs < evs[0].timeNs + 3_900_000_000 { quiet.append(e) }
        #expect(try quiet.evaluate(sinceNs: evs[0].timeNs) == nil)
    }

    @Test func aModelOfOtherFeaturesIsRefusedByName() throws {
        var m = try model(stacked: false)
        m.featureNames[0] = "no_such_feature"
        #expect(throws: (any Error).self) { try LiveDetector(model: m) }
    }
}
