import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiML

struct DatasetOptions: ParsableArguments {
    @Option(help: "A directory of recordings: RanSAP runs (ata_read.csv/ata_write.csv) and/or Kanshi journals, at any depth.")
    var dataset: String

    @Option(help: "Labels file: lines NAME,ransomware|benign (NAME = family or run path); overrides the family folder.")
    var labels: String?

    func runs() throws -> [Run] {
        let l = try labels.map { try Dataset.readLabels($0) } ?? [:]
        return try Dataset.discover(dataset, labels: l)
    }
}

struct FeatureOptions: ParsableArguments {
    @Option(help: "Window length in milliseconds.")
    var windowMs: Int = 100

    @Option(help: "Feature set: published (the five of the paper), extended (ours added), structural (extended without entropy: does not mistake full-disk encryption for ransomware) or context (extended with 5 s and 30 s averages).")
    var features: FeatureSet = .structural

    @Option(help: "Features to leave out of the set, comma-separated (for ablations), e.g. write_bps_30s,read_bps_30s.")
    var dropFeatures: String?

    @Flag(inversion: .prefixedNo,
          help: "Stack two models: the second also sees the first one's window verdicts averaged over the last 5 s and 30 s.")
    var stacked = true

    var windowNs: UInt64 { UInt64(windowMs) * 1_000_000 }

