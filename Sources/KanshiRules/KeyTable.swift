import Glibc

/// A key (the values of a sequence's or a count's `by` fields in one event) as bytes: each
/// part a tag, then for text its length and UTF-8, for a number its bits. Two keys are equal
/// when their bytes are, as their parts were (`KeyPart`): text by its bytes, numbers by value
/// (-0 and 0 alike), and a NaN equal to nothing.
struct KeyBuffer {
    private(set) var base: UnsafeMutableRawPointer
    private(set) var capacity: Int
    private(set) var count = 0
    /// Holds a NaN: equal to no key, as a NaN is to no number (a table never finds it).
    private(set) var unmatchable = false
    /// Of the bytes, never 0 (a table's empty slot); made by `finish`.
    private(set) var hash: UInt64 = 0

    static let initialCapacity = 256
    private static let tagNone: UInt8 = 0, tagText: UInt8 = 1, tagNumber: UInt8 = 2

    init() {
        capacity = Self.initialCapacity
        base = .allocate(byteCount: capacity, alignment: 8)
    }

    /// Frees the bytes (the owner calls it once, when done with the key).
    func free() { base.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    mutating func removeAll() { count = 0; unmatchable = false; hash = 0 }

    private mutating func reserve(_ n: Int) {
        guard count + n > capacity else { return }
        var c = capacity * 2
        while c < count + n { c *= 2 }
        let b = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 8)
        b.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = b
        capacity = c
    }

