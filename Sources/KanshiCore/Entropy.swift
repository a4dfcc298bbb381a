import CKanshiShims

/// Byte-level Shannon entropy, normalised to [0, 1] (bits per byte / 8).
///
/// This is the dataset's "entropy #1" when computed over a 4096-byte block:
/// 0 for a block of one repeated byte, about 0.995 for random bytes.
public enum Entropy {
    /// Entropy of `bytes` as bits per byte divided by 8; 0 for an empty buffer.
    public static func normalized(_ bytes: UnsafeRawBufferPointer) -> Double {
        guard bytes.count > 0 else { return 0 }
        return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 256) { c in
            c.initialize(repeating: 0)
            ckanshi_byte_histogram(bytes.baseAddress, bytes.count, c.baseAddress)
            if bytes.count <= tableLimit {
                // c·log2(c) from a table: no logarithm per bin for the usual 4 KiB piece.
                var sum = 0.0
                xlog2x.withUnsafeBufferPointer { t in
                    for i in 0..<256 { sum += t[Int(c[i])] }
                }
                let n = Double(bytes.count)
                return max(0, min(1, (log2(n) - sum / n) / 8))
            }
            return fromHistogram(Array(c), total: bytes.count)
        }
    }

    private static let tableLimit = 4096
    /// c·log2(c) for c in 0...4096.
    private static let xlog2x: [Double] = (0...tableLimit).map { c in c < 2 ? 0 : Double(c) * log2(Double(c)) }

    /// Entropy of a byte array (convenience for tests and small inputs).
    public static func normalized(_ bytes: [UInt8]) -> Double {
        bytes.withUnsafeBytes { normalized($0) }
    }

    /// Entropy from a 256-bin histogram whose counts add up to `total`.
    ///
    /// Uses H = log2(N) - (Σ c·log2 c) / N, so only non-zero bins cost a log.
    public static func fromHistogram(_ counts: [UInt32], total: Int) -> Double {
        guard total > 0 else { return 0 }
        var sum = 0.0
        for c in counts where c > 1 {
            let d = Double(c)
            sum += d * log2(d)
        }
        let n = Double(total)
        let bits = log2(n) - sum / n
        return max(0, min(1, bits / 8))
    }

    /// The dataset's "entropy #2": the mean, over the 256-byte pieces of
    /// `bytes`, of each piece's normalised entropy (RanSAP defines it as a sum
    /// of per-256-byte entropies and did not use it; ours is documented, not
    /// bit-compatible).
    public static func meanOf256BytePieces(_ bytes: UnsafeRawBufferPointer) -> Double {
        guard bytes.count > 0 else { return 0 }
        var total = 0.0
        var pieces = 0
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + 256, bytes.count)
            total += normalized(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            pieces += 1
            offset = end
        }
        return total / Double(pieces)
    }

    /// Normalised entropy of each `blockSize` piece of `bytes` (the last
    /// piece may be shorter).
    public static func perBlock(_ bytes: UnsafeRawBufferPointer, blockSize: Int = 4096) -> [Float] {
        var result: [Float] = []
        result.reserveCapacity((bytes.count + blockSize - 1) / blockSize)
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + blockSize, bytes.count)
            result.append(Float(normalized(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))))
            offset = end
        }
        return result
    }
}

#if canImport(Glibc)
import func Glibc.log2
#elseif canImport(Musl)
import func Musl.log2
#elseif canImport(Darwin)
import func Darwin.log2
#endif
