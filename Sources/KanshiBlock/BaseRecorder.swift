import Foundation
import KanshiJournal

/// Copy on first write: remembers which 4 KiB blocks already have their
/// earlier content (a base record) in the journal, so the first change to
/// any other block is preceded by one. With the bases, any past state of the
/// disk can be rebuilt from the journal and the current image.
final class BaseRecorder: @unchecked Sendable {
    // SAFETY: `words` is only touched under `lock`; `firstWrites` serializes
    // the read-old-content-then-append sequence of first changes.
    private var words: [UInt64]
    private let lock = NSLock()
    private let firstWrites = NSLock()
    let blockCount: UInt64

    init(diskSize: UInt64, based: some Sequence<UInt64>) {
        blockCount = (diskSize + 4095) / 4096
        words = [UInt64](repeating: 0, count: Int((blockCount + 63) / 64))
        for b in based where b < blockCount { words[Int(b / 64)] |= 1 << (b % 64) }
    }

    /// True if every block in `range` has its base.
    func allBased(_ requested: Range<UInt64>) -> Bool {
        let range = requested.clamped(to: 0..<blockCount)
        lock.lock(); defer { lock.unlock() }
        var b = range.lowerBound
        while b < range.upperBound {
            let w = Int(b / 64)
            if b % 64 == 0 && b + 64 <= range.upperBound {
                if words[w] != .max { return false }
                b += 64
                continue
            }
            if words[w] & (1 << (b % 64)) == 0 { return false }
            b += 1
        }
        return true
    }

    /// The blocks of `range` without a base.
    func unbased(_ requested: Range<UInt64>) -> [UInt64] {
        let range = requested.clamped(to: 0..<blockCount)
        lock.lock(); defer { lock.unlock() }
        var out: [UInt64] = []
        var b = range.lowerBound
        while b < range.upperBound {
            let w = Int(b / 64)
            if b % 64 == 0 && b + 64 <= range.upperBound && words[w] == .max { b += 64; continue }
            if words[w] & (1 << (b % 64)) == 0 { out.append(b) }
            b += 1
        }
        return out
    }

    func mark(_ blocks: [UInt64]) {
        lock.lock(); defer { lock.unlock() }
        for b in blocks { words[Int(b / 64)] |= 1 << (b % 64) }
    }

    func serializeFirstWrites<R>(_ body: () throws -> R) rethrows -> R {
        firstWrites.lock(); defer { firstWrites.unlock() }
        return try body()
    }
}

/// The 4 KiB blocks a byte range touches.
func blocks(offset: UInt64, length: UInt64) -> Range<UInt64> {
    guard length > 0 else { return offset / 4096..<offset / 4096 }
    return offset / 4096..<(offset + length + 4095) / 4096
}
