import Crypto
import Dispatch
import KanshiCore
import KanshiSystem
import Logging

/// What opening a journal found and repaired.
public struct JournalRecovery: Sendable, CustomStringConvertible {
    /// The segment whose tail was cut.
    public var segmentPath: String
    /// Where the torn record began (the segment now ends here).
    public var offset: UInt64
    /// How many bytes were removed.
    public var bytesCut: UInt64
    public var reason: String

    public var description: String {
        "cut a torn record of \(bytesCut) bytes at byte \(offset) of \(segmentPath) (\(reason)); every record before it is intact"
    }
}

/// Appends records to a journal directory. Safe to share between threads:
/// appends are serialised, so sequence numbers follow the order of appends.
public final class JournalWriter: Sendable {
    public struct Options: Sendable {
        /// A segment is sealed and a new one started once it reaches this size.
        public var segmentBytes: UInt64 = 256 << 20
        /// Bytes behind the end of the journal that stay in the page cache;
        /// older ones are written back and dropped in the background, so the
        /// journal's memory stays flat however long it grows (0: never drop).
        public var cachedTailBytes: UInt64 = 8 << 20
        public init(segmentBytes: UInt64 = 256 << 20, cachedTailBytes: UInt64 = 8 << 20) {
            self.segmentBytes = segmentBytes
            self.cachedTailBytes = cachedTailBytes
        }
    }

    public let directory: String
    /// Set when opening cut off a torn tail left by a crash.
    public let recovery: JournalRecovery?
    private let options: Options
    private let lockFile: SystemFile
    private let state: Locked<State>
    private let logger: Logger
    /// Writes back and drops old journal pages off the hot path.
    private let retirer = DispatchQueue(label: "kanshi.journal.retire")

    private struct State {
        var segment: SystemFile?
        var segmentIndex: UInt64
        var segmentSize: UInt64
        var hasher: SegmentHasher
        var nextSequence: UInt64
        var sinceCheckpoint = 0
        /// Segment offset up to which the hasher was told to catch up.
        var hashSignalled: UInt64 = 0
        /// Offset in the open segment up to which pages were handed to the retirer.
        var retiredUpTo: UInt64 = 0
    }

    /// Opens the journal in `directory` for appending, creating it if needed.
    /// A torn record at the end (from a crash) is cut off and reported in
    /// `recovery`; any other damage throws `JournalError.corrupt` and leaves
    /// the files untouched.
    public init(directory: String, options: Options = Options(), logger: Logger) throws {
        self.directory = directory
        self.options = options
        self.logger = logger
        if !FileSystem.exists(directory) {
            try wrap { () throws in try FileSystem.createDirectory(directory) }
        }
        guard FileSystem.isDirectory(directory) else {
            throw JournalError.notAJournal(directory: directory, reason: "it exists and is not a directory")
        }
        let lock = try wrap { () throws in try SystemFile(path: directory + "/LOCK", mode: [.readWrite, .create]) }
        lockFile = lock
        guard try wrap({ () throws in try lock.tryLockExclusive() }) else {
            throw JournalError.locked(directory: directory)
        }
        let layout = try JournalLayout.read(directory: directory)
        for tmp in layout.temporaries {
            try wrap { () throws in try FileSystem.remove(directory + "/" + tmp) }
        }

        var recovery: JournalRecovery?
        let initial: State
        if let last = layout.segments.last {
            let path = layout.path(of: last)
            let scan = try SegmentScanner.scan(path: path, segment: last)
            var validEnd = scan.validEnd
            switch scan.problem {
            case .corrupt(let offset, let seq, let why):
                throw JournalError.corrupt(location: JournalLocation(segmentPath: path, offset: offset, sequence: seq), reason: why)
            case .tornTail(let offset, let why):
                let file = try wrap { () throws in try SystemFile(path: path, mode: .readWrite) }
                try wrap { () throws in
                    try file.truncate(to: offset)
                    try file.syncData()
                }
                recovery = JournalRecovery(segmentPath: path, offset: offset, bytesCut: scan.fileSize - offset, reason: why)
                validEnd = offset
            case nil:
                break
            }
            if let seal = scan.sealHash {
                let file = try Self.createSegment(directory: directory, index: last + 1, firstSequence: scan.nextSequence,
                                                  previousHash: seal)
                initial = State(segment: file, segmentIndex: last + 1, segmentSize: UInt64(JournalFormat.segmentHeaderLength),
                                hasher: SegmentHasher(file: file, offset: UInt64(JournalFormat.segmentHeaderLength), state: try Self.hashOfFile(file)),
                                nextSequence: scan.nextSequence)
            } else {
                let file = try wrap { () throws in try SystemFile(path: path, mode: [.readWrite, .append]) }
                initial = State(segment: file, segmentIndex: last, segmentSize: validEnd,
                                hasher: SegmentHasher(file: file, offset: validEnd, state: scan.hasher),
                                nextSequence: scan.nextSequence)
            }
        } else {
            let file = try Self.createSegment(directory: directory, index: 1, firstSequence: 1,
                                              previousHash: [UInt8](repeating: 0, count: 32))
            initial = State(segment: file, segmentIndex: 1, segmentSize: UInt64(JournalFormat.segmentHeaderLength),
                            hasher: SegmentHasher(file: file, offset: UInt64(JournalFormat.segmentHeaderLength), state: try Self.hashOfFile(file)),
                            nextSequence: 1)
        }
        self.state = Locked(initial)
        self.recovery = recovery
        if let recovery {
            logger.warning("journal recovered after a crash", metadata: ["journal": "\(directory)", "detail": "\(recovery)"])
            let note = "{\"event\":\"recovered-torn-tail\",\"segment\":\"\(recovery.segmentPath)\",\"offset\":\(recovery.offset),\"bytesCut\":\(recovery.bytesCut)}"
            try appendNote(note)
            try sync()
        }
    }

