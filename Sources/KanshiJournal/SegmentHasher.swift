import Crypto
import Foundation
import KanshiSystem

/// Computes the running SHA-256 of the open segment on its own thread, by
/// reading back what the writer appended, so hashing every byte of data does
/// not sit on the path of each write.
///
/// Protocol (the writer holds its lock around every call): `advance(to:)`
/// with the segment's current end lets the thread catch up in the
/// background; `digest(at:)` with the current end waits until everything
/// before it is hashed and returns the digest; `reset` switches to a new
/// segment once the old one is fully hashed.
final class SegmentHasher: @unchecked Sendable {
    // SAFETY: `file`, `hashed`, `target`, `stopped`, `failure` are guarded by
    // `condition`. `sha` and `buffer` are touched by the thread only while it
    // holds a claimed range (hashed < target), and by `digest`/`reset` only
    // when hashed == target, when the thread is waiting; the writer's lock
    // keeps `target` from moving during those calls.
    private let condition = NSCondition()
    private var file: SystemFile
    private var hashed: UInt64
    private var target: UInt64
    private var sha: SHA256
    private var stopped = false
    private var failure: (any Error)?
    private var buffer = [UInt8](repeating: 0, count: 4 << 20)
    private var thread: Thread?

    init(file: SystemFile, offset: UInt64, state: SHA256) {
        self.file = file
        self.hashed = offset
        self.target = offset
        self.sha = state
        // The thread keeps the hasher alive until `stop()` ends its loop.
        let t = Thread { self.loop() }
        t.name = "kanshi.journal.hash"
        thread = t
        t.start()
    }

    /// Lets the thread hash up to `end` in the background.
    func advance(to end: UInt64) {
        condition.lock()
        if end > target {
            target = end
            condition.signal()
        }
        condition.unlock()
    }

    /// The SHA-256 of the segment's bytes before `end` (the current end).
    func digest(at end: UInt64) throws -> [UInt8] {
        condition.lock()
        defer { condition.unlock() }
        if end > target {
            target = end
            condition.signal()
        }
        while hashed < end && failure == nil && !stopped { condition.wait() }
        if let failure { throw failure }
        precondition(hashed == end, "segment hasher passed the requested end")
        return Array(sha.finalizeCopy())
    }

    /// Starts on a new segment whose first `offset` bytes hash to `state`,
    /// once work on the old one is done.
    func reset(file: SystemFile, offset: UInt64, state: SHA256) {
        condition.lock()
        while hashed < target && failure == nil && !stopped { condition.wait() }
        self.file = file
        hashed = offset
        target = offset
        sha = state
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while !stopped && hashed >= target { condition.wait() }
            if stopped {
                condition.unlock()
                return
            }
            let f = file, from = hashed, to = min(target, hashed + UInt64(buffer.count))
            condition.unlock()

            var error: (any Error)?
            let n = Int(to - from)
            do {
                let got = try buffer.withUnsafeMutableBytes { b in
                    try f.read(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<n]), at: from)
                }
                if got != n { throw SystemError(call: "pread", subject: f.path, errno: 5) }
                buffer.withUnsafeBytes { sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            } catch let e {
                error = e
            }

            condition.lock()
            if let error {
                failure = error
            } else {
                hashed = to
            }
            condition.broadcast()
            condition.unlock()
            if error != nil { return }
        }
    }
}
