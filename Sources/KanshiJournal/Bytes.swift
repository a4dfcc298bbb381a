import KanshiCore

typealias CRC32CBridge = CRC32C

/// Little-endian encoder into a growing byte array.
struct ByteWriter {
    var bytes: [UInt8]

    init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    mutating func append(_ v: UInt8) { bytes.append(v) }
    mutating func append(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func append(_ v: Float) { append(v.bitPattern) }
    mutating func append(_ v: [UInt8]) { bytes.append(contentsOf: v) }
}

/// Little-endian decoder over a byte buffer; callers check `remaining` first.
struct ByteReader {
    let base: UnsafeRawBufferPointer
    var offset = 0

    init(_ base: UnsafeRawBufferPointer) { self.base = base }

    var remaining: Int { base.count - offset }

    mutating func skip(_ n: Int) { offset += n }
    mutating func u8() -> UInt8 { defer { offset += 1 }; return base[offset] }
    mutating func u16() -> UInt16 { defer { offset += 2 }; return base.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian }
    mutating func u32() -> UInt32 { defer { offset += 4 }; return base.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian }
    mutating func u64() -> UInt64 { defer { offset += 8 }; return base.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian }
    mutating func f32() -> Float { Float(bitPattern: u32()) }
    mutating func bytes(_ n: Int) -> [UInt8] { defer { offset += n }; return Array(base[offset..<offset + n]) }
    mutating func rest() -> UnsafeRawBufferPointer {
        defer { offset = base.count }
        return UnsafeRawBufferPointer(rebasing: base[offset...])
    }
}

extension Array where Element == UInt8 {
    /// Lower-case hexadecimal.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
