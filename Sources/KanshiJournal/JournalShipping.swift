import Crypto
import KanshiCore
import KanshiSystem

/// How far a shipped copy of a journal has got: the next byte to send or receive.
/// Offset 0 means the segment has not been started (its header comes first).
public struct ShipPosition: Sendable, Equatable, Hashable, Comparable, CustomStringConvertible {
    public var segment: UInt64
    public var offset: UInt64

    public init(segment: UInt64, offset: UInt64) {
        self.segment = segment
        self.offset = offset
    }

    /// A journal's first byte.
    public static let start = ShipPosition(segment: 1, offset: 0)

    public static func < (a: ShipPosition, b: ShipPosition) -> Bool {
        (a.segment, a.offset) < (b.segment, b.offset)
    }

    public var description: String { "segment \(segment) byte \(offset)" }
}

/// A run of whole records read from a journal that may still be written: what a sensor ships.
public struct JournalChunk: Sendable {
    /// Where `bytes` start in the journal.
    public var position: ShipPosition
    /// The segment header (when `position.offset` is 0) and complete records, as stored.
    public var bytes: [UInt8]
    public var records: Int
    /// Where the next chunk starts: after a seal record, the next segment's start.
    public var next: ShipPosition
}

/// Reads what can be shipped from a journal being written: whole records whose checksums hold,
/// never a record still being written (a staged writer rewrites the journal's last block as it fills).
public enum JournalChunks {
    /// The largest chunk `next` returns unless a single record is larger.
    public static let defaultLimit = 8 << 20

    /// The complete records from `position` on, up to about `limit` bytes; nil when there is nothing new.
    public static func next(directory: String, from position: ShipPosition, limit: Int = defaultLimit) throws -> JournalChunk? {
        let path = directory + "/" + JournalFormat.segmentName(position.segment)
        guard FileSystem.exists(path) else { return nil }
        let file = try wrap { try SystemFile(path: path, mode: .readOnly) }
        let size = try wrap { try file.size() }
        let headerLength = UInt64(JournalFormat.segmentHeaderLength)
        var out: [UInt8] = []
        var at = position.offset
        if at == 0 {
            guard size >= headerLength else { return nil }
            var header = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderLength)
            _ = try header.withUnsafeMutableBytes { b in try wrap { try file.read(into: b, at: 0) } }
            // A header whose checksum fails is still being written (the writer renames a
            // finished one into place, so this is rare) or damaged: either way nothing to send yet.
            guard (try? header.withUnsafeBytes { try SegmentHeader.decode($0) }) != nil else { return nil }
            out = header
            at = headerLength
        } else if at < headerLength {
            throw JournalError.corrupt(location: .init(segmentPath: path, offset: at, sequence: nil),
                                       reason: "a shipping position inside the segment header")
        }
        var records = 0
        var sealed = false
        while records == 0 || out.count < limit, let (h, record) = try GrowingSegment.wholeRecord(file, path: path, at: at, size: size) {
            out += record
            records += 1
            at += UInt64(h.totalLength)
            if h.kindRaw == RecordKind.seal.rawValue { sealed = true; break }
        }
        guard !out.isEmpty else { return nil }
        let next = sealed ? ShipPosition(segment: position.segment + 1, offset: 0) : ShipPosition(segment: position.segment, offset: at)
        return JournalChunk(position: position, bytes: out, records: records, next: next)
    }

    /// Bytes of the journal's segment files from `position` on: what is not shipped yet, roughly
    /// (a segment's preallocated tail counts until it is written).
    public static func bytesAfter(directory: String, position: ShipPosition) throws -> UInt64 {
        let layout = try JournalLayout.read(directory: directory)
        var total: UInt64 = 0
        for index in layout.segments where index >= position.segment {
            let size = (try? FileSystem.status(layout.path(of: index))?.size) ?? 0
            let from = index == position.segment ? position.offset : 0
            if size > from { total += size - from }
        }
        return total
    }

    /// SHA-256 of each segment's first bytes up to the segment's end or, for `position.segment`,
    /// up to `position.offset`: what two copies of a journal must agree on up to a position.
    public static func prefixHashes(directory: String, upTo position: ShipPosition) throws -> [UInt64: [UInt8]] {
        let layout = try JournalLayout.read(directory: directory)
        var out: [UInt64: [UInt8]] = [:]
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for index in layout.segments where index <= position.segment {
            if index == position.segment && position.offset == 0 { break }
            let file = try wrap { try SystemFile(path: layout.path(of: index), mode: .readOnly) }
            let end = index == position.segment ? position.offset : try wrap { try file.size() }
            var sha = SHA256()
            var at: UInt64 = 0
            while at < end {
                let want = Int(min(UInt64(buffer.count), end - at))
                let got = try buffer.withUnsafeMutableBytes { b in
                    try wrap { try file.read(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<want]), at: at) }
                }
                if got == 0 { break }
                buffer.withUnsafeBytes { sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
                at += UInt64(got)
            }
            // A copy that is shorter than the position hashes differently, which is the point.
            out[index] = Array(sha.finalize())
        }
        return out
    }
}

