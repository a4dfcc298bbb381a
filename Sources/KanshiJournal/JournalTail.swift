import KanshiCore
import KanshiSystem

/// Reading a segment that may still be written.
enum GrowingSegment {
    /// The whole record at `offset` (its header and payload) with its header decoded; nil while it
    /// is still being written: not all there yet, or a checksum that fails within the block a
    /// staged writer rewrites as it fills. A record that cannot be one, or a checksum that fails
    /// with more written after it, is damage.
    static func wholeRecord(_ file: SystemFile, path: String, at offset: UInt64, size: UInt64) throws -> (RecordHeader, [UInt8])? {
        guard offset + UInt64(JournalFormat.recordHeaderLength) <= size else { return nil }
        var header = [UInt8](repeating: 0, count: JournalFormat.recordHeaderLength)
        let n = try header.withUnsafeMutableBytes { b in try wrap { try file.read(into: b, at: offset) } }
        guard n == header.count else { return nil }
        let h = header.withUnsafeBytes { RecordHeader($0) }
        guard h.plausibleLength else {
            if h.totalLength == 0 { return nil }  // not written yet
            throw JournalError.corrupt(location: .init(segmentPath: path, offset: offset, sequence: nil), reason: "record length \(h.totalLength) is impossible")
        }
        guard offset + UInt64(h.totalLength) <= size else { return nil }
        var record = [UInt8](repeating: 0, count: h.totalLength)
        _ = try record.withUnsafeMutableBytes { b in try wrap { try file.read(into: b, at: offset) } }
        guard record.withUnsafeBytes({ h.checksumMatches($0) }) else {
            if offset + UInt64(h.totalLength) + UInt64(stagedBlock) > size { return nil }
            throw JournalError.corrupt(location: .init(segmentPath: path, offset: offset, sequence: h.sequence), reason: "record checksum mismatch")
        }
        return (h, record)
    }

    /// The block a staged writer rewrites as it fills.
    static let stagedBlock = 4096
}

/// Follows a journal that may still be written: each `poll` hands over the
/// complete records appended since the last one, in order. Checks record
/// checksums and sequence numbers (the hash chain is `verify`'s job); stops
/// quietly at a record still being written and picks it up next time.
public final class JournalTail {
    public let directory: String
    private var segment: UInt64 = 1
    private var offset: UInt64 = UInt64(JournalFormat.segmentHeaderLength)
    private var nextSequence: UInt64?

    public init(directory: String) throws {
        _ = try JournalLayout.read(directory: directory)
        self.directory = directory
    }

    /// Starts after a record seen before: `position` as returned by `position`.
    public init(directory: String, from position: Position) throws {
        _ = try JournalLayout.read(directory: directory)
        self.directory = directory
        self.segment = position.segment
        self.offset = position.offset
        self.nextSequence = position.nextSequence
    }

    /// Where the next unseen record starts.
    public struct Position: Sendable, Equatable {
        public var segment: UInt64
        public var offset: UInt64
        public var nextSequence: UInt64?
        public init(segment: UInt64, offset: UInt64, nextSequence: UInt64?) {
            self.segment = segment
            self.offset = offset
            self.nextSequence = nextSequence
        }
    }

    public var position: Position { Position(segment: segment, offset: offset, nextSequence: nextSequence) }

    /// Calls `body` for every complete record not seen before; returns how many.
    @discardableResult
    public func poll(_ body: (JournalRecord) throws -> Void) throws -> Int {
        var count = 0
        while true {
            let path = directory + "/" + JournalFormat.segmentName(segment)
            guard FileSystem.exists(path) else { return count }
            let file = try wrap { try SystemFile(path: path, mode: .readOnly) }
            let size = try wrap { try file.size() }
            var sealed = false
            while let (h, record) = try GrowingSegment.wholeRecord(file, path: path, at: offset, size: size) {
                let total = h.totalLength
                let (kindRaw, flags, seq, time) = (h.kindRaw, h.flags, h.sequence, h.timeNs)
                if let expected = nextSequence, seq != expected {
                    throw JournalError.corrupt(location: .init(segmentPath: path, offset: offset, sequence: seq),
                                               reason: "sequence number \(seq) where \(expected) was expected")
                }
                nextSequence = seq + 1
                guard let kind = RecordKind(rawValue: kindRaw) else {
                    throw JournalError.corrupt(location: .init(segmentPath: path, offset: offset, sequence: seq), reason: "unknown record kind \(kindRaw)")
                }
                try record.withUnsafeBytes { b in
                    try body(JournalRecord(kind: kind, flags: flags, sequence: seq, timeNs: time,
                                           payload: UnsafeRawBufferPointer(rebasing: b[JournalFormat.recordHeaderLength...]),
                                           segment: segment, offset: offset))
                }
                count += 1
                offset += UInt64(total)
                if kind == .seal { sealed = true; break }
            }
            guard sealed else { return count }
            segment += 1
            offset = UInt64(JournalFormat.segmentHeaderLength)
        }
    }
}
