import Foundation
import KanshiAnalysis

/// A detector model with its classifier loaded once (XGBoost booster, libsvm model, kNN
/// windows), for predicting again and again: a live detector predicts every few hundred
/// milliseconds, and loading a forest each time would cost more than the prediction.
public final class LoadedDetector: @unchecked Sendable {
    public let model: DetectorModel
    private let booster: Booster?
    private let knn: KNN?
    private let stage1: LoadedDetector?

    public init(_ model: DetectorModel) throws {
        self.model = model
        switch model.classifier {
        case .rf, .gbdt:
            guard let bytes = Data(base64Encoded: model.payload) else { throw AnalysisError.invalid("the model's payload is not base64") }
            booster = try Booster.load([UInt8](bytes))
            knn = nil
        case .svm:
            booster = nil
            knn = nil
        case .knn:
            booster = nil
            knn = try JSONDecoder().decode(KNN.self, from: Data(model.payload.utf8))
        }
        stage1 = try model.stage1?.first.map { try LoadedDetector($0) }
    }

    /// Whether the classifier also sees a first stage's verdicts (then see `predictLast`).
    public var stacked: Bool { stage1 != nil }

    /// The probability of ransomware for each row of `table` (its columns: the model's features).
    public func predict(_ table: FeatureTable) throws -> [Float] {
        guard table.rows > 0 else { return [] }
        try check(table)
        guard let stage1 else { return try classify(table) }
        return try classify(WindowFeatures.addingVerdicts(try stage1.predict(table), to: table, windowNs: model.windowNs))
    }

    /// The first stage's probabilities for `table` (a stacked model's verdicts come from them).
    public func stage1Predict(_ table: FeatureTable) throws -> [Float] {
        guard let stage1 else { throw AnalysisError.invalid("the model has one stage") }
        try check(table)
        return try stage1.predict(table)
    }

    /// The last `count` rows of a stacked model's prediction, given every row so far and the first
    /// stage's probabilities for all of them (kept by the caller, so no row goes through the first
    /// stage twice).
    public func predictLast(_ count: Int, of table: FeatureTable, stage1 probabilities: [Float]) throws -> [Float] {
        guard count > 0 else { return [] }
        try check(table)
        let all = WindowFeatures.addingVerdicts(probabilities, to: table, windowNs: model.windowNs)
        return try classify(all.suffix(rows: count))
    }

    private func check(_ table: FeatureTable) throws {
        guard table.names == model.featureNames else {
            throw AnalysisError.invalid("the model expects features \(model.featureNames), the data has \(table.names)")
        }
    }

    /// The classifier on rows that already carry every input it sees.
    private func classify(_ input: FeatureTable) throws -> [Float] {
        guard input.rows > 0 else { return [] }
        let scaled = DetectorModel.scale(DetectorModel.logTransform(input.values, model.logFeatures), mean: model.mean, std: model.std,
                                         columns: input.columns)
        switch model.classifier {
        case .rf, .gbdt: return try booster!.predict(try DMatrix(values: scaled, rows: input.rows, columns: input.columns))
        case .svm: return try LibSVM.predict(modelText: model.payload, values: scaled, columns: input.columns)
        case .knn: return try knn!.predict(scaled)
        }
    }
}

extension FeatureTable {
    /// The last `count` rows.
    public func suffix(rows count: Int) -> FeatureTable {
        let drop = Swift.max(rows - count, 0)
        var t = self
        t.values.removeFirst(drop * columns)
        t.windowStart.removeFirst(drop)
        t.writtenBytes.removeFirst(drop)
        return t
    }

    /// The first `count` rows.
    public func prefix(rows count: Int) -> FeatureTable {
        let keep = Swift.min(Swift.max(count, 0), rows)
        var t = self
        t.values.removeLast((rows - keep) * columns)
        t.windowStart.removeLast(rows - keep)
        t.writtenBytes.removeLast(rows - keep)
        return t
    }

    /// This table with `other`'s rows after its own (same columns).
    public mutating func append(rows other: FeatureTable) {
        precondition(other.names == names || other.rows == 0)
        values += other.values
        windowStart += other.windowStart
        writtenBytes += other.writtenBytes
    }
}
