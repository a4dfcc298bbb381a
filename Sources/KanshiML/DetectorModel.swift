import Foundation
import KanshiAnalysis

/// The classifiers Kanshi trains.
public enum ClassifierKind: String, Sendable, Codable, CaseIterable {
    /// Random forest (XGBoost: one round of 100 parallel trees on row and column samples).
    case rf
    /// Gradient-boosted trees (XGBoost).
    case gbdt
    /// Support vector machine, RBF kernel (libsvm), on at most 6000 training windows.
    case svm
    /// k nearest neighbours (k = 5), on at most 20000 training windows.
    case knn
}

/// Window settings, features, scaling, the trained model and the run-level
/// rule, in one file (JSON).
public struct DetectorModel: Codable, Sendable {
    public var format = "kanshi-detector"
    public var version = 1
    public var classifier: ClassifierKind
    public var featureSet: FeatureSet
    public var windowNs: UInt64
    public var featureNames: [String]
    /// Features compressed with log(1 + x) before scaling (throughputs,
    /// variances, spreads, ratios: heavy-tailed, non-negative).
    public var logFeatures: [Bool]
    /// Per-feature mean and standard deviation of the training windows (after the log).
    public var mean: [Float]
    public var std: [Float]
    /// A window is ransomware when the model's probability reaches this.
    public var threshold: Float
    /// A run is flagged once at least `ruleFraction` of its last
    /// `ruleHorizon` windows with I/O are ransomware.
    public var ruleHorizon: Int
    public var ruleFraction: Double
    /// The probability a window needs to count as ransomware for the
    /// run-level rule (nil, as in models from before it was chosen: `threshold`).
    public var ruleThreshold: Float?
    /// The classifier's own model: XGBoost JSON (base64), libsvm's model
    /// text, or the kNN training windows (JSON).
    public var payload: String
    /// A stacked model's first stage (one model, same features, no rule of
    /// its own): its window probabilities, averaged over the last 5 s and
    /// 30 s (`WindowFeatures.verdictNames`), are added to the features this
    /// model's classifier sees. Nil: one stage.
    public var stage1: [DetectorModel]?

    /// Names of what the classifier sees: the features, then for a stacked model the verdict averages.
    public var inputNames: [String] { featureNames + (stage1 == nil ? [] : WindowFeatures.verdictNames) }

    /// Trains on labelled feature tables (one per run); `stacked`: two
    /// stages, the second also seeing the first's verdicts over the last
    /// seconds (the first stage's verdicts on the training runs come from a
    /// grouped 3-fold cross-validation, as they would be on runs it never saw).
    public static func train(_ kind: ClassifierKind, tables: [FeatureTable], labels: [Label], featureSet: FeatureSet,
                             windowNs: UInt64, ruleHorizon: Int = 3, ruleFraction: Double = 1, ruleThreshold: Float? = nil,
                             stacked: Bool = false, threads: Int = 2) throws -> DetectorModel {
        guard stacked else {
            return try trainOne(kind, tables: tables, labels: labels, featureSet: featureSet, windowNs: windowNs, ruleHorizon: ruleHorizon,
                                ruleFraction: ruleFraction, ruleThreshold: ruleThreshold, threads: threads)
        }
        let base = try trainOne(kind, tables: tables, labels: labels, featureSet: featureSet, windowNs: windowNs, threads: threads)
        var verdicts = [[Float]?](repeating: nil, count: tables.count)
        let folds = GroupedFolds.assign(labels: labels, folds: min(3, max(labels.count, 2)), seed: 99)
        for f in Set(folds).sorted() {
            let train = labels.indices.filter { folds[$0] != f }, test = labels.indices.filter { folds[$0] == f }
            guard Set(train.map { labels[$0] }).count == 2 else { continue }  // needs both classes
            let m = try trainOne(kind, tables: train.map { tables[$0] }, labels: train.map { labels[$0] }, featureSet: featureSet,
                                 windowNs: windowNs, threads: threads)
            for i in test { verdicts[i] = try m.predict(tables[i]) }
        }
        let augmented = try tables.indices.map { i in
            WindowFeatures.addingVerdicts(try verdicts[i] ?? base.predict(tables[i]), to: tables[i], windowNs: windowNs)
        }
        var m = try trainOne(kind, tables: augmented, labels: labels, featureSet: featureSet, windowNs: windowNs, ruleHorizon: ruleHorizon,
                             ruleFraction: ruleFraction, ruleThreshold: ruleThreshold, threads: threads)
        m.featureNames = base.featureNames
        m.stage1 = [base]
        return m
    }

