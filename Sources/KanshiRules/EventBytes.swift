import Glibc

/// The conditions' fast path: text fields as bytes, with no string made or retained per test.
/// Each text field has a slot in the event; the first test of the field in an event copies its
/// UTF-8 into the slot's buffer (kept and reused from event to event), later tests read it.
/// Path parts (name, dir, ext, noext) are slices of their path's bytes.
typealias ByteGetter = (RuleEvent, RuleWorld) -> UnsafeRawBufferPointer?

/// One text field's bytes in one event.
struct ByteSlot {
    var buffer: UnsafeMutableRawPointer?
    var capacity = 0
    /// Bytes held; -1: the field is absent.
    var count = -1
    /// The event's `epoch` the bytes belong to (another: not filled yet for this event).
    var epoch: UInt64 = 0
}

/// The slots of one event (allocated on the first test of a text field, freed with the event).
enum ByteSlots {
    static func allocate() -> UnsafeMutablePointer<ByteSlot> {
        let p = UnsafeMutablePointer<ByteSlot>.allocate(capacity: Fields.slotCount)
        p.initialize(repeating: ByteSlot(), count: Fields.slotCount)
        return p
    }

    static func free(_ p: UnsafeMutablePointer<ByteSlot>) {
        for i in 0..<Fields.slotCount { p[i].buffer?.deallocate() }
        p.deinitialize(count: Fields.slotCount)
        p.deallocate()
    }

    /// Makes slot `s` hold `text`'s bytes for `epoch`.
    static func fill(_ s: UnsafeMutablePointer<ByteSlot>, _ text: String?, epoch: UInt64) {
        s.pointee.epoch = epoch
        guard var text else { s.pointee.count = -1; return }
        text.withUTF8 { u in
            if u.count > s.pointee.capacity {
                s.pointee.buffer?.deallocate()
                let capacity = max(64, u.count.nextPowerOfTwo)
                s.pointee.buffer = .allocate(byteCount: capacity, alignment: 8)
                s.pointee.capacity = capacity
            }
            if let from = u.baseAddress, let to = s.pointee.buffer { to.copyMemory(from: from, byteCount: u.count) }
            s.pointee.count = u.count
        }
    }
}

extension Int {
    fileprivate var nextPowerOfTwo: Int { self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount) }
}

/// Text constants of a condition, as bytes that live as long as the compiled rule.
final class ByteConstant: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer

    init(_ text: String) {
        let u = Array(text.utf8)
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(u.count, 1), alignment: 8)
        u.withUnsafeBytes { p.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: p[0..<u.count])
    }

    deinit { UnsafeMutableRawPointer(mutating: bytes.baseAddress)?.deallocate() }
}

/// A set of texts tested on bytes: by length (an array's index, no hashing), then bytes.
final class ByteSet: @unchecked Sendable {
    private let byLength: [[ByteConstant]]

    init(_ texts: some Sequence<String>) {
        let unique = Set(texts)
        var m = [[ByteConstant]](repeating: [], count: (unique.map(\.utf8.count).max() ?? -1) + 1)
        for t in unique { m[t.utf8.count].append(ByteConstant(t)) }
        byLength = m
    }

    func contains(_ b: UnsafeRawBufferPointer) -> Bool {
        guard b.count < byLength.count else { return false }
        for c in byLength[b.count] where Bytes.equal(b, c.bytes) { return true }
        return false
    }
}

/// Byte tests (the fast path's `=`, startswith, endswith, contains, glob).
enum Bytes {
    @inline(__always)
    static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        guard a.count > 0 else { return true }
        return same(a.baseAddress!, b.baseAddress!, a.count)
    }

    @inline(__always)
    static func hasPrefix(_ a: UnsafeRawBufferPointer, _ p: UnsafeRawBufferPointer) -> Bool {
        guard a.count >= p.count else { return false }
        guard p.count > 0 else { return true }
        return same(a.baseAddress!, p.baseAddress!, p.count)
    }

    @inline(__always)
    static func hasSuffix(_ a: UnsafeRawBufferPointer, _ s: UnsafeRawBufferPointer) -> Bool {
        guard a.count >= s.count else { return false }
        guard s.count > 0 else { return true }
        return same(a.baseAddress! + (a.count - s.count), s.baseAddress!, s.count)
    }

    static func contains(_ a: UnsafeRawBufferPointer, _ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count > 0 else { return true }
        guard a.count >= p.count, let ab = a.baseAddress, let pb = p.baseAddress else { return false }
        // One byte of the needle is looked for with the C library's memchr (vectorised), the
        // rest compared where it is found: a byte other than the slash, paths' commonest.
        var j = 0
        while j < p.count - 1, pb.load(fromByteOffset: j, as: UInt8.self) == slash { j += 1 }
        let byte = Int32(pb.load(fromByteOffset: j, as: UInt8.self))
        let lastStart = a.count - p.count
        var start = 0
        while start <= lastStart {
            guard let hit = memchr(ab + start + j, byte, lastStart - start + 1) else { return false }
            let at = UnsafeRawPointer(hit) - ab - j
            if same(ab + at, pb, p.count) { return true }
            start = at + 1
        }
        return false
    }

    @inline(__always)
    private static func same(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
        var i = 0
        while i + 8 <= n {
            if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
            i += 1
        }
        return true
    }

    // MARK: path parts, as slices of the path

    static let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")

    private static func lastSlash(_ p: UnsafeRawBufferPointer) -> Int? {
        var i = p.count - 1
        while i >= 0 { if p[i] == slash { return i }; i -= 1 }
        return nil
    }

    static func baseName(_ p: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let s = lastSlash(p) else { return p }
        return UnsafeRawBufferPointer(rebasing: p[(s + 1)...])
    }

    static func directory(_ p: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let s = lastSlash(p) else { return UnsafeRawBufferPointer(rebasing: p[0..<0]) }
        return UnsafeRawBufferPointer(rebasing: p[0..<(s == 0 ? 1 : s)])
    }

    /// Where the last component's extension starts (after its dot); a leading dot names the file.
    private static func extensionStart(_ p: UnsafeRawBufferPointer) -> Int? {
        var i = p.count - 1
        while i >= 0 {
            let b = p[i]
            if b == slash { return nil }
            if b == dot { return i == 0 || p[i - 1] == slash ? nil : i + 1 }
            i -= 1
        }
        return nil
    }

    static func fileExtension(_ p: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let s = extensionStart(p) else { return UnsafeRawBufferPointer(rebasing: p[p.count...]) }
        return UnsafeRawBufferPointer(rebasing: p[s...])
    }

    static func withoutExtension(_ p: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        guard let s = extensionStart(p) else { return p }
        return UnsafeRawBufferPointer(rebasing: p[0..<(s - 1)])
    }
}

extension RuleEvent {
    /// Text field `slot`'s bytes in this event (read from `text` the first time), valid until the
    /// engine moves to the next event; nil when the field is absent.
    @inline(__always)
    func bytes(_ slot: Int, _ w: RuleWorld, _ text: (RuleEvent, RuleWorld) -> String?) -> UnsafeRawBufferPointer? {
        let s = slotStorage + slot
        if s.pointee.epoch != epoch { ByteSlots.fill(s, text(self, w), epoch: epoch) }
        let n = s.pointee.count
        return n < 0 ? nil : UnsafeRawBufferPointer(start: s.pointee.buffer, count: n)
    }
}
