import Foundation

/// A value guarded by a lock. Unlike `Mutex`, its critical sections may
/// touch non-Sendable values of the caller (buffers being appended), which
/// never escape the call.
public final class Locked<Value>: @unchecked Sendable {
    // SAFETY: `value` is only touched inside `withLock`, under `lock`.
    private var value: Value
    private let lock = NSLock()

    public init(_ value: Value) { self.value = value }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