/// Why a shipped chunk was refused. Nothing of it was stored.
public enum ReplicaError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The chunk does not start where the copy ends: a duplicate, a gap or a reordering.
    case outOfOrder(expected: ShipPosition, got: ShipPosition)
    /// The bytes are not what a journal holds at that place.
    case malformed(at: ShipPosition, reason: String)
    /// The stored copy is damaged: it cannot take more.
    case damaged(String)

    public var description: String {
        switch self {
        case .outOfOrder(let e, let g): "chunk at \(g) where the copy ends at \(e)"
        case .malformed(let at, let why): "chunk rejected at \(at): \(why)"
        case .damaged(let why): "the stored copy is damaged: \(why)"
        }
    }
}

/// A copy of a journal that grows only by verified chunks: the server's side of shipping.
///
/// Every chunk must start where the copy ends, carry whole records with good checksums and
/// consecutive sequence numbers, and agree with the hash chain (segment headers name the
/// previous segment's hash, checkpoint and seal records the hash of the segment before them).
/// A chunk is checked whole before a byte of it is written, then written and synced: what
/// `append` returns from is durable.
public final class JournalReplica {
    public let directory: String
    public private(set) var position: ShipPosition
    /// Sequence number the next record must carry.
    public private(set) var nextSequence: UInt64
    /// Hash of the last sealed segment (zeros before the first seal).
    public private(set) var previousHash: [UInt8]
    private var hasher = SHA256()
    private var file: SystemFile?

    /// What one accepted chunk changed.
    public struct Appended: Sendable {
        public var next: ShipPosition
        public var records: Int
        /// The segment's hash when the chunk ended with its seal record.
        public var sealHash: [UInt8]?
        /// The last checkpoint in the chunk: the offset just after it and the hash it carries.
        public var checkpoint: (offset: UInt64, hash: [UInt8])?
        public var firstTimeNs: UInt64?
        public var lastTimeNs: UInt64?
    }

    /// Opens a copy, creating the directory if needed. The last segment is read back to learn
    /// where the copy ends; a torn record at its end (a crash between write and sync, never
    /// acknowledged) is cut off; any other damage is refused.
    public init(directory: String) throws {
        self.directory = directory
        if !FileSystem.isDirectory(directory) { try wrap { try FileSystem.createDirectory(directory) } }
        let layout = try JournalLayout.read(directory: directory)
        for t in layout.temporaries { try? FileSystem.remove(directory + "/" + t) }
        position = .start
        nextSequence = 1
        previousHash = [UInt8](repeating: 0, count: 32)
        guard let last = layout.segments.last else { return }
        let path = layout.path(of: last)
        if ((try? FileSystem.status(path)?.size) ?? 0) < UInt64(JournalFormat.segmentHeaderLength) {
            // Created but its header never reached the disk: that chunk was not acknowledged.
            try wrap { try FileSystem.remove(path) }
            if last > 1 { try recover(segment: last - 1) } else { return }
            if position.offset != 0 {
                throw ReplicaError.damaged("\(path) lost its header but segment \(last - 1) is not sealed")
            }
            return
        }
        try recover(segment: last)
    }

    private func recover(segment: UInt64) throws {
        let path = directory + "/" + JournalFormat.segmentName(segment)
        let scan = try SegmentScanner.scan(path: path, segment: segment)
        switch scan.problem {
        case .corrupt(let offset, _, let why):
            throw ReplicaError.damaged("\(path) at byte \(offset): \(why)")
        case .tornTail:
            let f = try wrap { try SystemFile(path: path, mode: .readWrite) }
            try wrap { try f.truncate(to: scan.validEnd) }
            try wrap { try f.sync() }
        case nil:
            break
        }
        nextSequence = scan.nextSequence
        if let seal = scan.sealHash {
            previousHash = seal
            position = ShipPosition(segment: segment + 1, offset: 0)
            file = nil
        } else {
            previousHash = scan.header.previousHash
            hasher = scan.hasher
            position = ShipPosition(segment: segment, offset: scan.validEnd)
            file = try wrap { try SystemFile(path: path, mode: .readWrite) }
        }
    }