    private var dropped: [String] {
        (dropFeatures ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The feature names to compute: the set's, less the dropped ones.
    var names: [String] {
        let drop = Set(dropped)
        return WindowFeatures.names(features).filter { !drop.contains($0) }
    }

    func validate() throws {
        if windowMs < 1 || windowMs > 60_000 { throw ValidationError("--window-ms must be between 1 and 60000") }
        if features == .process { throw ValidationError("--features process: those come from behaviour logs, not blocks; use kanshi behaviour train | cross-validate | detect") }
        let all = WindowFeatures.names(features)
        if let bad = dropped.first(where: { !all.contains($0) }) {
            throw ValidationError("--drop-features: '\(bad)' is not a feature of the \(features.rawValue) set (its features: \(all.joined(separator: ", ")))")
        }
        if names.isEmpty { throw ValidationError("--drop-features leaves no feature") }
    }
}

struct RuleOptions: ParsableArguments {
    @Option(help: "Run-level rule: how many of the latest windows with I/O to look at. Without this and --rule-fraction, the rule is chosen by a grouped 3-fold cross-validation on the training runs.")
    var ruleHorizon: Int?
    @Option(help: "Run-level rule: the fraction of those that must be ransomware to flag the run.")
    var ruleFraction: Double?
    @Option(help: "Run-level rule: the probability a window needs to count as ransomware. Without --rule-horizon and --rule-fraction, those are chosen by cross-validation for this threshold; without any of the three, all are chosen (threshold 0.5 to 0.95).")
    var ruleThreshold: Float?

    func validate() throws {
        if (ruleHorizon == nil) != (ruleFraction == nil) { throw ValidationError("give both --rule-horizon and --rule-fraction, or neither (chosen by cross-validation)") }
        if let h = ruleHorizon, h < 1 { throw ValidationError("--rule-horizon must be at least 1") }
        if let f = ruleFraction, !(f > 0 && f <= 1) { throw ValidationError("--rule-fraction must be in (0, 1]") }
        if let t = ruleThreshold, !(t > 0 && t < 1) { throw ValidationError("--rule-threshold must be in (0, 1), got \(t)") }
    }

    /// Trains with the fixed rule, or chooses it on the training runs.
    func train(_ kind: ClassifierKind, tables: [FeatureTable], labels: [Label], featureSet: FeatureSet, windowNs: UInt64,
               stacked: Bool, quiet: Bool) throws -> DetectorModel {
        if let h = ruleHorizon, let f = ruleFraction {
            return try DetectorModel.train(kind, tables: tables, labels: labels, featureSet: featureSet, windowNs: windowNs,
                                           ruleHorizon: h, ruleFraction: f, ruleThreshold: ruleThreshold ?? 0.5, stacked: stacked)
        }
        let (m, c) = try RuleSelection.train(kind, tables: tables, labels: labels, featureSet: featureSet, windowNs: windowNs,
                                             stacked: stacked, thresholds: ruleThreshold.map { [$0] } ?? RuleSelection.thresholds)
        if !quiet {
            Output.error("rule chosen on the training runs: \(c.horizon) windows at \(Int(c.fraction * 100)) % over p \(c.threshold) (inner folds: \(c.falseAlarms) benign flagged, \(c.missed) ransomware missed)")
        }
        return m
    }
}

extension FeatureSet: ExpressibleByArgument {}
extension ClassifierKind: ExpressibleByArgument {}

/// A run's features, loaded with progress on standard error.
struct LoadedRun {
    var run: Run
    var table: FeatureTable
    var firstWriteNs: UInt64?
}

func loadRuns(_ runs: [Run], windowNs: UInt64, names: [String], quiet: Bool = false) throws -> [LoadedRun] {
    var out: [LoadedRun] = []
    for (i, run) in runs.enumerated() {
        let trace = try run.load()
        if trace.writes.isEmpty {
            Output.error("note: \(run.name) has no writes (\(trace.reads.count) reads); its windows are kept")
        }
        let t = WindowFeatures.compute(trace, windowNs: windowNs, names: names)
        if !quiet { Output.error("[\(i + 1)/\(runs.count)] \(run.name): \(trace.reads.count) reads, \(trace.writes.count) writes, \(t.rows) windows") }
        out.append(LoadedRun(run: run, table: t, firstWriteNs: trace.writes.first?.timeNs))
    }
    return out
}

/// Window- and run-level results of a model on runs.
struct RunResult {
    var name: String
    var label: Label
    var windows: Int
    var confusion: Confusion
    var alertWindow: Int?
    var delayNs: UInt64?
    var bytesBeforeAlert: UInt64?
}

func score(_ model: DetectorModel, _ r: LoadedRun) throws -> RunResult {
    let p = try model.predict(r.table)
    var c = Confusion()
    for x in p { c.add(predicted: x >= model.threshold, actual: r.run.label.isPositive) }
    var res = RunResult(name: r.run.name, label: r.run.label, windows: r.table.rows, confusion: c)
    if let i = model.firstAlert(p) {
        res.alertWindow = i
        let alertNs = r.table.windowStart[i] + model.windowNs
        if let first = r.firstWriteNs {
            res.delayNs = alertNs > first ? alertNs - first : 0
            res.bytesBeforeAlert = r.table.writtenBytes[0...i].reduce(0, +)
        }
    }
    return res
}

/// The results as a JSON object: window metrics, each run's verdict, the misjudged runs.
func summary(_ results: [RunResult], title: String) -> [String: Any] {
    let total = results.reduce(Confusion()) { $0 + $1.confusion }
    let delays = results.filter { $0.label == .ransomware }.compactMap(\.delayNs).sorted()
    return [
        "title": title,
        "windows": ["precision": total.precision, "recall": total.recall, "f1": total.f1, "accuracy": total.accuracy,
                    "tp": total.truePositive, "fp": total.falsePositive, "tn": total.trueNegative, "fn": total.falseNegative],
        "runs": results.map { r -> [String: Any] in
            var d: [String: Any] = ["name": r.name, "label": r.label.rawValue, "windows": r.windows,
                                    "flagged": r.alertWindow != nil, "f1": r.confusion.f1, "accuracy": r.confusion.accuracy]
            if let v = r.delayNs { d["delayNs"] = v }
            if let v = r.bytesBeforeAlert { d["bytesBeforeAlert"] = v }
            return d
        },
        "missedRansomwareRuns": results.filter { $0.label == .ransomware && $0.alertWindow == nil }.map(\.name),
        "falseAlarmRuns": results.filter { $0.label == .benign && $0.alertWindow != nil }.map(\.name),
        "medianDelayNs": (delays.isEmpty ? nil : delays[delays.count / 2]) as Any,
    ]
}

func report(_ results: [RunResult], title: String, json: Bool) throws {
    if json {
        Output.line(try Output.json(summary(results, title: title)))
        return
    }
    let total = results.reduce(Confusion()) { $0 + $1.confusion }
    let flagged = results.filter { $0.alertWindow != nil }
    let missed = results.filter { $0.label == .ransomware && $0.alertWindow == nil }
    let falseAlarms = results.filter { $0.label == .benign && $0.alertWindow != nil }
    let delays = results.filter { $0.label == .ransomware }.compactMap(\.delayNs).sorted()
    let median = delays.isEmpty ? nil : delays[delays.count / 2]
    Output.line("== \(title)")
    Output.line(String(format: "windows: precision %.4f  recall %.4f  F1 %.4f  accuracy %.4f  (%d windows)",
                       total.precision, total.recall, total.f1, total.accuracy, total.total))
    Output.line("confusion (rows actual, columns predicted):")
    Output.line(String(format: "               ransomware    benign"))
    Output.line(String(format: "  ransomware   %10d %9d", total.truePositive, total.falseNegative))
    Output.line(String(format: "  benign       %10d %9d", total.falsePositive, total.trueNegative))
    Output.line("runs: \(flagged.count) flagged of \(results.count); ransomware missed: \(missed.count); benign flagged: \(falseAlarms.count)")
    if let median { Output.line(String(format: "median detection delay: %.2f s after the first write", Double(median) / 1e9)) }
    for r in results {
        let verdict = r.alertWindow == nil ? "clean  " : "FLAGGED"
        var line = "  \(verdict) \(r.label == .ransomware ? "R" : "b") \(r.name)  windows \(r.windows)  acc \(String(format: "%.3f", r.confusion.accuracy))"
        if let d = r.delayNs { line += String(format: "  delay %.2f s", Double(d) / 1e9) }
        if let b = r.bytesBeforeAlert { line += "  \(Output.bytes(b)) written before" }
        Output.line(line)
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a ransomware detector on labelled recordings.",
        discussion: "The model file holds the window settings, feature scaling, the classifier and the run-level rule.")

    @OptionGroup var data: DatasetOptions
    @OptionGroup var feat: FeatureOptions

    @Option(help: "Classifier: rf (random forest) or gbdt (gradient-boosted trees), both XGBoost; svm (libsvm, RBF); knn (k = 5).")
    var classifier: ClassifierKind = .gbdt

    @OptionGroup var rule: RuleOptions

    @Option(help: "Where to write the model.")
    var model: String

    func run() throws {
        let loaded = try loadRuns(try data.runs(), windowNs: feat.windowNs, names: feat.names)
        let m = try rule.train(classifier, tables: loaded.map(\.table), labels: loaded.map(\.run.label),
                               featureSet: feat.features, windowNs: feat.windowNs, stacked: feat.stacked, quiet: false)
        try m.save(to: model)
        Output.line("trained \(classifier.rawValue) on \(loaded.count) runs, \(loaded.reduce(0) { $0 + $1.table.rows }) windows; wrote \(model)")
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a model on labelled recordings: window-level metrics, confusion matrix, run-level verdicts.")

    @Option(help: "A model from `kanshi train`.")
    var model: String
    @OptionGroup var data: DatasetOptions
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let m = try DetectorModel.load(from: model, for: .blocks)
        let loaded = try loadRuns(try data.runs(), windowNs: m.windowNs, names: m.featureNames, quiet: json)
        try report(try loaded.map { try score(m, $0) }, title: "\(m.classifier.rawValue) model \(model) on \(data.dataset)", json: json)
    }
}

/// Whether cross-validation uses the memory sensor's features.
enum MemoryColumns: String, ExpressibleByArgument, CaseIterable {
    case off, on, compare
}

struct CrossValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cross-validate",
        abstract: "k-fold cross-validation with folds grouped by run (a run is never in both training and test).",
        discussion: """
            --memory on adds the memory sensor's features (memory.csv beside each run, from \
            kanshi dataset record --memory-watch) to every window: the latest 1 s of the watched \
            processes' page activity that had ended by the window's end. --memory compare runs \
            the same folds without and with them and reports both.
            """)

