import KanshiCore
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
    }

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
        guard !isReadOnly else { throw BlockError.readOnly }
        if let journal {
            let event = BlockEvent(operation: .write, timeNs: FileSystem.nowNs(), lba: offset / 512,
                                   length: UInt32(data.count), connection: connection, fua: fua,
                                   entropies: Entropy.perBlock(data))
            let meta = BlockRecords.encodeMetadata(event)
            _ = try meta.withUnsafeBytes { m in
                try jrn { try journal.append(kind: .blockWrite, flags: 0, timeNs: event.timeNs, parts: [m, data]) }
            }
        }
        try sys { try image.write(data, at: offset) }
    }

    public func write(batch: [(data: UnsafeRawBufferPointer, offset: UInt64)], connection: UInt32) throws {
        guard !isReadOnly else { throw BlockError.readOnly }
        if let journal {
            let now = FileSystem.nowNs()
            // All the records' metadata in one buffer, so one pointer covers it.
            var metas: [UInt8] = []
            var ranges: [Range<Int>] = []
            for w in batch {
                let m = BlockRecords.encodeMetadata(BlockEvent(operation: .write, timeNs: now, lba: w.offset / 512,
                                                               length: UInt32(w.data.count), connection: connection,
                                                               entropies: Entropy.perBlock(w.data)))
                ranges.append(metas.count..<metas.count + m.count)
                metas += m
            }
            try metas.withUnsafeBytes { all in
                let records = zip(ranges, batch).map {
                    JournalWriter.PendingRecord(kind: .blockWrite, timeNs: now, parts: [UnsafeRawBufferPointer(rebasing: all[$0]), $1.data])
                }
                _ = try jrn { try journal.append(records) }
            }
        }
        for w in batch { try sys { try image.write(w.data, at: w.offset) } }
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
        guard let journal else { return }
        let e = BlockEvent(operation: op, timeNs: FileSystem.nowNs(), lba: offset / 512, length: length,
                           connection: connection, fua: fua)
        let meta = BlockRecords.encodeMetadata(e)
        _ = try meta.withUnsafeBytes { m in
            try jrn { try journal.append(kind: BlockRecords.kind(of: op), timeNs: e.timeNs, parts: [m]) }
        }
    }

    private func sys<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SystemError { throw BlockError.system(e) }
    }

    private func jrn<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as JournalError { throw BlockError.journal(e) }
    }
}