    /// Appends one record whose payload is the concatenation of `parts`;
    /// returns its sequence number. The record reaches the kernel before this
    /// returns (it survives the process being killed); `sync()` makes it durable.
    @discardableResult
    public func append(kind: RecordKind, flags: UInt8 = 0, timeNs: UInt64,
                       parts: [UnsafeRawBufferPointer]) throws -> UInt64 {
        try append([PendingRecord(kind: kind, flags: flags, timeNs: timeNs, parts: parts)])
    }

    /// A record to append: its payload is the concatenation of `parts`.
    public struct PendingRecord {
        public var kind: RecordKind
        public var flags: UInt8
        public var timeNs: UInt64
        public var parts: [UnsafeRawBufferPointer]
        public init(kind: RecordKind, flags: UInt8 = 0, timeNs: UInt64, parts: [UnsafeRawBufferPointer]) {
            self.kind = kind
            self.flags = flags
            self.timeNs = timeNs
            self.parts = parts
        }
    }

    /// Appends several records with one system call (group commit); they get
    /// consecutive sequence numbers, the first of which is returned.
    @discardableResult
    public func append(_ records: [PendingRecord]) throws -> UInt64 {
        for r in records {
            let total = JournalFormat.recordHeaderLength + r.parts.reduce(0) { $0 + $1.count }
            guard total <= JournalFormat.maxRecordLength else { throw JournalError.recordTooLarge(bytes: total) }
        }
        return try state.withLock { (s) throws -> UInt64 in
            let seq = try writeRecords(&s, records)
            if s.segmentSize >= options.segmentBytes { try rotate(&s) }
            return seq
        }
    }

    /// Appends a note: a UTF-8 JSON object describing a session event.
    @discardableResult
    public func appendNote(_ json: String, timeNs: UInt64 = FileSystem.nowNs()) throws -> UInt64 {
        var bytes = Array(json.utf8)
        return try bytes.withUnsafeMutableBytes { (b) throws -> UInt64 in
            try append(kind: .note, timeNs: timeNs, parts: [UnsafeRawBufferPointer(b)])
        }
    }

    /// Writes a checkpoint (the hash of the open segment so far) if anything
    /// was appended since the last one, and makes everything durable.
    public func sync() throws {
        let file = try state.withLock { (s) throws -> SystemFile? in
            if s.sinceCheckpoint > 0 { try writeHashRecord(&s, kind: .checkpoint) }
            return s.segment
        }
        guard let file else { throw JournalError.closed(directory: directory) }
        try wrap { () throws in try file.syncData() }
    }

    /// Syncs and closes; later appends throw `JournalError.closed`.
    public func close() throws {
        try sync()
        state.withLock {
            $0.segment = nil
            $0.hasher.stop()
        }
    }

    deinit { state.withLock { $0.hasher.stop() } }

    // MARK: - Internals (called with the lock held)

