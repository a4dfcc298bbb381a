import KanshiSystem

/// The LiME memory-image format (the Linux Memory Extractor's, read by
/// Volatility): for each RAM range a 32-byte header — magic "EMiL" (0x4C694D45
/// little-endian), version 1, first and last physical address (inclusive),
/// 8 reserved bytes — then the range's bytes.
public enum LiME {
    public static let magic: UInt32 = 0x4C69_4D45
    public static let version: UInt32 = 1
    public static let headerSize = 32

    /// What writing an image did.
    public struct Written: Sendable, Equatable {
        public var path: String
        /// Bytes of RAM in the image (headers not counted).
        public var ramBytes: UInt64
        public var ranges: Int
        public var seconds: Double
        public var bytesPerSecond: Double { seconds > 0 ? Double(ramBytes) / seconds : 0 }
    }

    /// The header of one range.
    static func header(_ range: Range<UInt64>) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: headerSize)
        func put<T: FixedWidthInteger>(_ v: T, _ at: Int) {
            withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { h[at + i] = b } }
        }
        put(magic, 0)
        put(version, 4)
        put(range.lowerBound, 8)
        put(range.upperBound - 1, 16)
        return h
    }

    /// Writes every RAM range of `memory` to a new file at `path` (never over an existing
    /// one). `progress` is told the RAM bytes written so far after each range.
    @discardableResult
    public static func write(_ memory: PhysicalMemory, to path: String,
                             progress: (UInt64) -> Void = { _ in }) throws(MemoryError) -> Written {
        let start = FileSystem.monotonicNs()
        if FileSystem.exists(path) { throw .exists(path: path) }
        let file: SystemFile
        do { file = try SystemFile(path: path, mode: [.readWrite, .create, .exclusive], permissions: 0o600) } catch {
            if error.errno == LibC.exists { throw .exists(path: path) }
            throw .write(path: path, reason: "\(error)")
        }
        var at: UInt64 = 0
        var ram: UInt64 = 0
        do {
            for range in memory.ranges where !range.isEmpty {
                let h = header(range)
                try h.withUnsafeBytes { b in try file.write(b, at: at) }
                at += UInt64(headerSize)
                try memory.copy(range, to: file, at: at)
                let n = range.upperBound - range.lowerBound
                at += n
                ram += n
                progress(ram)
            }
        } catch {
            try? FileSystem.remove(path)  // half an image is worse than none
            throw .write(path: path, reason: "\(error)")
        }
        return Written(path: path, ramBytes: ram, ranges: memory.ranges.count,
                       seconds: Double(FileSystem.monotonicNs() - start) / 1e9)
    }
}

/// A LiME image opened for reading: its ranges mapped from the file.
public final class LiMEImage: PhysicalMemory, @unchecked Sendable {
    // SAFETY: immutable after init.
    public let path: String
    public let ranges: [Range<UInt64>]
    /// File offset of each range's first byte.
    let offsets: [UInt64]
    let memory: MappedMemory

    public init(path: String) throws(MemoryError) {
        self.path = path
        do { memory = try MappedMemory(readOnlyPath: path) } catch { throw .cannotOpen(path: path, reason: "\(error)") }
        let all = UnsafeRawBufferPointer(memory.bytes)
        var ranges: [Range<UInt64>] = [], offsets: [UInt64] = []
        var at = 0
        while at < all.count {
            guard at + LiME.headerSize <= all.count else {
                throw .notLiME(path: path, offset: UInt64(at), detail: "\(all.count - at) bytes left, less than a range header (truncated?)")
            }
            let magic = UInt32(littleEndian: all.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            let version = UInt32(littleEndian: all.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self))
            let first = UInt64(littleEndian: all.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))
            let last = UInt64(littleEndian: all.loadUnaligned(fromByteOffset: at + 16, as: UInt64.self))
            guard magic == LiME.magic else {
                throw .notLiME(path: path, offset: UInt64(at), detail: "magic 0x\(String(magic, radix: 16)), expected 0x\(String(LiME.magic, radix: 16))")
            }
            guard version == LiME.version else { throw .notLiME(path: path, offset: UInt64(at + 4), detail: "version \(version), expected 1") }
            guard last >= first, last < UInt64.max else {
                throw .notLiME(path: path, offset: UInt64(at + 8), detail: "range 0x\(String(first, radix: 16))-0x\(String(last, radix: 16)) ends before it starts")
            }
            let length = last - first + 1
            let body = at + LiME.headerSize
            guard length <= UInt64(all.count - body) else {
                throw .notLiME(path: path, offset: UInt64(at), detail: "range 0x\(String(first, radix: 16))-0x\(String(last, radix: 16)) needs \(length) bytes, the file has \(all.count - body) (truncated?)")
            }
            if let previous = ranges.last, first < previous.upperBound {
                throw .notLiME(path: path, offset: UInt64(at + 8), detail: "range at 0x\(String(first, radix: 16)) overlaps or precedes the one before it")
            }
            ranges.append(first..<last + 1)
            offsets.append(UInt64(body))
            at = body + Int(length)
        }
        guard !ranges.isEmpty else { throw .notLiME(path: path, offset: 0, detail: "no ranges") }
        self.ranges = ranges
        self.offsets = offsets
    }

    public func bytes(at address: UInt64, count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0 else { return nil }
        for (i, r) in ranges.enumerated() where r.lowerBound <= address && address < r.upperBound {
            let (end, overflow) = address.addingReportingOverflow(UInt64(count))
            guard !overflow, end <= r.upperBound else { return nil }
            let from = Int(offsets[i] + (address - r.lowerBound))
            return UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(memory.bytes)[from..<from + count])
        }
        return nil
    }

    public func copy(_ range: Range<UInt64>, to file: SystemFile, at offset: UInt64) throws(SystemError) {
        try writeRange(range, to: file, at: offset)
    }
}
