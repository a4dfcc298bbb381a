import Crypto
import KanshiCore
import KanshiSystem

/// One record as read from a segment; `payload` is valid only during the
/// callback that receives it.
public struct JournalRecord {
    public var kind: RecordKind
    public var flags: UInt8
    public var sequence: UInt64
    public var timeNs: UInt64
    public var payload: UnsafeRawBufferPointer
    /// Segment index and byte offset of the record.
    public var segment: UInt64
    public var offset: UInt64
}

/// What is wrong at the end of a segment scan, if anything.
enum ScanProblem: Equatable {
    /// An incomplete or unwritten record with nothing valid after it:
    /// the trace of a crash, safe to cut off.
    case tornTail(offset: UInt64, reason: String)
    /// Damage followed by more data, or a record that contradicts the chain.
    case corrupt(offset: UInt64, sequence: UInt64?, reason: String)
}

/// The state of a segment after reading it from the start.
struct SegmentScan {
    var path: String
    var header: SegmentHeader
    var fileSize: UInt64
    /// End of the last valid record.
    var validEnd: UInt64
    var records = 0
    var firstTimeNs: UInt64?
    var lastTimeNs: UInt64?
    /// Sequence number the next record must carry.
    var nextSequence: UInt64
    /// Hash of bytes 0..<validEnd.
    var hasher: SHA256
    /// Set when the segment ends with a seal record: the segment's hash.
    var sealHash: [UInt8]?
    /// End of the last checkpoint or seal record (bytes before it are hash-covered).
    var coveredEnd: UInt64
    var checkpoints = 0
    var problem: ScanProblem?
}

/// Reads a file front to back through a large buffer.
final class SequentialReader {
    let file: SystemFile
    let fileSize: UInt64
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var bufferOffset: UInt64 = 0

    init(file: SystemFile, chunk: Int = 8 << 20) throws {
        self.file = file
        self.fileSize = try file.size()
        self.buffer = [UInt8](repeating: 0, count: chunk)
    }

    /// File offset of the next unread byte.
    var position: UInt64 { bufferOffset + UInt64(start) }

    /// Makes `n` bytes available; false if the file ends first.
    func ensure(_ n: Int) throws -> Bool {
        if end - start >= n { return true }
        if position + UInt64(n) > fileSize { return false }
        // Move what is left to the front, grow if one record is larger than the buffer.
        if start > 0 {
            let left = end - start
            buffer.withUnsafeMutableBytes { b in
                b.baseAddress!.copyMemory(from: b.baseAddress! + start, byteCount: left)
            }
            bufferOffset += UInt64(start)
            start = 0
            end = left
        }
        if buffer.count < n { buffer += [UInt8](repeating: 0, count: n - buffer.count) }
        while end - start < n {
            let got = try buffer.withUnsafeMutableBytes { (b) throws -> Int in
                try file.read(into: UnsafeMutableRawBufferPointer(rebasing: b[end...]), at: bufferOffset + UInt64(end))
            }
            if got == 0 { return false }
            end += got
        }
        return true
    }

    /// Calls `body` with the next `n` bytes (after `ensure(n)` returned true), then consumes them.
    func consume<T>(_ n: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        defer { start += n }
        return try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<start + n])) }
    }

    func peek<T>(_ n: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start..<start + n])) }
    }

    /// True if every byte from `offset` to the end of the file is zero.
    func isZero(from offset: UInt64) throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var at = offset
        while at < fileSize {
            let n = try chunk.withUnsafeMutableBytes { (b) throws -> Int in try file.read(into: b, at: at) }
            if n == 0 { break }
            if chunk[0..<n].contains(where: { $0 != 0 }) { return false }
            at += UInt64(n)
        }
        return true
    }
}

