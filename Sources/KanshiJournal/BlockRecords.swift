import KanshiCore

/// Payload layout of block records.
///
/// Every block record starts with
/// ```
///  0 8 LBA (512-byte sectors)
///  8 4 length in bytes
/// 12 4 connection id
/// 16 4 flags (bit 0: FUA)
/// ```
/// A write then has a 4-byte count N, N little-endian Float32 entropies (one
/// per 4 KiB piece of the data) and the data itself.
public enum BlockRecords {
    public static let prefixLength = 20
    public static let flagFUA: UInt32 = 1

    public static func kind(of op: BlockEvent.Operation) -> RecordKind {
        switch op {
        case .read: .blockRead
        case .write: .blockWrite
        case .trim: .blockTrim
        case .writeZeroes: .blockWriteZeroes
        case .flush: .blockFlush
        }
    }

    static func operation(of kind: RecordKind) -> BlockEvent.Operation? {
        switch kind {
        case .blockRead: .read
        case .blockWrite: .write
        case .blockTrim: .trim
        case .blockWriteZeroes: .writeZeroes
        case .blockFlush: .flush
        default: nil
        }
    }

    /// Bytes of a write record's metadata for `dataLength` bytes of data.
    public static func writeMetadataLength(dataLength: Int) -> Int { prefixLength + 4 + 4 * ((dataLength + 4095) / 4096) }

    /// Appends the metadata of a write record to `out` (as `encodeMetadata`
    /// does), computing the entropies of `data` on the way.
    public static func appendWriteMetadata(to out: inout [UInt8], lba: UInt64, data: UnsafeRawBufferPointer,
                                           connection: UInt32, fua: Bool) {
        appendPrefix(to: &out, lba: lba, length: UInt32(data.count), connection: connection, fua: fua)
        put(UInt32((data.count + 4095) / 4096), to: &out)
        var at = 0
        while at < data.count {
            let end = min(at + 4096, data.count)
            put(Float(Entropy.normalized(UnsafeRawBufferPointer(rebasing: data[at..<end]))).bitPattern, to: &out)
            at = end
        }
    }

    /// Encodes the metadata part of a block record (for a write, everything
    /// before the data).
    public static func encodeMetadata(_ e: BlockEvent) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(prefixLength + 4 + 4 * e.entropies.count)
        appendPrefix(to: &out, lba: e.lba, length: e.length, connection: e.connection, fua: e.fua)
        if e.operation == .write {
            put(UInt32(e.entropies.count), to: &out)
            for x in e.entropies { put(x.bitPattern, to: &out) }
        }
        return out
    }

    private static func appendPrefix(to out: inout [UInt8], lba: UInt64, length: UInt32, connection: UInt32, fua: Bool) {
        put(lba, to: &out)
        put(length, to: &out)
        put(connection, to: &out)
        put(fua ? flagFUA : 0, to: &out)
    }

    private static func put<T: FixedWidthInteger>(_ v: T, to out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    /// Decodes a block record: the event and, for writes, the data.
    /// Returns nil for records that are not block records.
    public static func decode(_ r: JournalRecord) throws -> (event: BlockEvent, data: UnsafeRawBufferPointer)? {
        guard let op = operation(of: r.kind) else { return nil }
        let location = JournalLocation(segmentPath: JournalFormat.segmentName(r.segment), offset: r.offset, sequence: r.sequence)
        var b = ByteReader(r.payload)
        guard b.remaining >= prefixLength else {
            throw JournalError.corrupt(location: location, reason: "\(r.kind) record payload is \(b.remaining) bytes, shorter than its \(prefixLength)-byte prefix")
        }
        var e = BlockEvent(operation: op, timeNs: r.timeNs, lba: b.u64(), length: b.u32(), connection: b.u32())
        e.fua = b.u32() & flagFUA != 0
        var data = UnsafeRawBufferPointer(rebasing: r.payload[r.payload.count...])
        if op == .write {
            guard b.remaining >= 4 else { throw JournalError.corrupt(location: location, reason: "write record has no entropy count") }
            let n = Int(b.u32())
            guard b.remaining >= 4 * n else { throw JournalError.corrupt(location: location, reason: "write record's \(n) entropies run past its end") }
            e.entropies = (0..<n).map { _ in b.f32() }
            data = b.rest()
            guard data.count == Int(e.length) else {
                throw JournalError.corrupt(location: location, reason: "write record says \(e.length) bytes but carries \(data.count)")
            }
        }
        return (e, data)
    }

    /// Flag of a base record whose region was all zeros (no data follows).
    public static let baseFlagZero: UInt8 = 1

    /// Encodes the payload prefix of a base record (the data, unless the
    /// region is all zeros, follows it).
    public static func encodeBasePrefix(lba: UInt64, length: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(prefixLength)
        appendPrefix(to: &out, lba: lba, length: length, connection: 0, fua: false)
        return out
    }

    /// Decodes a base record: the region and its earlier content (nil data:
    /// all zeros). Returns nil for records that are not base records.
    public static func decodeBase(_ r: JournalRecord) throws -> (lba: UInt64, length: UInt32, data: UnsafeRawBufferPointer?)? {
        guard r.kind == .blockBase else { return nil }
        let location = JournalLocation(segmentPath: JournalFormat.segmentName(r.segment), offset: r.offset, sequence: r.sequence)
        var b = ByteReader(r.payload)
        guard b.remaining >= prefixLength else {
            throw JournalError.corrupt(location: location, reason: "base record payload is \(b.remaining) bytes, shorter than its \(prefixLength)-byte prefix")
        }
        let lba = b.u64()
        let length = b.u32()
        b.skip(8)
        if r.flags & baseFlagZero != 0 { return (lba, length, nil) }
        let data = b.rest()
        guard data.count == Int(length) else {
            throw JournalError.corrupt(location: location, reason: "base record says \(length) bytes but carries \(data.count)")
        }
        return (lba, length, data)
    }
}
