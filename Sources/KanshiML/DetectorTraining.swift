import KanshiAnalysis

/// A detector trained on a directory of labelled recordings (RanSAP runs, `kanshi dataset
/// record` output, Kanshi journals), as the demo trains one when given a dataset.
public enum DetectorTraining {
    public struct Result: Sendable {
        public var model: DetectorModel
        public var runs: Int
        public var windows: Int
    }

    /// Discovers the runs under `dataset`, computes their window features and trains: the
    /// run-level rule is chosen by grouped cross-validation on the runs, at `ruleThreshold`
    /// if given.
    public static func train(dataset: String, labels: [String: Label] = [:], classifier: ClassifierKind, featureSet: FeatureSet,
                             windowNs: UInt64 = 100_000_000, stacked: Bool, ruleThreshold: Float?) throws -> Result {
        let runs = try Dataset.discover(dataset, labels: labels)
        guard Set(runs.map(\.label)).count == 2 else {
            throw AnalysisError.invalid("\(dataset): training needs ransomware and benign runs; found only \(runs.first?.label.rawValue ?? "none")")
        }
        let names = WindowFeatures.names(featureSet)
        let tables = try runs.map { WindowFeatures.compute(try $0.load(), windowNs: windowNs, names: names) }
        let (model, _) = try RuleSelection.train(classifier, tables: tables, labels: runs.map(\.label), featureSet: featureSet,
                                                 windowNs: windowNs, stacked: stacked,
                                                 thresholds: ruleThreshold.map { [$0] } ?? RuleSelection.thresholds)
        return Result(model: model, runs: runs.count, windows: tables.reduce(0) { $0 + $1.rows })
    }
}