enum SegmentScanner {
    /// Reads a whole segment, checking header, record checksums, sequence
    /// numbers and hash records, and calls `visit` for each valid record.
    /// Stops at the first problem and reports it in the result.
    static func scan(path: String, segment: UInt64,
                     visit: (JournalRecord) throws -> Void = { _ in }) throws -> SegmentScan {
        let file = try wrap { () throws in try SystemFile(path: path, mode: .readOnly) }
        let reader = try wrap { () throws in try SequentialReader(file: file) }
        let location = JournalLocation(segmentPath: path, offset: 0, sequence: nil)
        guard try wrap({ () throws in try reader.ensure(JournalFormat.segmentHeaderLength) }) else {
            throw JournalError.corrupt(location: location, reason: "segment is shorter than its \(JournalFormat.segmentHeaderLength)-byte header (\(reader.fileSize) bytes)")
        }
        let header: SegmentHeader
        do {
            header = try reader.peek(JournalFormat.segmentHeaderLength) { try SegmentHeader.decode($0) }
        } catch let error as SegmentHeader.DecodeError {
            let why: String
            switch error {
            case .tooShort: why = "segment header is truncated"
            case .badMagic: why = "not a Kanshi journal segment (bad magic)"
            case .badVersion(let v): why = "segment format version \(v) is not supported (this build reads \(JournalFormat.version))"
            case .badChecksum: why = "segment header checksum mismatch"
            }
            throw JournalError.corrupt(location: location, reason: why)
        }
        guard header.index == segment else {
            throw JournalError.corrupt(location: location, reason: "header says segment \(header.index) but the file name says \(segment)")
        }
        var hasher = SHA256()
        reader.consume(JournalFormat.segmentHeaderLength) { hasher.update(bufferPointer: $0) }
        var scan = SegmentScan(path: path, header: header, fileSize: reader.fileSize,
                               validEnd: UInt64(JournalFormat.segmentHeaderLength),
                               nextSequence: header.firstSequence, hasher: hasher,
                               coveredEnd: UInt64(JournalFormat.segmentHeaderLength))

        func tornOrCorrupt(_ offset: UInt64, claimedEnd: UInt64?, sequence: UInt64?, _ reason: String) throws -> ScanProblem {
            if let e = claimedEnd, e >= reader.fileSize {
                return .tornTail(offset: offset, reason: reason)
            }
            let restFrom = claimedEnd ?? offset
            if try wrap({ () throws in try reader.isZero(from: restFrom) }) {
                return .tornTail(offset: offset, reason: reason)
            }
            return .corrupt(offset: offset, sequence: sequence, reason: reason)
        }

        while true {
            let offset = reader.position
            if offset == reader.fileSize { break }
            if scan.sealHash != nil {
                scan.problem = .corrupt(offset: offset, sequence: nil, reason: "data after the segment's seal record")
                break
            }
            guard try wrap({ () throws in try reader.ensure(JournalFormat.recordHeaderLength) }) else {
                scan.problem = .tornTail(offset: offset, reason: "\(reader.fileSize - offset) bytes at the end are less than a record header")
                break
            }
            let header = reader.peek(JournalFormat.recordHeaderLength) { RecordHeader($0) }
            let length = header.totalLength, seq = header.sequence
            guard header.plausibleLength else {
                scan.problem = try tornOrCorrupt(offset, claimedEnd: nil, sequence: nil, "record length \(length) is impossible")
                break
            }
            guard try wrap({ () throws in try reader.ensure(length) }) else {
                scan.problem = .tornTail(offset: offset, reason: "record of \(length) bytes runs past the end of the segment (\(reader.fileSize - offset) bytes left)")
                break
            }
            guard reader.peek(length, { header.checksumMatches($0) }) else {
                scan.problem = try tornOrCorrupt(offset, claimedEnd: offset + UInt64(length), sequence: nil, "record checksum mismatch")
                break
            }
            guard let kind = RecordKind(rawValue: header.kindRaw) else {
                scan.problem = .corrupt(offset: offset, sequence: seq, reason: "unknown record kind \(header.kindRaw)")
                break
            }
            guard seq == scan.nextSequence else {
                scan.problem = .corrupt(offset: offset, sequence: seq, reason: "sequence number \(seq) where \(scan.nextSequence) was expected: records were removed, added or reordered")
                break
            }
            if kind == .seal || kind == .checkpoint {
                let expected = Array(scan.hasher.finalizeCopy())
                let stored = reader.peek(length) { Array($0[JournalFormat.recordHeaderLength...]) }
                guard stored == expected else {
                    scan.problem = .corrupt(offset: offset, sequence: seq, reason: "\(kind) hash does not match the segment's bytes before it: the segment was altered")
                    break
                }
            }
            do {
                try reader.peek(length) { b in
                    try visit(JournalRecord(kind: kind, flags: header.flags, sequence: seq, timeNs: header.timeNs,
                                            payload: UnsafeRawBufferPointer(rebasing: b[JournalFormat.recordHeaderLength...]),
                                            segment: segment, offset: offset))
                }
            }
            let hashBefore = scan.hasher
            reader.consume(length) { scan.hasher.update(bufferPointer: $0) }
            scan.records += 1
            scan.nextSequence = seq + 1
            scan.validEnd = offset + UInt64(length)
            if kind == .checkpoint || kind == .seal {
                scan.coveredEnd = scan.validEnd
                scan.checkpoints += 1
            }
            if kind == .seal { scan.sealHash = Array(hashBefore.finalizeCopy()) }
            if kind != .seal && kind != .checkpoint {
                if scan.firstTimeNs == nil { scan.firstTimeNs = header.timeNs }
                scan.lastTimeNs = header.timeNs
            }
        }
        return scan
    }
}

extension SHA256 {
    /// The digest of what was hashed so far, leaving `self` usable.
    func finalizeCopy() -> SHA256Digest {
        let copy = self
        return copy.finalize()
    }
}

/// Turns a typed system error into the journal's error.
@inline(__always)
func wrap<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as SystemError { throw JournalError.system(e) }
}
