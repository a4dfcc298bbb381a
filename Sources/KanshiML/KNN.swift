import Foundation

/// k nearest neighbours over standardised windows, by brute force.
struct KNN: Codable {
    var k: Int
    var columns: Int
    /// Row-major training windows (base64 of little-endian Float32).
    var values: String
    /// 1 or 0 per training window (base64 of bytes).
    var labels: String

    init(k: Int, columns: Int, values: [Float], labels: [Float]) {
        self.k = k
        self.columns = columns
        self.values = values.withUnsafeBytes { Data($0).base64EncodedString() }
        self.labels = Data(labels.map { $0 > 0.5 ? UInt8(1) : 0 }).base64EncodedString()
    }

    /// Fraction of ransomware windows among the k nearest, per row.
    func predict(_ queries: [Float]) throws -> [Float] {
        guard let v = Data(base64Encoded: values), let l = Data(base64Encoded: labels) else {
            throw KNNError(message: "the kNN model's data is not base64")
        }
        let train: [Float] = v.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let y = [UInt8](l)
        let n = y.count
        guard train.count == n * columns, n > 0 else { throw KNNError(message: "the kNN model's data is inconsistent") }
        let kk = min(k, n)
        let rows = queries.count / columns
        var out = [Float](repeating: 0, count: rows)
        train.withUnsafeBufferPointer { t in
            queries.withUnsafeBufferPointer { q in
                var bestD = [Float](repeating: .infinity, count: kk)
                var bestY = [UInt8](repeating: 0, count: kk)
                for r in 0..<rows {
                    for j in 0..<kk { bestD[j] = .infinity; bestY[j] = 0 }
                    let qb = r * columns
                    for i in 0..<n {
                        var d: Float = 0
                        let tb = i * columns
                        for c in 0..<columns {
                            let x = q[qb + c] - t[tb + c]
                            d += x * x
                        }
                        if d < bestD[kk - 1] {
                            // Insert, keeping the list sorted.
                            var j = kk - 1
                            while j > 0 && bestD[j - 1] > d {
                                bestD[j] = bestD[j - 1]
                                bestY[j] = bestY[j - 1]
                                j -= 1
                            }
                            bestD[j] = d
                            bestY[j] = y[i]
                        }
                    }
                    out[r] = Float(bestY.reduce(0) { $0 + Int($1) }) / Float(kk)
                }
            }
        }
        return out
    }
}

struct KNNError: Error, CustomStringConvertible {
    var message: String
    var description: String { "kNN: \(message)" }
}
