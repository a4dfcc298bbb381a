/// Bounds-checked little-endian reads from a kernel image's bytes. Every
/// reader returns nil past the end, so damaged input cannot trap.
extension Array where Element == UInt8 {
    @inline(__always)
    func u8(_ offset: Int) -> UInt8? {
        offset >= 0 && offset < count ? self[offset] : nil
    }

    @inline(__always)
    func u16(_ offset: Int) -> UInt16? { le(offset, UInt16.self) }
    @inline(__always)
    func u32(_ offset: Int) -> UInt32? { le(offset, UInt32.self) }
    @inline(__always)
    func u64(_ offset: Int) -> UInt64? { le(offset, UInt64.self) }

    @inline(__always)
    func le<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T? {
        guard offset >= 0, offset <= count - MemoryLayout<T>.size else { return nil }
        // SAFETY: offset..<offset+size was checked to lie inside the array.
        return withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    /// The NUL-terminated string at `offset` (at most `limit` bytes), or nil
    /// when there is no NUL within the array and the limit.
    func cString(_ offset: Int, limit: Int = 4096) -> String? {
        guard offset >= 0, offset < count else { return nil }
        let end = Swift.min(count, offset + limit)
        guard let nul = self[offset..<end].firstIndex(of: 0) else { return nil }
        return String(decoding: self[offset..<nul], as: UTF8.self)
    }

    /// Up to `n` bytes from `offset` (for error messages).
    func prefix(from offset: Int, _ n: Int) -> [UInt8] {
        guard offset >= 0, offset < count else { return [] }
        return Array(self[offset..<Swift.min(count, offset + n)])
    }
}

@inline(__always)
func alignUp(_ value: Int, _ alignment: Int) -> Int {
    (value + alignment - 1) & ~(alignment - 1)
}