    static func trainOne(_ kind: ClassifierKind, tables: [FeatureTable], labels: [Label], featureSet: FeatureSet,
                         windowNs: UInt64, ruleHorizon: Int = 3, ruleFraction: Double = 1, ruleThreshold: Float? = nil,
                         threads: Int = 2) throws -> DetectorModel {
        guard let first = tables.first else { throw AnalysisError.invalid("no training data") }
        let cols = first.columns
        var values: [Float] = [], y: [Float] = []
        for (t, l) in zip(tables, labels) {
            values += t.values
            y += [Float](repeating: l.isPositive ? 1 : 0, count: t.rows)
        }
        guard !y.isEmpty else { throw AnalysisError.invalid("the training runs have no windows with I/O") }
        let logs = first.names.map { n in ["bps", "var", "spread", "ratio", "rate"].contains { n.contains($0) } }
        let logged = logTransform(values, logs)
        let (mean, std) = moments(logged, columns: cols)
        let scaled = scale(logged, mean: mean, std: std, columns: cols)
        let payload: String
        switch kind {
        case .rf, .gbdt:
            let dm = try DMatrix(values: scaled, rows: y.count, columns: cols, labels: y)
            let common = [("objective", "binary:logistic"), ("tree_method", "hist"), ("nthread", "\(threads)"),
                          ("seed", "7"), ("verbosity", "0")]
            let booster: Booster
            if kind == .rf {
                booster = try Booster(params: common + [("num_parallel_tree", "100"), ("subsample", "0.8"),
                                                        ("colsample_bynode", "0.8"), ("eta", "1"), ("max_depth", "12")], cache: [dm])
                try booster.train(dm, rounds: 1)
            } else {
                booster = try Booster(params: common + [("eta", "0.1"), ("max_depth", "6"), ("subsample", "0.9")], cache: [dm])
                try booster.train(dm, rounds: 150)
            }
            payload = Data(try booster.serialized()).base64EncodedString()
        case .svm:
            let (v, l) = subsample(scaled, y, columns: cols, limit: 6000)
            payload = try LibSVM.train(values: v, labels: l, columns: cols)
        case .knn:
            let (v, l) = subsample(scaled, y, columns: cols, limit: 20000)
            payload = String(decoding: try JSONEncoder().encode(KNN(k: 5, columns: cols, values: v, labels: l)), as: UTF8.self)
        }
        return DetectorModel(classifier: kind, featureSet: featureSet, windowNs: windowNs, featureNames: first.names,
                             logFeatures: logs, mean: mean, std: std, threshold: 0.5, ruleHorizon: ruleHorizon, ruleFraction: ruleFraction,
                             ruleThreshold: ruleThreshold, payload: payload)
    }

    /// Probability of ransomware for each window of the table.
    public func predict(_ table: FeatureTable) throws -> [Float] {
        try LoadedDetector(self).predict(table)
    }

    /// At most `limit` rows, drawn without replacement (seeded), classes in proportion.
    static func subsample(_ v: [Float], _ y: [Float], columns: Int, limit: Int) -> ([Float], [Float]) {
        guard y.count > limit else { return (v, y) }
        var idx = Array(y.indices)
        var rng = SplitMix(seed: 11)
        idx.shuffle(using: &rng)
        let keep = idx.prefix(limit).sorted()
        var outV: [Float] = [], outY: [Float] = []
        outV.reserveCapacity(limit * columns)
        for i in keep {
            outV += v[(i * columns)..<((i + 1) * columns)]
            outY.append(y[i])
        }
        return (outV, outY)
    }

    /// The features this model was trained on, for a trace.
    public func features(_ trace: BlockTrace) -> FeatureTable {
        WindowFeatures.compute(trace, windowNs: windowNs, names: featureNames)
    }

