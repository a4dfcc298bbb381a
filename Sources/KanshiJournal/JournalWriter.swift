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
        /// Unstaged mode only: a staged writer fills no page cache.
        public var cachedTailBytes: UInt64 = 8 << 20
        /// Stage records in memory and write them to the segment with direct
        /// I/O on a thread of their own (see `StagingArea`): appends cost a
        /// copy, the page cache is left alone, and readers of the files see a
        /// record a few milliseconds after its append (at once after `sync()`).
        /// Off: every append is written to the file before it returns.
        public var staged = false
        /// Size of the staging ring (at least the largest record and a block).
        public var stagingBytes = 64 << 20
        public init(segmentBytes: UInt64 = 256 << 20, cachedTailBytes: UInt64 = 8 << 20, staged: Bool = false,
                    stagingBytes: Int = 64 << 20) {
            self.segmentBytes = segmentBytes
            self.cachedTailBytes = cachedTailBytes
            self.staged = staged
            self.stagingBytes = stagingBytes
        }
    }

    public let directory: String
    /// Set when opening cut off a torn tail left by a crash.
    public let recovery: JournalRecovery?
    /// Bytes of records a writer that stopped early (killed, or unable to
    /// write) had left in shared memory, written
    /// to the journal on opening (0 if none).
    public let recoveredStagedBytes: UInt64
    private let options: Options
    private let lockFile: SystemFile
    private let state: Locked<State>
    private let logger: Logger
    /// Writes back and drops old journal pages off the hot path.
    private let retirer = DispatchQueue(label: "kanshi.journal.retire")
    /// Set in staged mode.
    private let staging: StagingArea?

    private struct State {
        var segment: SystemFile?
        var segmentIndex: UInt64
        var segmentSize: UInt64
        /// Hashes the open segment (unstaged mode; the staging area hashes otherwise).
        var hasher: SegmentHasher?
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
        var layout = try JournalLayout.read(directory: directory)
        for tmp in layout.temporaries {
            try wrap { () throws in try FileSystem.remove(directory + "/" + tmp) }
        }
        // Records a killed staged writer left in shared memory go to the file first.
        let staged = try StagingArea.recover(directory: directory, lastSegment: layout.segments.last,
                                             segmentPath: { layout.path(of: $0) })
        recoveredStagedBytes = staged?.bytes ?? 0
        layout = try JournalLayout.read(directory: directory)
        let staging = options.staged ? try StagingArea(journal: directory, capacity: options.stagingBytes) : nil
        self.staging = staging
        if let staging, staging.path == nil {
            logger.warning("no room for the journal's staging memory under /dev/shm: using private memory, so a killed server loses its last few milliseconds of records",
                           metadata: ["journal": "\(directory)"])
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
                initial = try Self.startSegment(directory: directory, index: last + 1, firstSequence: scan.nextSequence,
                                                previousHash: seal, staging: staging)
            } else if let staging {
                // The block holding the end goes back into the ring: its next write rewrites it whole.
                let from = validEnd / UInt64(StagingArea.block) * UInt64(StagingArea.block)
                var tail = [UInt8](repeating: 0, count: Int(validEnd - from))
                try wrap { () throws in
                    let plain = try SystemFile(path: path, mode: .readOnly)
                    _ = try tail.withUnsafeMutableBytes { (b) throws in try plain.read(into: b, at: from) }
                }
                let file = try Self.openForStaging(path)
                tail.withUnsafeBytes { staging.begin(file: file, segment: last, start: from, tail: $0, sha: scan.hasher) }
                initial = State(segment: file, segmentIndex: last, segmentSize: validEnd, hasher: nil, nextSequence: scan.nextSequence)
            } else {
                let file = try wrap { () throws in try SystemFile(path: path, mode: [.readWrite, .append]) }
                initial = State(segment: file, segmentIndex: last, segmentSize: validEnd,
                                hasher: SegmentHasher(file: file, offset: validEnd, state: scan.hasher),
                                nextSequence: scan.nextSequence)
            }
        } else {
            initial = try Self.startSegment(directory: directory, index: 1, firstSequence: 1,
                                            previousHash: [UInt8](repeating: 0, count: 32), staging: staging)
        }
        self.state = Locked(initial)
        self.recovery = recovery
        if let recovery {
            logger.warning("journal recovered after a crash", metadata: ["journal": "\(directory)", "detail": "\(recovery)"])
            let note = "{\"event\":\"recovered-torn-tail\",\"segment\":\"\(recovery.segmentPath)\",\"offset\":\(recovery.offset),\"bytesCut\":\(recovery.bytesCut)}"
            try appendNote(note)
            try sync()
        }
        if let staged {
            logger.warning("journal records a writer had left in memory (killed, or unable to write) were written to the journal",
                           metadata: ["journal": "\(directory)", "bytes": "\(staged.bytes)", "from": "\(staged.sharedFile)"])
            try appendNote("{\"event\":\"recovered-staged-records\",\"segment\":\(staged.segment),\"bytes\":\(staged.bytes)}")
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
        let (file, segment, end) = try state.withLock { (s) throws -> (SystemFile?, UInt64, UInt64) in
            if s.sinceCheckpoint > 0 { try writeHashRecord(&s, kind: .checkpoint) }
            return (s.segment, s.segmentIndex, s.segmentSize)
        }
        guard let file else { throw JournalError.closed(directory: directory) }
        try staging?.waitWritten(end, segment: segment)
        try wrap { () throws in try file.syncData() }
    }

    /// Syncs and closes; later appends throw `JournalError.closed`.
    public func close() throws {
        try sync()
        try state.withLock { (s) throws in
            if let staging, let file = s.segment {
                try staging.finishSegment()
                try wrap { () throws in try file.syncData() }
                staging.stop(journal: directory)
            }
            s.segment = nil
            s.hasher?.stop()
        }
        // The next writer may open the journal as soon as this returns, even
        // while a thread still holds a reference to this writer.
        try wrap { () throws in try lockFile.unlock() }
    }

    /// The shared memory a running staged writer of `directory` passes its
    /// records through, or a killed one left behind (nil if none).
    public static func stagingFile(of directory: String) -> String? {
        (try? String(contentsOfFile: directory + "/" + StagingArea.pointerName, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Tests: the staging thread stops writing (records stay in memory).
    func pauseStagingForTesting() { staging?.pause() }

    /// The shared memory file staging this writer's records, if any.
    var stagingPath: String? { staging?.path }

    /// Tests: behaves from here on as if the process had been killed: staged
    /// records are not written, the shared memory holding them is left for
    /// the next writer, and appends throw `closed`.
    func abandonForTesting() {
        state.withLock { s in
            staging?.pause()
            staging?.stop(journal: nil)
            s.segment = nil
            s.hasher?.stop()
        }
    }

    deinit {
        state.withLock { s in
            s.hasher?.stop()
            // Not closed: what is staged still goes to the file.
            if let staging, s.segment != nil {
                let finished = (try? staging.finishSegment()) != nil
                staging.stop(journal: finished ? directory : nil)
            }
        }
    }

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
            if let staging {
                _ = try staging.append(iov) {
                    var perRecord: [[UnsafeRawBufferPointer]] = []
                    var k = 0
                    for r in records {
                        perRecord.append(Array(iov[k..<(k + 1 + r.parts.count)]))
                        k += 1 + r.parts.count
                    }
                    return perRecord
                }
            } else {
                try wrap { () throws in try file.writeGathered(iov) }
            }
        }
        s.segmentSize += UInt64(written)
        s.nextSequence = first + UInt64(records.count)
        s.sinceCheckpoint += records.count
        if let hasher = s.hasher, s.segmentSize - s.hashSignalled >= 1 << 20 {
            hasher.advance(to: s.segmentSize)
            s.hashSignalled = s.segmentSize
        }
        if staging == nil { retireOldPages(&s, file: file) }
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
        let digest = try staging?.digest() ?? s.hasher!.digest(at: s.segmentSize)
        try digest.withUnsafeBytes { (d) throws in
            _ = try writeRecords(&s, [PendingRecord(kind: kind, timeNs: FileSystem.nowNs(), parts: [d])])
        }
        s.sinceCheckpoint = 0
        return digest
    }

    private func rotate(_ s: inout State) throws {
        let sealHash = try writeHashRecord(&s, kind: .seal)
        if let old = s.segment {
            try staging?.finishSegment()
            try wrap { () throws in try old.syncData() }
            if staging == nil { retireOldPages(&s, file: old, all: true) }
        }
        let next = s.segmentIndex + 1
        let oldHasher = s.hasher
        s = try Self.startSegment(directory: directory, index: next, firstSequence: s.nextSequence, previousHash: sealHash,
                                  staging: staging, reusing: oldHasher)
        logger.debug("journal segment sealed", metadata: ["segment": "\(next - 1)", "hash": "\(sealHash.hex)"])
    }

    /// Creates segment `index` and the state of a writer about to append to it.
    /// (The seal record ending the previous segment is never hashed: the new
    /// segment's hash starts from its own header.)
    private static func startSegment(directory: String, index: UInt64, firstSequence: UInt64, previousHash: [UInt8],
                                     staging: StagingArea?, reusing hasher: SegmentHasher? = nil) throws -> State {
        let header = SegmentHeader(index: index, firstSequence: firstSequence, createdNs: FileSystem.nowNs(),
                                   previousHash: previousHash).encoded()
        let path = try createSegment(directory: directory, index: index, header: header)
        var sha = SHA256()
        header.withUnsafeBytes { sha.update(bufferPointer: $0) }
        let end = UInt64(header.count)
        if let staging {
            let file = try openForStaging(path)
            header.withUnsafeBytes { staging.begin(file: file, segment: index, start: 0, tail: $0, sha: sha) }
            return State(segment: file, segmentIndex: index, segmentSize: end, hasher: nil, nextSequence: firstSequence)
        }
        let file = try wrap { () throws in try SystemFile(path: path, mode: [.readWrite, .append]) }
        if let hasher {
            hasher.reset(file: file, offset: end, state: sha)
        }
        return State(segment: file, segmentIndex: index, segmentSize: end,
                     hasher: hasher ?? SegmentHasher(file: file, offset: end, state: sha), nextSequence: firstSequence)
    }

    /// Creates a segment atomically (temporary name, then rename); returns its path.
    private static func createSegment(directory: String, index: UInt64, header: [UInt8]) throws -> String {
        let path = directory + "/" + JournalFormat.segmentName(index)
        let tmp = path + ".tmp"
        try wrap { () throws in
            let t = try SystemFile(path: tmp, mode: [.readWrite, .create, .truncate])
            try header.withUnsafeBytes { (b) throws in try t.write(b, at: 0) }
            try t.syncData()
            try FileSystem.rename(tmp, path)
            try FileSystem.syncDirectory(directory)
        }
        return path
    }

    /// Opens a segment for the staging area's positioned writes: with direct
    /// I/O where the file system allows it.
    private static func openForStaging(_ path: String) throws -> SystemFile {
        if let f = try? SystemFile(path: path, mode: [.readWrite, .direct]) { return f }
        return try wrap { () throws in try SystemFile(path: path, mode: .readWrite) }
    }
}