    /// Writes records back to back with one gathered write.
    private func writeRecords(_ s: inout State, _ records: [PendingRecord]) throws -> UInt64 {
        guard let file = s.segment else { throw JournalError.closed(directory: directory) }
        let first = s.nextSequence
        let hl = JournalFormat.recordHeaderLength
        var headers = [UInt8](repeating: 0, count: hl * records.count)
        var written = 0
        try headers.withUnsafeMutableBytes { (all) throws in
            var iov: [UnsafeRawBufferPointer] = []
            iov.reserveCapacity(records.count * 3)
            for (i, r) in records.enumerated() {
                let h = UnsafeMutableRawBufferPointer(rebasing: all[(i * hl)..<((i + 1) * hl)])
                let total = hl + r.parts.reduce(0) { $0 + $1.count }
                h.storeBytes(of: UInt32(total).littleEndian, toByteOffset: 4, as: UInt32.self)
                h[8] = r.kind.rawValue
                h[9] = r.flags
                h.storeBytes(of: (first + UInt64(i)).littleEndian, toByteOffset: 16, as: UInt64.self)
                h.storeBytes(of: r.timeNs.littleEndian, toByteOffset: 24, as: UInt64.self)
                var crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: h[4...]))
                for p in r.parts { crc = CRC32C.checksum(p, continuing: crc) }
                h.storeBytes(of: crc.littleEndian, toByteOffset: 0, as: UInt32.self)
                iov.append(UnsafeRawBufferPointer(h))
                iov.append(contentsOf: r.parts)
                written += total
            }
            try wrap { () throws in try file.writeGathered(iov) }
        }
        s.segmentSize += UInt64(written)
        s.nextSequence = first + UInt64(records.count)
        s.sinceCheckpoint += records.count
        if s.segmentSize - s.hashSignalled >= 1 << 20 {
            s.hasher.advance(to: s.segmentSize)
            s.hashSignalled = s.segmentSize
        }
        retireOldPages(&s, file: file)
        return first
    }

    /// Hands pages more than `cachedTailBytes` behind the end to the retirer,
    /// in steps of a quarter of that (at most 8 MiB): freed soon and in small
    /// pieces, the pages are reused before this VM's free-page reporting hands
    /// them back to the host, which would make their next use fault again.
    private func retireOldPages(_ s: inout State, file: SystemFile, all: Bool = false) {
        let keep = options.cachedTailBytes
        guard keep > 0 else { return }
        let end = all ? s.segmentSize : (s.segmentSize > keep ? (s.segmentSize - keep) & ~4095 : 0)
        guard end > s.retiredUpTo, all || end - s.retiredUpTo >= min(8 << 20, keep / 4) else { return }
        let start = s.retiredUpTo
        s.retiredUpTo = end
        let log = logger
        retirer.async {
            do {
                try file.writeBackAndDrop(offset: start, length: end - start)
            } catch {
                log.debug("could not drop journal pages from the cache", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Writes a checkpoint or seal carrying the hash of the segment before
    /// it, and returns that hash.
    @discardableResult
    private func writeHashRecord(_ s: inout State, kind: RecordKind) throws -> [UInt8] {
        let digest = try s.hasher.digest(at: s.segmentSize)
        try digest.withUnsafeBytes { (d) throws in
            _ = try writeRecords(&s, [PendingRecord(kind: kind, timeNs: FileSystem.nowNs(), parts: [d])])
        }
        s.sinceCheckpoint = 0
        return digest
    }

    private func rotate(_ s: inout State) throws {
        let sealHash = try writeHashRecord(&s, kind: .seal)
        if let old = s.segment {
            try wrap { () throws in try old.syncData() }
            retireOldPages(&s, file: old, all: true)
        }
        let next = s.segmentIndex + 1
        let file = try Self.createSegment(directory: directory, index: next, firstSequence: s.nextSequence, previousHash: sealHash)
        s.segment = file
        s.segmentIndex = next
        s.segmentSize = UInt64(JournalFormat.segmentHeaderLength)
        // The seal record itself is never hashed: let the hasher skip past it.
        s.hasher.reset(file: file, offset: UInt64(JournalFormat.segmentHeaderLength), state: try Self.hashOfFile(file))
        s.hashSignalled = 0
        s.sinceCheckpoint = 0
        s.retiredUpTo = 0
        logger.debug("journal segment sealed", metadata: ["segment": "\(next - 1)", "hash": "\(sealHash.hex)"])
    }

    /// Creates a segment atomically (temporary name, then rename) and opens it for appending.
    private static func createSegment(directory: String, index: UInt64, firstSequence: UInt64,
                                      previousHash: [UInt8]) throws -> SystemFile {
        let header = SegmentHeader(index: index, firstSequence: firstSequence, createdNs: FileSystem.nowNs(),
                                   previousHash: previousHash).encoded()
        let path = directory + "/" + JournalFormat.segmentName(index)
        let tmp = path + ".tmp"
        return try wrap { () throws -> SystemFile in
            let t = try SystemFile(path: tmp, mode: [.readWrite, .create, .truncate])
            try header.withUnsafeBytes { (b) throws in try t.write(b, at: 0) }
            try t.syncData()
            try FileSystem.rename(tmp, path)
            try FileSystem.syncDirectory(directory)
            return try SystemFile(path: path, mode: [.readWrite, .append])
        }
    }

    private static func hashOfFile(_ file: SystemFile) throws -> SHA256 {
        var h = SHA256()
        var bytes = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderLength)
        let n = try wrap { () throws -> Int in
            try bytes.withUnsafeMutableBytes { (b) throws -> Int in try file.read(into: b, at: 0) }
        }
        bytes.withUnsafeBytes { h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        return h
    }
}