    /// Index of the window at which the run-level rule first fires, if it does.
    public func firstAlert(_ probabilities: [Float]) -> Int? {
        Self.firstAlert(probabilities, threshold: ruleThreshold ?? threshold, horizon: ruleHorizon, fraction: ruleFraction)
    }

    static func firstAlert(_ probabilities: [Float], threshold: Float, horizon: Int, fraction: Double) -> Int? {
        let need = max(Int((Double(horizon) * fraction).rounded(.up)), 1)
        var positives = 0
        for (i, p) in probabilities.enumerated() {
            if p >= threshold { positives += 1 }
            if i >= horizon, probabilities[i - horizon] >= threshold { positives -= 1 }
            if positives >= need { return i }
        }
        return nil
    }

    public func save(to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try enc.encode(self).write(to: URL(fileURLWithPath: path))
    }

    /// What a model is loaded for: block windows (journals, RanSAP runs) or process windows (behaviour logs).
    public enum Use: Sendable { case blocks, processes }

    /// Loads a model and checks it is one for `use`.
    public static func load(from path: String, for use: Use) throws -> DetectorModel {
        let m = try load(from: path)
        switch (use, m.featureSet == .process) {
        case (.blocks, true):
            throw AnalysisError.invalid("\(path) is a process model (it reads behaviour logs, not blocks): use it with --process-model or kanshi behaviour")
        case (.processes, false):
            throw AnalysisError.invalid("\(path) is a block model (\(m.featureSet.rawValue) features): a process model comes from kanshi behaviour train")
        default:
            return m
        }
    }

    public static func load(from path: String) throws -> DetectorModel {
        guard let data = FileManager.default.contents(atPath: path) else { throw AnalysisError.missingFile(path) }
        let m: DetectorModel
        do {
            m = try JSONDecoder().decode(DetectorModel.self, from: data)
        } catch {
            throw AnalysisError.invalid("\(path): not a Kanshi detector model (\(error))")
        }
        guard m.format == "kanshi-detector", m.version == 1 else {
            throw AnalysisError.invalid("\(path): model format \(m.format) v\(m.version) is not supported")
        }
        let unknown = m.featureSet == .process ? m.featureNames.filter { !ProcessWindows.names.contains($0) } : WindowFeatures.unknown(m.featureNames)
        guard unknown.isEmpty else {
            throw AnalysisError.invalid("\(path): the model uses features this version does not compute: \(unknown.joined(separator: ", "))")
        }
        let inputs = m.inputNames.count
        guard m.logFeatures.count == inputs, m.mean.count == inputs, m.std.count == inputs else {
            throw AnalysisError.invalid("\(path): the model's scaling does not match its \(inputs) inputs")
        }
        if let s = m.stage1 {
            guard s.count == 1, s[0].stage1 == nil, s[0].featureNames == m.featureNames, s[0].windowNs == m.windowNs,
                  s[0].logFeatures.count == m.featureNames.count, s[0].mean.count == m.featureNames.count, s[0].std.count == m.featureNames.count
            else { throw AnalysisError.invalid("\(path): the model's first stage does not match it") }
        }
        return m
    }

    static func moments(_ v: [Float], columns: Int) -> ([Float], [Float]) {
        let rows = v.count / max(columns, 1)
        var mean = [Double](repeating: 0, count: columns), sq = [Double](repeating: 0, count: columns)
        for r in 0..<rows { for c in 0..<columns { let x = Double(v[r * columns + c]); mean[c] += x; sq[c] += x * x } }
        let n = Double(max(rows, 1))
        let m = mean.map { $0 / n }
        let s = zip(sq, m).map { max(($0 / n) - $1 * $1, 0).squareRoot() }
        return (m.map(Float.init), s.map { Float($0 > 0 ? $0 : 1) })
    }

    static func logTransform(_ v: [Float], _ logs: [Bool]) -> [Float] {
        guard logs.contains(true) else { return v }
        var out = v
        let c = logs.count
        for i in 0..<out.count where logs[i % c] { out[i] = log1p(max(out[i], 0)) }
        return out
    }

    static func scale(_ v: [Float], mean: [Float], std: [Float], columns: Int) -> [Float] {
        var out = v
        for i in 0..<out.count { let c = i % columns; out[i] = (out[i] - mean[c]) / std[c] }
        return out
    }
}
