/// Little-endian field access into on-disk structures, bounds-checked by the
/// caller (every structure is read whole before it is decoded).
struct LE {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    @inline(__always) func u8(_ o: Int) -> UInt8 { o < bytes.count ? bytes[o] : 0 }
    @inline(__always) func u16(_ o: Int) -> UInt16 {
        guard o + 2 <= bytes.count else { return 0 }
        return UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8
    }
    @inline(__always) func u32(_ o: Int) -> UInt32 {
        guard o + 4 <= bytes.count else { return 0 }
        return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
    }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
    func slice(_ o: Int, _ n: Int) -> [UInt8] {
        guard o < bytes.count else { return [] }
        return Array(bytes[o..<min(bytes.count, o + n)])
    }
}
