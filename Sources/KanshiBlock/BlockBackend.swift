import KanshiCore
import KanshiHistory
import KanshiJournal
import KanshiSystem
import Logging

/// What the NBD server serves: a table of operations on a byte-addressed
/// disk (as an nbdkit plugin is). Implementations are called from several
/// event-loop threads at once and must be thread-safe.
public protocol BlockBackend: Sendable {
    var size: UInt64 { get }
    var isReadOnly: Bool { get }
    /// Reads `buffer.count` bytes at `offset` (already checked to be in range).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, connection: UInt32) throws
    /// Writes `data` at `offset`. `fua` is recorded; the caller makes the
    /// write durable with `sync()` before acknowledging it. (Keeping the
    /// write itself on the caller's thread keeps the journal's order and the
    /// image's order the same.)
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool, connection: UInt32) throws
    /// Writes several buffers (no FUA), in order, as one group: with a
    /// journal, one append for all of them.
    func write(batch: [(data: UnsafeRawBufferPointer, offset: UInt64)], connection: UInt32) throws
    /// Records a flush request and makes every completed write durable.
    func flush(connection: UInt32) throws
    /// Makes every completed write durable (for FUA requests; not recorded).
    func sync() throws
    func trim(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws
    func writeZeroes(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws
    /// Records a session event (connect, disconnect) when there is a journal.
    func note(_ json: String)
}

extension BlockBackend {
    public func write(batch: [(data: UnsafeRawBufferPointer, offset: UInt64)], connection: UInt32) throws {
        for w in batch { try write(w.data, at: w.offset, fua: false, connection: connection) }
    }
}

/// Errors of the block layer, each saying what to fix.
public enum BlockError: Error, CustomStringConvertible {
    case system(SystemError)
    case journal(JournalError)
    case badImage(path: String, reason: String)
    case readOnly

    public var description: String {
        switch self {
        case .system(let e): e.description
        case .journal(let e): e.description
        case .badImage(let p, let why): "\(p): \(why)"
        case .readOnly: "the export is read-only"
        }
    }
}

/// A raw disk image whose every access is recorded in a journal (or not,
/// when `journal` is nil: the baseline for benchmarks).
///
/// Writes go to the journal first, then to the image: a write is never in
/// the image without its record. Flush syncs the journal, then the image.
public final class JournaledDisk: BlockBackend {
    public let image: SystemFile
    public let journal: JournalWriter?
    public let size: UInt64
    public let isReadOnly: Bool

    public init(imagePath: String, journal: JournalWriter?, readOnly: Bool) throws {
        let file: SystemFile
        do {
            file = try SystemFile(path: imagePath, mode: readOnly ? .readOnly : .readWrite)
        } catch {
            throw BlockError.badImage(path: imagePath, reason: "cannot open the image: \(error)")
        }
        let size = try Self.sizeOf(file)
        guard size >= 512 else { throw BlockError.badImage(path: imagePath, reason: "the image is \(size) bytes; it must hold at least one 512-byte sector") }
        guard size % 512 == 0 else {
            throw BlockError.badImage(path: imagePath, reason: "the image is \(size) bytes, not a whole number of 512-byte sectors; resize it (e.g. truncate -s) first")
        }
        self.image = file
        self.size = size
        self.journal = journal
        self.isReadOnly = readOnly
        if let journal, !readOnly {
            // Blocks the journal already holds an earlier state of (or, in a
            // journal from before base records, any change to) need no base.
            let index: VersionIndex
            do { index = try VersionIndex(journal: journal.directory) } catch {
                throw BlockError.badImage(path: journal.directory, reason: "cannot index the journal: \(error)")
            }
            bases = BaseRecorder(diskSize: size, based: index.newest.keys)
        } else {
            bases = nil
        }
    }

    private let bases: BaseRecorder?

    /// Called before each client's change is journaled; may block (back-pressure: a shipper too far
    /// behind holds writes here rather than let its backlog grow without bound). Kanshi's own
    /// repairs (rollback, undo: connections from `firstRepairConnection` up) are never held.
    /// Set before serving.
    nonisolated(unsafe) public var admission: (() -> Void)?
    /// Connection numbers Kanshi's own repairs write with (`rollbackConnection`, the selective undo's).
    public static let firstRepairConnection: UInt32 = 0xFFFF_FF00

    /// Buffers reused for base records (guarded by `bases.serializeFirstWrites`),
    /// so first writes do not fault in fresh memory each time.
    private final class BaseScratch: @unchecked Sendable {
        var data: [UInt8] = []
        var storage: [UInt8] = []
    }
    private let baseScratch = BaseScratch()

    private static func sizeOf(_ file: SystemFile) throws -> UInt64 {
        do { return try file.size() } catch { throw BlockError.system(error) }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, connection: UInt32) throws {
        let n = try sys { try image.read(into: buffer, at: offset) }
        if n < buffer.count {
            // Past the file's end (it shrank): zeros, as a sparse tail would read.
            UnsafeMutableRawBufferPointer(rebasing: buffer[n...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
        try record(.read, offset: offset, length: UInt32(buffer.count), fua: false, connection: connection)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool, connection: UInt32) throws {
        try write([(data, offset)], fua: fua, connection: connection)
    }

    public func write(batch: [(data: UnsafeRawBufferPointer, offset: UInt64)], connection: UInt32) throws {
        try write(batch, fua: false, connection: connection)
    }

    /// Journals a group of writes with one append (their records share a
    /// time), then writes them to the image in order.
    private func write(_ batch: [(data: UnsafeRawBufferPointer, offset: UInt64)], fua: Bool, connection: UInt32) throws {
        guard !isReadOnly else { throw BlockError.readOnly }
        if connection < Self.firstRepairConnection { admission?() }
        if journal != nil {
            let now = FileSystem.nowNs()
            // All the records' metadata in one buffer, so one pointer covers it.
            var metas: [UInt8] = []
            metas.reserveCapacity(batch.reduce(0) { $0 + BlockRecords.writeMetadataLength(dataLength: $1.data.count) })
            var ranges: [Range<Int>] = []
            ranges.reserveCapacity(batch.count)
            for w in batch {
                let from = metas.count
                BlockRecords.appendWriteMetadata(to: &metas, lba: w.offset / 512, data: w.data, connection: connection, fua: fua)
                ranges.append(from..<metas.count)
            }
            try metas.withUnsafeBytes { all in
                let records = zip(ranges, batch).map {
                    JournalWriter.PendingRecord(kind: .blockWrite, timeNs: now, parts: [UnsafeRawBufferPointer(rebasing: all[$0]), $1.data])
                }
                try append(records, touching: batch.map { blocks(offset: $0.offset, length: UInt64($0.data.count)) }, timeNs: now)
            }
        }
        for w in batch { try sys { try image.write(w.data, at: w.offset) } }
    }

    /// Appends `records`; the first change to a block is preceded by a base
    /// record holding the block's earlier content (read from the image
    /// before the change reaches it).
    private func append(_ records: [JournalWriter.PendingRecord], touching touched: [Range<UInt64>], timeNs: UInt64) throws {
        guard let journal else { return }
        guard let bases, touched.contains(where: { !bases.allBased($0) }) else {
            _ = try jrn { try journal.append(records) }
            return
        }
        try bases.serializeFirstWrites {
            var need: [UInt64] = []
            for r in touched { need += bases.unbased(r) }
            need.sort()
            var sorted: [UInt64] = []
            sorted.reserveCapacity(need.count)
            for b in need where sorted.last != b { sorted.append(b) }
            // Base records in pieces of at most 8 MiB, each a run of consecutive blocks.
            var runs: [Range<UInt64>] = []
            var i = 0
            while i < sorted.count {
                var j = i + 1
                while j < sorted.count && sorted[j] == sorted[j - 1] + 1 && j - i < 2048 { j += 1 }
                runs.append(sorted[i]..<sorted[j - 1] + 1)
                i = j
            }
            // The bases and the records that change those blocks, in one append.
            try withBaseRecords(runs, timeNs: timeNs) { baseRecords in
                _ = try jrn { try journal.append(baseRecords + records) }
            }
            bases.mark(sorted)
        }
    }

    /// Base records holding the current content of the blocks of `runs`
    /// (stretches of all-zero blocks as zero-flagged records without data),
    /// valid during `body`. Called under `serializeFirstWrites`, which also
    /// guards the scratch buffers.
    private func withBaseRecords(_ runs: [Range<UInt64>], timeNs: UInt64,
                                 _ body: ([JournalWriter.PendingRecord]) throws -> Void) throws {
        baseScratch.storage.removeAll(keepingCapacity: true)
        var specs: [(flags: UInt8, range: Range<Int>)] = []
        for run in runs {
            let start = run.lowerBound * 4096
            let end = min(run.upperBound * 4096, size)
            let count = Int(end - start)
            if baseScratch.data.count < count { baseScratch.data = [UInt8](repeating: 0, count: count) }
            let n = try baseScratch.data.withUnsafeMutableBytes { b in
                try sys { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<count]), at: start) }
            }
            if n < count { for k in n..<count { baseScratch.data[k] = 0 } }
            // Split into stretches of all-zero and of other blocks.
            var k = 0
            while k < count {
                let zero = isZeroBlock(baseScratch.data, k, end: count)
                var m = k
                while m < count && isZeroBlock(baseScratch.data, m, end: count) == zero { m += 4096 }
                m = min(m, count)
                let from = baseScratch.storage.count
                baseScratch.storage += BlockRecords.encodeBasePrefix(lba: (start + UInt64(k)) / 512, length: UInt32(m - k))
                if !zero { baseScratch.storage += baseScratch.data[k..<m] }
                specs.append((zero ? BlockRecords.baseFlagZero : 0, from..<baseScratch.storage.count))
                k = m
            }
        }
        try baseScratch.storage.withUnsafeBytes { all in
            try body(specs.map {
                JournalWriter.PendingRecord(kind: .blockBase, flags: $0.flags, timeNs: timeNs, parts: [UnsafeRawBufferPointer(rebasing: all[$0.range])])
            })
        }
    }

    private func isZeroBlock(_ data: [UInt8], _ at: Int, end limit: Int) -> Bool {
        data.withUnsafeBytes { p in
            let end = min(at + 4096, limit)
            var i = at
            while i + 8 <= end {
                if p.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
                i += 8
            }
            while i < end { if p[i] != 0 { return false }; i += 1 }
            return true
        }
    }

    public func flush(connection: UInt32) throws {
        try record(.flush, offset: 0, length: 0, fua: false, connection: connection)
        try sync()
    }

    public func sync() throws {
        if let journal { try jrn { try journal.sync() } }
        try sys { try image.syncData() }
    }

    public func trim(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws {
        guard !isReadOnly else { throw BlockError.readOnly }
        try record(.trim, offset: offset, length: length, fua: fua, connection: connection)
        try sys { try image.zeroRange(offset: offset, length: UInt64(length)) }
    }

    public func writeZeroes(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws {
        guard !isReadOnly else { throw BlockError.readOnly }
        try record(.writeZeroes, offset: offset, length: length, fua: fua, connection: connection)
        try sys { try image.zeroRange(offset: offset, length: UInt64(length)) }
    }

    public func note(_ json: String) {
        _ = try? journal?.appendNote(json)
    }

    private func record(_ op: BlockEvent.Operation, offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws {
        guard journal != nil else { return }
        let e = BlockEvent(operation: op, timeNs: FileSystem.nowNs(), lba: offset / 512, length: length,
                           connection: connection, fua: fua)
        let meta = BlockRecords.encodeMetadata(e)
        let changes = op == .trim || op == .writeZeroes
        try meta.withUnsafeBytes { m in
            try append([JournalWriter.PendingRecord(kind: BlockRecords.kind(of: op), timeNs: e.timeNs, parts: [m])],
                       touching: changes ? [blocks(offset: offset, length: UInt64(length))] : [], timeNs: e.timeNs)
        }
    }

    func sys<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SystemError { throw BlockError.system(e) }
    }

    func jrn<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as JournalError { throw BlockError.journal(e) }
    }
}
