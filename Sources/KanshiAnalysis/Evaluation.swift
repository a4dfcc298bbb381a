/// Binary confusion matrix for the ransomware class.
public struct Confusion: Sendable, Codable, Equatable {
    public var truePositive = 0, falsePositive = 0, trueNegative = 0, falseNegative = 0

    public init() {}

    public mutating func add(predicted: Bool, actual: Bool) {
        switch (predicted, actual) {
        case (true, true): truePositive += 1
        case (true, false): falsePositive += 1
        case (false, false): trueNegative += 1
        case (false, true): falseNegative += 1
        }
    }

    public static func + (a: Confusion, b: Confusion) -> Confusion {
        var c = a
        c.truePositive += b.truePositive; c.falsePositive += b.falsePositive
        c.trueNegative += b.trueNegative; c.falseNegative += b.falseNegative
        return c
    }

    public var total: Int { truePositive + falsePositive + trueNegative + falseNegative }
    public var precision: Double { ratio(truePositive, truePositive + falsePositive) }
    public var recall: Double { ratio(truePositive, truePositive + falseNegative) }
    public var f1: Double { precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0 }
    public var accuracy: Double { ratio(truePositive + trueNegative, total) }

    private func ratio(_ a: Int, _ b: Int) -> Double { b > 0 ? Double(a) / Double(b) : 0 }
}

/// Splits runs into k folds, stratified by label, never splitting a run.
public enum GroupedFolds {
    /// Fold index for each run (same order as `labels`), from a seeded shuffle.
    public static func assign(labels: [Label], folds k: Int, seed: UInt64 = 42) -> [Int] {
        var rng = SplitMix(seed: seed)
        var out = [Int](repeating: 0, count: labels.count)
        for label in Label.allCases {
            var idx = labels.indices.filter { labels[$0] == label }
            idx.shuffle(using: &rng)
            let offset = Int(rng.next() % UInt64(k))
            for (j, i) in idx.enumerated() { out[i] = (j + offset) % k }
        }
        return out
    }
}

/// A small deterministic generator for reproducible splits.
public struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