    mutating func appendNone() {
        reserve(1)
        base.storeBytes(of: Self.tagNone, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    mutating func append(text: UnsafeRawBufferPointer) {
        let length = MemoryLayout<Int>.size
        reserve(1 + length + text.count)
        base.storeBytes(of: Self.tagText, toByteOffset: count, as: UInt8.self)
        (base + count + 1).storeBytes(of: text.count, as: Int.self)
        if let t = text.baseAddress { (base + count + 1 + length).copyMemory(from: t, byteCount: text.count) }
        count += 1 + length + text.count
    }

    mutating func append(number: Double) {
        if number.isNaN { unmatchable = true }
        let length = MemoryLayout<UInt64>.size
        reserve(1 + length)
        base.storeBytes(of: Self.tagNumber, toByteOffset: count, as: UInt8.self)
        (base + count + 1).storeBytes(of: (number == 0 ? 0 : number).bitPattern, as: UInt64.self)
        count += 1 + length
    }

    mutating func append(text: String) {
        var text = text
        text.withUTF8 { append(text: UnsafeRawBufferPointer($0)) }
    }

    /// Hashes the bytes: the key is complete.
    mutating func finish() {
        let h = KeyPart.hash(bytes)
        hash = h == 0 ? 1 : h
    }

    /// Completes the key with a given hash (tests: keys whose hashes collide).
    mutating func finish(hash h: UInt64) { hash = h == 0 ? 1 : h }
}

/// One field of a key, as it adds itself to a `KeyBuffer`.
struct KeyField {
    let getter: Getter
    /// The text's bytes, from the event's byte slots (the engine's reused event only: another
    /// event would allocate slots for one look), where the field has them (`hasBytes`).
    /// (Not optional: called in place, with no copy of the closure per key.)
    let bytes: ByteGetter
    let hasBytes: Bool

    init(_ name: String, _ getter: Getter) {
        self.getter = getter
        let b = Fields.byteGetter(name)
        bytes = b ?? { _, _ in nil }
        hasBytes = b != nil
    }

    func append(_ e: RuleEvent, _ w: RuleWorld, to k: inout KeyBuffer) {
        if hasBytes, e.isReused {
            if let b = bytes(e, w) { k.append(text: b) } else { k.appendNone() }
            return
        }
        switch getter {
        case .text(let f): if let s = f(e, w) { k.append(text: s) } else { k.appendNone() }
        case .number(let f): if let v = f(e, w) { k.append(number: v) } else { k.appendNone() }
        case .flag(let f): if let v = f(e, w) { k.append(number: v ? 1 : 0) } else { k.appendNone() }
        case .texts(let f): if let v = f(e, w) { k.append(text: v.joined(separator: " ")) } else { k.appendNone() }
        }
    }
}

/// A key's bytes owned by a table entry (allocated once when the entry is made).
struct OwnedKey {
    var bytes: UnsafeMutableRawPointer?
    var count: Int
    var hash: UInt64
    var unmatchable: Bool

    init(copying k: KeyBuffer) {
        count = k.count; hash = k.hash; unmatchable = k.unmatchable
        bytes = k.count == 0 ? nil : .allocate(byteCount: k.count, alignment: 1)
        if let bytes { bytes.copyMemory(from: k.base, byteCount: k.count) }
    }

    func free() { bytes?.deallocate() }

    func equals(_ k: KeyBuffer) -> Bool {
        guard hash == k.hash, count == k.count else { return false }
        guard count > 0, let bytes else { return true }
        return memcmp(bytes, k.base, count) == 0
    }
}

/// A hash table from keys to values for the engine's open sequences and counts: open
/// addressing with linear probing over the keys' 64-bit hashes (no `Hasher`, no String
/// compared), entries kept dense (a removal moves the last into its place), so walking them
/// all (expiry, eviction) touches only live ones. The key's bytes are compared on a hash match.
/// Single-threaded, as the engine is.
final class KeyTable<Value> {
    /// Live entries, at `0..<count` of the dense arrays.
    private(set) var count = 0
    /// Slots: 0 empty, else the hash's low 32 bits << 32 | (entry index + 1).
    private var slots: UnsafeMutablePointer<UInt64>
    private var slotMask: Int
    private var keys: UnsafeMutablePointer<OwnedKey>
    /// The values, by entry index (valid at `0..<count`).
    private(set) var values: UnsafeMutablePointer<Value>
    private var denseCapacity: Int

    static var minimumCapacity: Int { 8 }
    /// Slots per entry at most: the table grows past half full (probes stay short).
    private static var slotsPerEntry: Int { 2 }
    /// After a sweep, a table this many times larger than its entries shrinks (memory goes back).
    private static var shrinkRatio: Int { 8 }

    init() {
        denseCapacity = Self.minimumCapacity
        slotMask = denseCapacity * Self.slotsPerEntry - 1
        slots = .allocate(capacity: slotMask + 1)
        slots.initialize(repeating: 0, count: slotMask + 1)
        keys = .allocate(capacity: denseCapacity)
        values = .allocate(capacity: denseCapacity)
    }

    deinit {
        for i in 0..<count { keys[i].free() }
        values.deinitialize(count: count)
        keys.deinitialize(count: count)
        slots.deallocate(); keys.deallocate(); values.deallocate()
    }

    var isEmpty: Bool { count == 0 }
    var capacity: Int { denseCapacity }

    @inline(__always)
    private static func tag(_ hash: UInt64) -> UInt64 { hash << 32 }

    @inline(__always)
    private func home(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash & 0xffff_ffff) & slotMask }

    /// The entry with this key, if any.
    func find(_ k: KeyBuffer) -> Int? {
        guard count > 0, !k.unmatchable else { return nil }
        let t = Self.tag(k.hash)
        var s = home(k.hash)
        while true {
            let v = slots[s]
            if v == 0 { return nil }
            if v & 0xffff_ffff_0000_0000 == t {
                let i = Int(truncatingIfNeeded: v & 0xffff_ffff) - 1
                if keys[i].equals(k) { return i }
            }
            s = (s + 1) & slotMask
        }
    }

    /// Adds an entry (the key must not be in the table, or be unmatchable); returns its index.
    @discardableResult
    func insert(_ k: KeyBuffer, _ value: consuming Value) -> Int {
        insert(owned: OwnedKey(copying: k), value)
    }

    /// Adds an entry whose key's bytes the table takes over.
    @discardableResult
    func insert(owned key: OwnedKey, _ value: consuming Value) -> Int {
        if count == denseCapacity { resize(denseCapacity * 2) }
        let i = count
        (keys + i).initialize(to: key)
        (values + i).initialize(to: value)
        count += 1
        place(i)
        return i
    }

    private func place(_ i: Int) {
        let h = keys[i].hash
        var s = home(h)
        while slots[s] != 0 { s = (s + 1) & slotMask }
        slots[s] = Self.tag(h) | UInt64(i + 1)
    }

    /// The slot holding entry `i`.
    private func slot(of i: Int) -> Int {
        let want = UInt64(i + 1)
        var s = home(keys[i].hash)
        while slots[s] & 0xffff_ffff != want { s = (s + 1) & slotMask }
        return s
    }

    /// Removes entry `i`, handing back its key (the caller frees it or gives it to another
    /// table) and its value. The last entry takes index `i`.
    func take(_ i: Int) -> (key: OwnedKey, value: Value) {
        var s = slot(of: i)
        // Backward shift: later entries of the probe run move up into the hole, so every
        // entry stays reachable from its home slot without tombstones.
        var next = (s + 1) & slotMask
        while slots[next] != 0 {
            let j = Int(truncatingIfNeeded: slots[next] & 0xffff_ffff) - 1
            let h = home(keys[j].hash)
            // Entry j may move to s when s lies within j's probe run (from h to next, cyclically).
            if (next - h) & slotMask >= (next - s) & slotMask {
                slots[s] = slots[next]
                s = next
            }
            next = (next + 1) & slotMask
        }
        slots[s] = 0
        let key = (keys + i).move()
        let value = (values + i).move()
        let last = count - 1
        if i != last {
            let ls = slot(of: last)
            (keys + i).moveInitialize(from: keys + last, count: 1)
            (values + i).moveInitialize(from: values + last, count: 1)
            slots[ls] = (slots[ls] & 0xffff_ffff_0000_0000) | UInt64(i + 1)
        }
        count -= 1
        return (key, value)
    }

    /// Removes entry `i` and frees its key.
    func remove(_ i: Int) {
        let (k, _) = take(i)
        k.free()
    }

    /// Removes every entry `drop` says to (by index, before any is removed); returns how many.
    /// A table much larger than what is left shrinks.
    @discardableResult
    func removeAll(where drop: (Int) -> Bool) -> Int {
        var kept = 0
        let before = count
        guard (0..<count).contains(where: drop) else { return 0 }
        for i in 0..<count {
            if drop(i) {
                keys[i].free()
                (keys + i).deinitialize(count: 1)
                (values + i).deinitialize(count: 1)
            } else {
                if kept != i {
                    (keys + kept).moveInitialize(from: keys + i, count: 1)
                    (values + kept).moveInitialize(from: values + i, count: 1)
                }
                kept += 1
            }
        }
        count = kept
        var size = denseCapacity
        while size > Self.minimumCapacity, count * Self.shrinkRatio < size { size /= 2 }
        resize(size)
        return before - count
    }

    /// Dense capacity `n` (at least `count`); slots made again.
    private func resize(_ n: Int) {
        if n != denseCapacity {
            let k = UnsafeMutablePointer<OwnedKey>.allocate(capacity: n)
            let v = UnsafeMutablePointer<Value>.allocate(capacity: n)
            k.moveInitialize(from: keys, count: count)
            v.moveInitialize(from: values, count: count)
            keys.deallocate(); values.deallocate()
            keys = k; values = v
            denseCapacity = n
            slots.deallocate()
            slotMask = n * Self.slotsPerEntry - 1
            slots = .allocate(capacity: slotMask + 1)
        }
        slots.initialize(repeating: 0, count: slotMask + 1)
        for i in 0..<count { place(i) }
    }
}
