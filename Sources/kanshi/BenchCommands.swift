import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiSystem

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks (the NBD server's is scripts/bench-nbd.sh, it needs fio and nbdkit).",
        subcommands: [BenchFeatures.self, BenchHistory.self, BenchRules.self, BenchShip.self, BenchFleet.self])
}

struct BenchFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Records per second of CSV parsing + window features, and of the features alone, over a whole dataset.",
        discussion: "scripts/bench-features.sh runs this beside a numpy implementation of the same five features.")

    @Option(help: "Dataset directory (e.g. the unpacked RanSAP development split).")
    var dataset: String
    @Option(help: "Feature set.")
    var features: FeatureSet = .published
    @Option(help: "Repetitions; medians are reported.")
    var rounds: Int = 5
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if features == .process { throw ValidationError("--features process: those come from behaviour logs, not blocks") }
    }

    func run() throws {
        let runs = try Dataset.discover(dataset)
        var parseAndFeatures: [Double] = [], featuresOnly: [Double] = []
        var records = 0, windows = 0
        for _ in 0..<max(rounds, 1) {
            let t0 = FileSystem.monotonicNs()
            var traces: [BlockTrace] = []
            var w = 0
            for r in runs {
                let t = try r.load()
                w += WindowFeatures.compute(t, set: features).rows
                traces.append(t)
            }
            let t1 = FileSystem.monotonicNs()
            var w2 = 0
            for t in traces { w2 += WindowFeatures.compute(t, set: features).rows }
            let t2 = FileSystem.monotonicNs()
            records = traces.reduce(0) { $0 + $1.reads.count + $1.writes.count }
            windows = w
            precondition(w == w2)
            parseAndFeatures.append(Double(t1 - t0) / 1e9)
            featuresOnly.append(Double(t2 - t1) / 1e9)
        }
        let a = median(parseAndFeatures), b = median(featuresOnly)
        if json {
            Output.line(try Output.json(["runs": runs.count, "records": records, "windows": windows, "features": features.rawValue,
                                         "parseAndFeaturesSeconds": a, "featuresSeconds": b,
                                         "parseAndFeaturesRecordsPerSecond": Double(records) / a,
                                         "featuresRecordsPerSecond": Double(records) / b]))
        } else {
            Output.line("\(runs.count) runs, \(records) records, \(windows) windows, \(features.rawValue) features, median of \(rounds)")
            Output.line(String(format: "CSV parsing + features: %.3f s  %.2f M records/s", a, Double(records) / a / 1e6))
            Output.line(String(format: "features only:          %.3f s  %.2f M records/s", b, Double(records) / b / 1e6))
        }
    }

    private func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
}