    /// Checks `bytes` as the journal's content at `at`, then stores and syncs them.
    /// `visit` sees each record once the whole chunk has been checked, before it is written.
    @discardableResult
    public func append(at: ShipPosition, _ bytes: UnsafeRawBufferPointer,
                       visit: (JournalRecord) throws -> Void = { _ in }) throws -> Appended {
        guard at == position else { throw ReplicaError.outOfOrder(expected: position, got: at) }
        guard !bytes.isEmpty else { throw ReplicaError.malformed(at: at, reason: "empty chunk") }
        func refuse(_ offset: Int, _ why: String) -> ReplicaError {
            .malformed(at: ShipPosition(segment: at.segment, offset: at.offset + UInt64(offset)), reason: why)
        }
        var sha = hasher
        var sequence = nextSequence
        var cursor = 0
        if at.offset == 0 {
            guard bytes.count >= JournalFormat.segmentHeaderLength else {
                throw refuse(0, "a new segment's chunk must start with its \(JournalFormat.segmentHeaderLength)-byte header (\(bytes.count) bytes sent)")
            }
            let header: SegmentHeader
            do {
                header = try SegmentHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[0..<JournalFormat.segmentHeaderLength]))
            } catch {
                throw refuse(0, "not a valid segment header (\(error))")
            }
            guard header.index == at.segment else { throw refuse(0, "header says segment \(header.index), sent as segment \(at.segment)") }
            guard header.previousHash == previousHash else {
                throw refuse(0, "the header's previous-segment hash does not match the copy's last sealed segment: the chain is broken")
            }
            guard header.firstSequence == nextSequence else {
                throw refuse(0, "segment starts at record #\(header.firstSequence) where #\(nextSequence) was expected")
            }
            sha = SHA256()
            sha.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[0..<JournalFormat.segmentHeaderLength]))
            cursor = JournalFormat.segmentHeaderLength
        }
        var result = Appended(next: at, records: 0)
        var seal: [UInt8]?
        var records: [(start: Int, header: RecordHeader, kind: RecordKind)] = []
        while cursor < bytes.count {
            if seal != nil { throw refuse(cursor, "data after the segment's seal record") }
            guard bytes.count - cursor >= JournalFormat.recordHeaderLength else {
                throw refuse(cursor, "\(bytes.count - cursor) bytes at the end are less than a record header")
            }
            let record = UnsafeRawBufferPointer(rebasing: bytes[cursor...])
            let h = RecordHeader(record)
            guard h.plausibleLength else { throw refuse(cursor, "record length \(h.totalLength) is impossible") }
            guard h.totalLength <= record.count else {
                throw refuse(cursor, "record of \(h.totalLength) bytes runs past the end of the chunk (\(record.count) left)")
            }
            let whole = UnsafeRawBufferPointer(rebasing: record[0..<h.totalLength])
            guard h.checksumMatches(whole) else { throw refuse(cursor, "record checksum mismatch") }
            guard let kind = RecordKind(rawValue: h.kindRaw) else { throw refuse(cursor, "unknown record kind \(h.kindRaw)") }
            guard h.sequence == sequence else {
                throw refuse(cursor, "sequence number \(h.sequence) where \(sequence) was expected")
            }
            let before = sha
            if kind == .seal || kind == .checkpoint {
                let expected = Array(before.finalizeCopy())
                guard Array(whole[JournalFormat.recordHeaderLength...]) == expected else {
                    throw refuse(cursor, "\(kind) hash does not match the segment's bytes before it")
                }
                if kind == .checkpoint {
                    result.checkpoint = (at.offset + UInt64(cursor + h.totalLength), expected)
                } else {
                    seal = expected
                }
            } else {
                if result.firstTimeNs == nil { result.firstTimeNs = h.timeNs }
                result.lastTimeNs = h.timeNs
            }
            sha.update(bufferPointer: whole)
            records.append((cursor, h, kind))
            sequence += 1
            cursor += h.totalLength
        }
        for r in records {
            try visit(JournalRecord(kind: r.kind, flags: r.header.flags, sequence: r.header.sequence, timeNs: r.header.timeNs,
                                    payload: UnsafeRawBufferPointer(rebasing: bytes[(r.start + JournalFormat.recordHeaderLength)..<(r.start + r.header.totalLength)]),
                                    segment: at.segment, offset: at.offset + UInt64(r.start)))
        }
        // Checked: now store and sync.
        let path = directory + "/" + JournalFormat.segmentName(at.segment)
        if at.offset == 0 {
            // Nothing of this segment was acknowledged: whatever a failed attempt left goes.
            file = try wrap { try SystemFile(path: path, mode: [.readWrite, .create, .truncate]) }
        }
        guard let file else { throw ReplicaError.damaged("\(path) is not open") }
        do {
            try wrap { try file.write(bytes, at: at.offset) }
            try wrap { try file.syncData() }
        } catch {
            // What reached the file past the copy's end was not acknowledged: cut it.
            try? file.truncate(to: at.offset)
            throw error
        }
        if at.offset == 0 { try wrap { try FileSystem.syncDirectory(directory) } }
        nextSequence = sequence
        result.records = records.count
        if let seal {
            previousHash = seal
            position = ShipPosition(segment: at.segment + 1, offset: 0)
            self.file = nil
            result.sealHash = seal
        } else {
            hasher = sha
            position = ShipPosition(segment: at.segment, offset: at.offset + UInt64(bytes.count))
        }
        result.next = position
        return result
    }
}
