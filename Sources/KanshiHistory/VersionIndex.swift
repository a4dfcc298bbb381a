import Crypto
import Foundation
import KanshiCore
import KanshiJournal
import KanshiSystem

/// One version of a 4 KiB block of the disk: where its content (or the part
/// of it a write covered) lies in the journal.
public struct BlockVersion: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// Data written by a client.
        case data = 0
        /// Zeros: a trim or write-zeroes request.
        case zero = 1
        /// The block as it was before the journal's first change to it.
        case base = 2
        /// A base record of an all-zero block.
        case baseZero = 3
    }

    /// Block number: byte offset / 4096.
    public var block: UInt64
    public var sequence: UInt64
    public var timeNs: UInt64
    /// Byte offset, in the segment file, of the data of the first sector the
    /// version covers (0 for zero kinds).
    public var dataOffset: UInt64
    /// Index of the previous version of the same block (`VersionIndex.none` if first).
    public var previous: UInt64
    public var segment: UInt32
    public var kind: Kind
    /// The 512-byte sectors of the block this version covers (bit i: sector i).
    public var sectorMask: UInt8

    public var isBase: Bool { kind == .base || kind == .baseZero }
    public var isZero: Bool { kind == .zero || kind == .baseZero }
    /// The first sector (0...7) the version covers.
    public var firstSector: Int { sectorMask.trailingZeroBitCount }
}

/// The block → versions index of a journal: for every 4 KiB block, a
/// back-pointer chain from its newest version to its oldest, so the content
/// of any block at any past moment is found without replaying the journal.
///
/// The index lives beside the segments as `index-versions.kix` (a cache:
/// deleting it only costs a rebuild) and is brought up to date with the
/// records appended since it was last written each time it is opened.
///
/// File layout (little-endian): a 64-byte header
/// ```
///  0  8 magic "KANSHIV1"
///  8 32 SHA-256 of the journal's first segment header (which journal this is)
/// 40  8 number of versions
/// 48  8 segment of the next record to index
/// 56  8 byte offset of the next record to index in that segment
/// ```
/// (the sequence number of the next record is implied by the last version's,
/// and stored again at 64 as 8 bytes, making the header 72 bytes), then
/// 48-byte entries: block, sequence, time, data offset, previous (8 bytes
/// each), segment (4), kind (1), sector mask (1), 2 reserved.
public final class VersionIndex: @unchecked Sendable {
    public static let none = UInt64.max
    public static let fileName = "index-versions.kix"
    static let imageFileName = "index-image.txt"
    static let magic = Array("KANSHIV1".utf8)
    static let headerLength = 72
    static let entryLength = 48

    public let directory: String
    /// Every version, in journal order.
    public private(set) var versions: [BlockVersion] = []
    /// Newest version of each block that has one.
    public private(set) var newest: [UInt64: UInt64] = [:]
    /// Where indexing continues.
    public private(set) var position: JournalTail.Position
    /// The time of the last record indexed (any kind), and its sequence number.
    public private(set) var lastTimeNs: UInt64 = 0
    public private(set) var lastSequence: UInt64 = 0
    /// The first record's time.
    public private(set) var firstTimeNs: UInt64?
    /// The image named by the last `serve-start` note, if any.
    public private(set) var imagePath: String?
    /// True when the index could not be saved (e.g. a read-only journal directory).
    public private(set) var inMemoryOnly = false
    private var savedCount = 0
    private let identity: [UInt8]

    /// Opens (or builds) the index of `directory` and brings it up to date.
    /// `progress` is called now and then with the records indexed so far.
    public init(journal directory: String, progress: ((Int) -> Void)? = nil) throws {
        self.directory = directory
        self.identity = try Self.journalIdentity(directory)
        self.position = JournalTail.Position(segment: 1, offset: UInt64(JournalFormat.segmentHeaderLength), nextSequence: nil)
        if !loadSaved() {
            versions = []
            newest = [:]
            position = JournalTail.Position(segment: 1, offset: UInt64(JournalFormat.segmentHeaderLength), nextSequence: nil)
            savedCount = 0
        }
        try update(progress: progress)
    }

    var path: String { directory + "/" + Self.fileName }