    @OptionGroup var data: DatasetOptions
    @OptionGroup var feat: FeatureOptions
    @Option(help: "Classifier: rf, gbdt, svm or knn.")
    var classifier: ClassifierKind = .gbdt
    @Option(help: "Number of folds.")
    var folds: Int = 5
    @Option(help: "Seed of the fold assignment.")
    var seed: UInt64 = 42
    @Option(help: "Memory-access features: off, on (every run needs a memory.csv) or compare (without, then with).")
    var memory: MemoryColumns = .off
    @OptionGroup var rule: RuleOptions
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws { if folds < 2 { throw ValidationError("--folds must be at least 2") } }

    func run() throws {
        var loaded = try loadRuns(try data.runs(), windowNs: feat.windowNs, names: feat.names, quiet: json)
        guard loaded.count >= folds else { throw CLIError("\(loaded.count) runs are too few for \(folds) folds") }
        let assignment = GroupedFolds.assign(labels: loaded.map(\.run.label), folds: folds, seed: seed)
        let title = "\(folds)-fold grouped cross-validation, \(classifier.rawValue), \(feat.features.rawValue) features\(feat.dropFeatures.map { " less \($0)" } ?? "")\(feat.stacked ? ", stacked" : ""), \(feat.windowMs) ms windows"
        if memory == .off {
            try report(try folds(loaded, assignment), title: title, json: json)
            return
        }
        let without = memory == .compare ? try folds(loaded, assignment) : nil
        for i in loaded.indices {
            guard let csv = loaded[i].run.memoryFeatures else {
                throw CLIError("\(loaded[i].run.path): no memory.csv; record the dataset with kanshi dataset record --memory-watch kanshi")
            }
            loaded[i].table = MemoryWindows.joined(loaded[i].table, blockWindowNs: feat.windowNs, memory: try MemoryWindows.read(csv: csv))
        }
        let with = try folds(loaded, assignment)
        let withTitle = title + ", with memory features"
        guard let without else {
            try report(with, title: withTitle, json: json)
            return
        }
        if json {
            Output.line(try Output.json(["without": summary(without, title: title), "with": summary(with, title: withTitle)]))
            return
        }
        try report(without, title: title, json: false)
        try report(with, title: withTitle, json: false)
        let a = without.reduce(Confusion()) { $0 + $1.confusion }, b = with.reduce(Confusion()) { $0 + $1.confusion }
        func wrong(_ r: [RunResult]) -> Int { r.filter { ($0.alertWindow != nil) != $0.label.isPositive }.count }
        Output.line(String(format: "== memory features: window F1 %.4f -> %.4f, accuracy %.4f -> %.4f; runs misjudged %d -> %d of %d",
                           a.f1, b.f1, a.accuracy, b.accuracy, wrong(without), wrong(with), with.count))
    }

    /// Every fold's test runs scored by a model trained on the other folds, sorted by name.
    private func folds(_ loaded: [LoadedRun], _ assignment: [Int]) throws -> [RunResult] {
        var results: [RunResult] = []
        for f in 0..<folds {
            let train = loaded.indices.filter { assignment[$0] != f }, test = loaded.indices.filter { assignment[$0] == f }
            precondition(Set(train).isDisjoint(with: test))
            let m = try rule.train(classifier, tables: train.map { loaded[$0].table }, labels: train.map { loaded[$0].run.label },
                                   featureSet: feat.features, windowNs: feat.windowNs, stacked: feat.stacked, quiet: json)
            let fold = try test.map { try score(m, loaded[$0]) }
            let c = fold.reduce(Confusion()) { $0 + $1.confusion }
            if !json { Output.error(String(format: "fold %d: %d test runs, window F1 %.4f", f + 1, test.count, c.f1)) }
            results += fold
        }
        return results.sorted { $0.name < $1.name }
    }
}
