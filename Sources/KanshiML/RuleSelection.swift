import KanshiAnalysis

/// Chooses the run-level rule inside training: grouped cross-validation on
/// the training runs only, so the rule never sees the runs it is judged on.
public enum RuleSelection {
    public struct Choice: Sendable {
        public var horizon: Int
        public var fraction: Double
        /// The probability a window needs to count.
        public var threshold: Float
        /// On the inner folds: benign runs flagged, ransomware runs missed, median delay.
        public var falseAlarms: Int
        public var missed: Int
        public var medianDelayNs: UInt64?
    }

    public static let horizons = [3, 5, 8, 10, 15, 20, 30]
    public static let fractions = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    public static let thresholds: [Float] = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]

    /// Trains a model with the rule chosen by `innerFolds`-fold grouped
    /// cross-validation on these runs (fewest wrong run verdicts, then the
    /// shortest median delay): how many windows, what fraction of them, and
    /// the probability a window needs to count (one of `thresholds`).
    public static func train(_ kind: ClassifierKind, tables: [FeatureTable], labels: [Label], featureSet: FeatureSet,
                             windowNs: UInt64, stacked: Bool = false, thresholds: [Float] = thresholds, innerFolds: Int = 3,
                             threads: Int = 2) throws -> (DetectorModel, Choice) {
        let folds = GroupedFolds.assign(labels: labels, folds: min(innerFolds, max(labels.count, 2)), seed: 1234)
        var held: [(probabilities: [Float], label: Label, table: FeatureTable)] = []
        for f in Set(folds).sorted() {
            let train = labels.indices.filter { folds[$0] != f }, test = labels.indices.filter { folds[$0] == f }
            guard Set(train.map { labels[$0] }).count == 2 else { continue }  // needs both classes
            let m = try DetectorModel.train(kind, tables: train.map { tables[$0] }, labels: train.map { labels[$0] },
                                            featureSet: featureSet, windowNs: windowNs, stacked: stacked, threads: threads)
            for i in test { held.append((try m.predict(tables[i]), labels[i], tables[i])) }
        }
        var best: Choice?
        for th in thresholds {
            for h in horizons {
                for fr in fractions {
                    let c = judge(held, threshold: th, horizon: h, fraction: fr, windowNs: windowNs)
                    if let b = best {
                        let (ce, be) = (c.falseAlarms + c.missed, b.falseAlarms + b.missed)
                        if ce < be || (ce == be && (c.medianDelayNs ?? .max) < (b.medianDelayNs ?? .max)) { best = c }
                    } else {
                        best = c
                    }
                }
            }
        }
        let choice = best ?? Choice(horizon: 15, fraction: 0.7, threshold: 0.5, falseAlarms: 0, missed: 0, medianDelayNs: nil)
        let model = try DetectorModel.train(kind, tables: tables, labels: labels, featureSet: featureSet, windowNs: windowNs,
                                            ruleHorizon: choice.horizon, ruleFraction: choice.fraction, ruleThreshold: choice.threshold,
                                            stacked: stacked, threads: threads)
        return (model, choice)
    }

    /// Run verdicts and delays of one rule on held-out probabilities.
    static func judge(_ held: [(probabilities: [Float], label: Label, table: FeatureTable)], threshold: Float, horizon: Int,
                      fraction: Double, windowNs: UInt64) -> Choice {
        var fa = 0, missed = 0
        var delays: [UInt64] = []
        for r in held {
            let alert = DetectorModel.firstAlert(r.probabilities, threshold: threshold, horizon: horizon, fraction: fraction)
            if r.label == .benign, alert != nil { fa += 1 }
            if r.label == .ransomware {
                guard let i = alert else { missed += 1; continue }
                let first = r.table.writtenBytes.firstIndex { $0 > 0 }.map { r.table.windowStart[$0] } ?? r.table.windowStart[0]
                let at = r.table.windowStart[i] + windowNs
                delays.append(at > first ? at - first : 0)
            }
        }
        delays.sort()
        return Choice(horizon: horizon, fraction: fraction, threshold: threshold, falseAlarms: fa, missed: missed,
                      medianDelayNs: delays.isEmpty ? nil : delays[delays.count / 2])
    }
}