    /// SHA-256 of the first segment's header.
    static func journalIdentity(_ directory: String) throws -> [UInt8] {
        do { _ = try JournalReader(directory: directory) } catch let e as JournalError { throw HistoryError.journal(e) }
        let first = directory + "/" + JournalFormat.segmentName(1)
        guard FileSystem.exists(first) else {
            throw HistoryError.emptyJournal(directory: directory)
        }
        let file = try sys { try SystemFile(path: first, mode: .readOnly) }
        var header = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderLength)
        let n = try header.withUnsafeMutableBytes { b in try sys { try file.read(into: b, at: 0) } }
        guard n == header.count else { throw HistoryError.emptyJournal(directory: directory) }
        return Array(SHA256.hash(data: header))
    }

    /// Reads the saved index; false when there is none or it is of another
    /// journal or damaged (then it is rebuilt).
    private func loadSaved() -> Bool {
        guard FileSystem.exists(path), let file = try? SystemFile(path: path, mode: .readOnly),
              let size = try? file.size(), size >= UInt64(Self.headerLength) else { return false }
        var header = [UInt8](repeating: 0, count: Self.headerLength)
        guard (try? header.withUnsafeMutableBytes { try file.read(into: $0, at: 0) }) == Self.headerLength,
              Array(header[0..<8]) == Self.magic, Array(header[8..<40]) == identity else { return false }
        let h = header.withUnsafeBytes { b in
            (count: b.loadUnaligned(fromByteOffset: 40, as: UInt64.self).littleEndian,
             segment: b.loadUnaligned(fromByteOffset: 48, as: UInt64.self).littleEndian,
             offset: b.loadUnaligned(fromByteOffset: 56, as: UInt64.self).littleEndian,
             next: b.loadUnaligned(fromByteOffset: 64, as: UInt64.self).littleEndian)
        }
        let count = Int(h.count)
        guard count >= 0, UInt64(Self.headerLength) + UInt64(count) * UInt64(Self.entryLength) <= size else { return false }
        // The journal must still reach the indexed position (a crash recovery may have cut it).
        let segPath = directory + "/" + JournalFormat.segmentName(h.segment)
        guard let seg = try? SystemFile(path: segPath, mode: .readOnly), let segSize = try? seg.size(), segSize >= h.offset else { return false }
        var raw = [UInt8](repeating: 0, count: count * Self.entryLength)
        if count > 0 {
            guard (try? raw.withUnsafeMutableBytes { try readFully(file, into: $0, at: UInt64(Self.headerLength)) }) != nil else { return false }
        }
        var loaded: [BlockVersion] = []
        loaded.reserveCapacity(count)
        var heads: [UInt64: UInt64] = [:]
        let ok: Bool = raw.withUnsafeBytes { b in
            for i in 0..<count {
                let o = i * Self.entryLength
                guard let kind = BlockVersion.Kind(rawValue: b[o + 44]) else { return false }
                let v = BlockVersion(block: b.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian,
                                     sequence: b.loadUnaligned(fromByteOffset: o + 8, as: UInt64.self).littleEndian,
                                     timeNs: b.loadUnaligned(fromByteOffset: o + 16, as: UInt64.self).littleEndian,
                                     dataOffset: b.loadUnaligned(fromByteOffset: o + 24, as: UInt64.self).littleEndian,
                                     previous: b.loadUnaligned(fromByteOffset: o + 32, as: UInt64.self).littleEndian,
                                     segment: b.loadUnaligned(fromByteOffset: o + 40, as: UInt32.self).littleEndian,
                                     kind: kind, sectorMask: b[o + 45])
                guard v.previous == Self.none || v.previous < UInt64(i) else { return false }
                heads[v.block] = UInt64(i)
                loaded.append(v)
            }
            return true
        }
        guard ok else { return false }
        versions = loaded
        newest = heads
        position = JournalTail.Position(segment: h.segment, offset: h.offset, nextSequence: h.next == 0 ? nil : h.next)
        savedCount = count
        if let last = loaded.last { lastTimeNs = last.timeNs }
        lastSequence = h.next > 0 ? h.next - 1 : 0
        firstTimeNs = loaded.first?.timeNs
        if let side = try? SystemFile(path: directory + "/" + Self.imageFileName, mode: .readOnly), let n = try? side.size(), n < 65536 {
            var b = [UInt8](repeating: 0, count: Int(n))
            if (try? b.withUnsafeMutableBytes { try side.read(into: $0, at: 0) }) == Int(n) { imagePath = String(decoding: b, as: UTF8.self) }
        }
        return true
    }

    /// Indexes the records appended since the last update and saves the index.
    public func update(progress: ((Int) -> Void)? = nil) throws {
        let fromSaved = position.nextSequence != nil
        let tail = try JournalTail(directory: directory, from: position)
        var seen = 0
        do {
            try tail.poll { r in
                seen += 1
                if seen % 65536 == 0 { progress?(seen) }
                if firstTimeNs == nil { firstTimeNs = r.timeNs }
                lastTimeNs = r.timeNs
                lastSequence = r.sequence
                try add(r)
            }
        } catch let error as JournalError {
            guard fromSaved, seen == 0 else { throw HistoryError.journal(error) }
            // The saved index does not fit the journal any more: rebuild it.
            versions = []; newest = [:]; savedCount = 0; firstTimeNs = nil
            position = JournalTail.Position(segment: 1, offset: UInt64(JournalFormat.segmentHeaderLength), nextSequence: nil)
            try update(progress: progress)
            return
        }
        position = tail.position
        save()
    }

    private func add(_ r: JournalRecord) throws {
        let recordDataBase = r.offset + UInt64(JournalFormat.recordHeaderLength)
        switch r.kind {
        case .blockWrite:
            guard let (e, data) = try BlockRecords.decode(r) else { return }
            let start = recordDataBase + UInt64(data.baseAddress! - r.payload.baseAddress!)
            addRange(lba: e.lba, length: UInt64(e.length), r: r, kind: .data, dataStart: start)
        case .blockTrim, .blockWriteZeroes:
            guard let (e, _) = try BlockRecords.decode(r) else { return }
            addRange(lba: e.lba, length: UInt64(e.length), r: r, kind: .zero, dataStart: nil)
        case .blockBase:
            guard let (lba, length, data) = try BlockRecords.decodeBase(r) else { return }
            if let data {
                let start = recordDataBase + UInt64(data.baseAddress! - r.payload.baseAddress!)
                addRange(lba: lba, length: UInt64(length), r: r, kind: .base, dataStart: start)
            } else {
                addRange(lba: lba, length: UInt64(length), r: r, kind: .baseZero, dataStart: nil)
            }
        case .note:
            // Remember the image the last server served (its start note names it).
            let text = String(decoding: r.payload, as: UTF8.self)
            if text.contains("\"serve-start\""), let path = Self.jsonString(text, key: "image") { imagePath = path }
        default:
            return
        }
    }

    /// The string value of `key` in a JSON object.
    static func jsonString(_ json: String, key: String) -> String? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return nil }
        return o[key] as? String
    }

    private func addRange(lba: UInt64, length: UInt64, r: JournalRecord, kind: BlockVersion.Kind, dataStart: UInt64?) {
        guard length > 0 else { return }
        let startByte = lba * 512
        let endByte = startByte + length
        var block = startByte / 4096
        while block * 4096 < endByte {
            let blockStart = block * 4096
            let from = max(startByte, blockStart)
            let to = min(endByte, blockStart + 4096)
            let firstSector = Int((from - blockStart) / 512)
            let lastSector = Int((to - blockStart + 511) / 512)  // exclusive
            var mask: UInt8 = 0
            for s in firstSector..<lastSector { mask |= 1 << UInt8(s) }
            let v = BlockVersion(block: block, sequence: r.sequence, timeNs: r.timeNs,
                                 dataOffset: dataStart.map { $0 + (from - startByte) } ?? 0,
                                 previous: newest[block] ?? Self.none, segment: UInt32(r.segment),
                                 kind: kind, sectorMask: mask)
            newest[block] = UInt64(versions.count)
            versions.append(v)
            block += 1
        }
    }

    /// Appends the new versions to the index file and rewrites its header.
    /// A journal directory that cannot be written keeps the index in memory.
    private func save() {
        do {
            let file = try SystemFile(path: path, mode: [.readWrite, .create])
            guard try file.tryLockExclusive() else { inMemoryOnly = true; return }
            if savedCount == 0 { try file.truncate(to: 0) }
            if versions.count > savedCount {
                var w = [UInt8]()
                w.reserveCapacity((versions.count - savedCount) * Self.entryLength)
                for v in versions[savedCount...] {
                    w.appendLE(v.block); w.appendLE(v.sequence); w.appendLE(v.timeNs); w.appendLE(v.dataOffset); w.appendLE(v.previous)
                    w.appendLE(v.segment); w.append(v.kind.rawValue); w.append(v.sectorMask); w.append(0); w.append(0)
                }
                try w.withUnsafeBytes { try file.write($0, at: UInt64(Self.headerLength + savedCount * Self.entryLength)) }
            }
            var h = Self.magic + identity
            h.appendLE(UInt64(versions.count)); h.appendLE(position.segment); h.appendLE(position.offset)
            h.appendLE(position.nextSequence ?? 0)
            try h.withUnsafeBytes { try file.write($0, at: 0) }
            savedCount = versions.count
            if let imagePath {
                let side = try SystemFile(path: directory + "/" + Self.imageFileName, mode: [.readWrite, .create, .truncate])
                try Array(imagePath.utf8).withUnsafeBytes { try side.write($0, at: 0) }
            }
        } catch {
            inMemoryOnly = true
        }
    }

    /// The versions of `block`, newest first.
    public func chain(of block: UInt64) -> ChainSequence {
        ChainSequence(versions: versions, start: newest[block] ?? Self.none)
    }

    public struct ChainSequence: Sequence, IteratorProtocol {
        let versions: [BlockVersion]
        var cursor: UInt64
        init(versions: [BlockVersion], start: UInt64) { self.versions = versions; self.cursor = start }
        public mutating func next() -> BlockVersion? {
            guard cursor != VersionIndex.none else { return nil }
            let v = versions[Int(cursor)]
            cursor = v.previous
            return v
        }
    }
}

private func readFully(_ file: SystemFile, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
    var done = 0
    while done < buffer.count {
        let n = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset + UInt64(done))
        if n == 0 { throw HistoryError.truncatedIndex }
        done += n
    }
}

extension Array where Element == UInt8 {
    /// Appends `v`'s bytes, little-endian.
    public mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
