import KanshiSystem

/// A guest's physical memory as Kanshi reads it from outside: the RAM ranges
/// it has and their bytes, from the running guest's shared RAM (`GuestRAM`)
/// or from an acquisition (`LiMEImage`).
public protocol PhysicalMemory: AnyObject, Sendable {
    /// Guest-physical RAM ranges, ascending and disjoint.
    var ranges: [Range<UInt64>] { get }
    /// The `count` bytes at guest-physical `address`, or nil when any of them is not RAM.
    /// The view is valid while the memory object lives; a running guest may change it.
    func bytes(at address: UInt64, count: Int) -> UnsafeRawBufferPointer?
    /// Copies the RAM range `range` into `file` at `offset` (the fastest way this source has).
    func copy(_ range: Range<UInt64>, to file: SystemFile, at offset: UInt64) throws(SystemError)
}

extension PhysicalMemory {
    /// Bytes of RAM in all ranges.
    public var totalBytes: UInt64 { ranges.reduce(0) { $0 + ($1.upperBound - $1.lowerBound) } }

    /// The little-endian 64-bit word at `address`, or nil outside RAM.
    public func u64(at address: UInt64) -> UInt64? {
        guard let b = bytes(at: address, count: 8) else { return nil }
        return UInt64(littleEndian: b.loadUnaligned(as: UInt64.self))
    }

    /// A copy of the `count` bytes at `address`, or nil outside RAM.
    public func read(_ address: UInt64, count: Int) -> [UInt8]? {
        bytes(at: address, count: count).map { Array($0) }
    }

    /// Every guest-physical address where `needle` starts, in ascending order (up to `limit`).
    public func find(_ needle: [UInt8], limit: Int = 64) -> [UInt64] {
        guard !needle.isEmpty else { return [] }
        var hits: [UInt64] = []
        for range in ranges {
            guard let all = bytes(at: range.lowerBound, count: Int(range.upperBound - range.lowerBound)) else { continue }
            needle.withUnsafeBytes { n in
                var from = 0
                while hits.count < limit, from + n.count <= all.count,
                      let at = LibC.find(n, in: all, from: from) {
                    hits.append(range.lowerBound + UInt64(at))
                    from = at + 1
                }
            }
        }
        return hits
    }

    /// The default copy: write the range's bytes.
    public func writeRange(_ range: Range<UInt64>, to file: SystemFile, at offset: UInt64) throws(SystemError) {
        let chunk: UInt64 = 8 << 20
        var at = range.lowerBound
        while at < range.upperBound {
            let n = Int(min(chunk, range.upperBound - at))
            guard let b = bytes(at: at, count: n) else {
                throw SystemError(call: "read guest memory", subject: "0x\(String(at, radix: 16))", errno: LibC.badAddress)
            }
            try file.write(b, at: offset + (at - range.lowerBound))
            at += UInt64(n)
        }
    }
}
