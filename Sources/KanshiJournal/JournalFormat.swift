/// On-disk layout of a Kanshi journal.
///
/// A journal is a directory of segment files `segment-<index>.kjs` (index
/// in 16 decimal digits). Each segment starts with a 96-byte header and holds
/// records back to back; all integers are little-endian.
///
/// Segment header:
/// ```
///  0  8  magic "KANSHIJ1"
///  8  4  format version (1)
/// 12  4  header length (96)
/// 16  8  segment index (1, 2, ...)
/// 24  8  sequence number of the segment's first record
/// 32  8  creation time, ns since the epoch
/// 40 32  SHA-256 of the previous segment (zeros for the first)
/// 72 20  reserved (zero)
/// 92  4  CRC-32C of bytes 0..<92
/// ```
///
/// Record:
/// ```
///  0  4  CRC-32C of bytes 4..<total length
///  4  4  total length (header + payload)
///  8  1  kind (`RecordKind`)
///  9  1  flags (kind-specific)
/// 10  6  reserved (zero)
/// 16  8  sequence number (1, 2, ... over the whole journal, no gaps)
/// 24  8  time, ns since the epoch
/// 32  …  payload
/// ```
///
/// Chaining: a segment's hash is the SHA-256 of all its bytes before its
/// closing `seal` record; the seal carries it and the next segment's header
/// repeats it, so changing, removing or reordering any byte, record or
/// segment breaks the chain. `checkpoint` records, written whenever the
/// journal is synced, carry the hash of the segment so far, so the open
/// segment is covered up to its last checkpoint as well.
public enum JournalFormat {
    public static let segmentMagic: [UInt8] = Array("KANSHIJ1".utf8)
    public static let version: UInt32 = 1
    public static let segmentHeaderLength = 96
    public static let recordHeaderLength = 32
    /// The largest record a reader accepts (a 32 MiB write plus its metadata).
    public static let maxRecordLength = 33 * 1024 * 1024
    public static let segmentPrefix = "segment-"
    public static let segmentSuffix = ".kjs"

    public static func segmentName(_ index: UInt64) -> String {
        let digits = String(index)
        return segmentPrefix + String(repeating: "0", count: max(0, 16 - digits.count)) + digits + segmentSuffix
    }

    /// The index encoded in a segment file name, or nil if it is not one.
    public static func segmentIndex(fromName name: String) -> UInt64? {
        guard name.hasPrefix(segmentPrefix), name.hasSuffix(segmentSuffix) else { return nil }
        let digits = name.dropFirst(segmentPrefix.count).dropLast(segmentSuffix.count)
        guard digits.count == 16, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }
}

/// What a record holds.
public enum RecordKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Closes a segment; payload: 32-byte SHA-256 of the segment before it.
    case seal = 1
    /// Payload: 32-byte SHA-256 of the segment before this record.
    case checkpoint = 2
    /// A UTF-8 JSON object describing a session event (server start, client
    /// connect/disconnect, recovery of a torn tail).
    case note = 3
    case blockRead = 16
    case blockWrite = 17
    case blockTrim = 18
    case blockWriteZeroes = 19
    case blockFlush = 20
    /// The content of a region as it was before the journal's first change
    /// to it (copy on first write), so any past state can be rebuilt.
    /// Flags bit 0: the region was all zeros and no data follows.
    case blockBase = 21
    /// A page of a guest process's memory, stored when it appeared or changed (the memory
    /// sensor's time series; `MemoryRecords`). Flags bit 0: the page is gone (no data follows).
    case memoryPage = 32

    public var description: String {
        switch self {
        case .seal: "seal"
        case .checkpoint: "checkpoint"
        case .note: "note"
        case .blockRead: "read"
        case .blockWrite: "write"
        case .blockTrim: "trim"
        case .blockWriteZeroes: "write-zeroes"
        case .blockFlush: "flush"
        case .blockBase: "base"
        case .memoryPage: "memory-page"
        }
    }
}

/// The fixed segment header.
struct SegmentHeader: Equatable {
    var index: UInt64
    var firstSequence: UInt64
    var createdNs: UInt64
    var previousHash: [UInt8]

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: JournalFormat.segmentHeaderLength)
        w.append(JournalFormat.segmentMagic)
        w.append(JournalFormat.version)
        w.append(UInt32(JournalFormat.segmentHeaderLength))
        w.append(index)
        w.append(firstSequence)
        w.append(createdNs)
        w.append(previousHash)
        w.append([UInt8](repeating: 0, count: 20))
        let crc = w.bytes.withUnsafeBytes { CRC32CBridge.checksum($0) }
        w.append(crc)
        return w.bytes
    }

    enum DecodeError: Error { case tooShort, badMagic, badVersion(UInt32), badChecksum }

    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> SegmentHeader {
        guard bytes.count >= JournalFormat.segmentHeaderLength else { throw DecodeError.tooShort }
        guard Array(bytes[0..<8]) == JournalFormat.segmentMagic else { throw DecodeError.badMagic }
        var r = ByteReader(bytes)
        r.skip(8)
        let version = r.u32()
        guard version == JournalFormat.version else { throw DecodeError.badVersion(version) }
        let stored = bytes.loadUnaligned(fromByteOffset: 92, as: UInt32.self).littleEndian
        guard CRC32CBridge.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<92])) == stored else { throw DecodeError.badChecksum }
        _ = r.u32()
        let index = r.u64()
        let first = r.u64()
        let created = r.u64()
        let prev = r.bytes(32)
        return SegmentHeader(index: index, firstSequence: first, createdNs: created, previousHash: prev)
    }
}

/// The fixed 32-byte record header, as read back.
struct RecordHeader {
    var storedChecksum: UInt32
    var totalLength: Int
    var kindRaw: UInt8
    var flags: UInt8
    var sequence: UInt64
    var timeNs: UInt64

    /// Decodes the first `JournalFormat.recordHeaderLength` bytes of `b`.
    init(_ b: UnsafeRawBufferPointer) {
        var r = ByteReader(b)
        storedChecksum = r.u32()
        totalLength = Int(r.u32())
        kindRaw = r.u8()
        flags = r.u8()
        r.skip(6)
        sequence = r.u64()
        timeNs = r.u64()
    }

    /// Whether the length is one a writer can produce.
    var plausibleLength: Bool {
        totalLength >= JournalFormat.recordHeaderLength && totalLength <= JournalFormat.maxRecordLength
    }

    /// Whether `record` (this header and its payload) matches the stored checksum.
    func checksumMatches(_ record: UnsafeRawBufferPointer) -> Bool {
        CRC32CBridge.checksum(UnsafeRawBufferPointer(rebasing: record[4..<totalLength])) == storedChecksum
    }
}
