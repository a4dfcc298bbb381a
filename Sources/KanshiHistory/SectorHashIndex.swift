import CXXHash
import KanshiJournal
import KanshiSystem

/// The hash of every written 512-byte sector and every wholly written 4 KiB
/// block in a journal, for finding where pieces of a file were written.
///
/// Non-probative data is not indexed: blocks of one repeated byte (zeros
/// among them) or of a short repeated pattern (period up to 256 bytes) say
/// nothing about which file they came from. Hashes that occur more than
/// `maxOccurrences` times are reported as non-probative at lookup.
///
/// Hash: XXH3-64 (libxxhash). An entry is 16 bytes: the hash and a reference
/// (version number << 4 | piece, piece 0–7 a sector of the block, 8 the
/// whole block). Kept in `index-hashes.kix` beside the segments (magic
/// "KANSHIH1", the journal identity, the number of versions hashed, the
/// number of entries; then the entries), brought up to date on open.
public final class SectorHashIndex: @unchecked Sendable {
    public static let fileName = "index-hashes.kix"
    static let magic = Array("KANSHIH1".utf8)
    static let headerLength = 56
    public static let wholeBlock: UInt8 = 8

    public struct Entry: Sendable {
        public var hash: UInt64
        public var ref: UInt64
        public var version: Int { Int(ref >> 4) }
        public var piece: UInt8 { UInt8(ref & 15) }
    }

    public let versions: VersionIndex
    /// Sorted by hash.
    public let entries: [Entry]
    /// The entries' hashes alone, in the same order (a lookup scans these).
    private let hashes: [UInt64]
    /// `buckets[h >> shift]` is the first entry whose hash has that prefix
    /// (about 8 entries per bucket: one cache line of `hashes`).
    private let buckets: [UInt32]
    private let shift: UInt64
    public let maxOccurrences: Int
    /// True when the index could not be saved (e.g. a read-only journal directory).
    public let inMemoryOnly: Bool

    /// Opens the hash index of `versions`' journal, hashing the versions not hashed yet.
    public init(versions: VersionIndex, maxOccurrences: Int = 256, progress: ((Int, Int) -> Void)? = nil) throws {
        self.versions = versions
        self.maxOccurrences = maxOccurrences
        let identity = try VersionIndex.journalIdentity(versions.directory)
        var hashedVersions = 0
        var loaded: [Entry] = []
        let path = versions.directory + "/" + Self.fileName
        if let f = try? SystemFile(path: path, mode: .readOnly), let size = try? f.size(), size >= UInt64(Self.headerLength) {
            var h = [UInt8](repeating: 0, count: Self.headerLength)
            if (try? h.withUnsafeMutableBytes { try f.read(into: $0, at: 0) }) == Self.headerLength,
               Array(h[0..<8]) == Self.magic, Array(h[8..<40]) == identity {
                let hv = h.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 40, as: UInt64.self).littleEndian) }
                let n = h.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 48, as: UInt64.self).littleEndian) }
                if hv <= versions.versions.count, UInt64(Self.headerLength + n * 16) <= size {
                    loaded = [Entry](repeating: Entry(hash: 0, ref: 0), count: n)
                    let ok = (try? loaded.withUnsafeMutableBytes { b -> Bool in
                        var done = 0
                        while done < b.count {
                            let got = try f.read(into: UnsafeMutableRawBufferPointer(rebasing: b[done...]), at: UInt64(Self.headerLength + done))
                            if got == 0 { return false }
                            done += got
                        }
                        return true
                    }) ?? false
                    if ok && loaded.allSatisfy({ $0.version < hv }) { hashedVersions = hv } else { loaded = [] }
                }
            }
        }
        let savedEntries = loaded.count
        let fresh = try Self.hash(versions, from: hashedVersions, progress: progress)
        loaded += fresh
        var saved = true
        if !fresh.isEmpty || hashedVersions != versions.versions.count || savedEntries == 0 {
            saved = Self.save(path: path, identity: identity, hashedVersions: versions.versions.count, all: loaded,
                              appendFrom: hashedVersions == 0 ? 0 : savedEntries)
        }
        inMemoryOnly = !saved
        loaded.sort { $0.hash < $1.hash }
        entries = loaded
        hashes = loaded.map(\.hash)
        (buckets, shift) = Self.buckets(hashes)
    }

    /// Hashes the data of versions `from...`.
    static func hash(_ index: VersionIndex, from: Int, progress: ((Int, Int) -> Void)?) throws -> [Entry] {
        var out: [Entry] = []
        var files: [UInt32: SystemFile] = [:]
        var block = [UInt8](repeating: 0, count: 4096)
        let total = index.versions.count
        for i in from..<total {
            let v = index.versions[i]
            if v.isZero { continue }
            if (i - from) % 65536 == 0 { progress?(i - from, total - from) }
            let file: SystemFile
            if let f = files[v.segment] { file = f } else {
                file = try sys { try SystemFile(path: index.directory + "/" + JournalFormat.segmentName(UInt64(v.segment)), mode: .readOnly) }
                files[v.segment] = file
            }
            let first = v.firstSector
            let count = 8 - first - v.sectorMask.leadingZeroBitCount
            let bytes = count * 512
            let n = try block.withUnsafeMutableBytes { b in
                try sys { try file.read(into: UnsafeMutableRawBufferPointer(rebasing: b[0..<bytes]), at: v.dataOffset) }
            }
            guard n == bytes else { continue }
            block.withUnsafeBytes { b in
                for k in 0..<count {
                    let sector = UnsafeRawBufferPointer(rebasing: b[k * 512..<(k + 1) * 512])
                    if isProbative(sector) {
                        out.append(Entry(hash: hash64(sector), ref: UInt64(i) << 4 | UInt64(first + k)))
                    }
                }
                if count == 8 {
                    let whole = UnsafeRawBufferPointer(rebasing: b[0..<4096])
                    if isProbative(whole) { out.append(Entry(hash: hash64(whole), ref: UInt64(i) << 4 | UInt64(wholeBlock))) }
                }
            }
        }
        return out
    }

    private static func save(path: String, identity: [UInt8], hashedVersions: Int, all: [Entry], appendFrom: Int) -> Bool {
        do {
            let f = try SystemFile(path: path, mode: [.readWrite, .create])
            guard try f.tryLockExclusive() else { return false }
            if appendFrom == 0 { try f.truncate(to: 0) }
            if all.count > appendFrom {
                try all[appendFrom...].withUnsafeBytes { try f.write($0, at: UInt64(Self.headerLength + appendFrom * 16)) }
            }
            var h = Self.magic + identity
            h.appendLE(UInt64(hashedVersions))
            h.appendLE(UInt64(all.count))
            try h.withUnsafeBytes { try f.write($0, at: 0) }
            return true
        } catch {
            return false
        }
    }

    /// A prefix table with about one bucket per entry.
    private static func buckets(_ entries: [UInt64]) -> ([UInt32], UInt64) {
        let n = entries.count
        var bits = 1
        while (8 << bits) < n && bits < 26 { bits += 1 }
        let shift = UInt64(64 - bits)
        var buckets = [UInt32](repeating: 0, count: (1 << bits) + 1)
        var e = 0
        for b in 0...(1 << bits) {
            while e < n && (entries[e] >> shift) < UInt64(b) { e += 1 }
            buckets[b] = UInt32(e)
        }
        return (buckets, shift)
    }

    /// The positions in `entries` of the entries with this hash.
    @inline(__always)
    public func range(of hash: UInt64) -> Range<Int> {
        buckets.withUnsafeBufferPointer { bk in
            hashes.withUnsafeBufferPointer { en in
                guard !en.isEmpty else { return 0..<0 }
                let b = Int(hash >> shift)
                var lo = Int(bk[b])
                let hi = Int(bk[b + 1])
                while lo < hi && en[lo] < hash { lo += 1 }
                var end = lo
                while end < hi && en[end] == hash { end += 1 }
                return lo..<end
            }
        }
    }

    /// The entries with this hash.
    public func lookup(_ hash: UInt64) -> ArraySlice<Entry> { entries[range(of: hash)] }

    /// Bytes the index takes per hash, in memory and on disk.
    public var bytesPerHash: Double {
        entries.isEmpty ? 0 : Double(entries.count * 16 + buckets.count * 4) / Double(entries.count)
        // (`hashes` repeats the entries' hash field to keep lookups in one cache line;
        // an on-disk index needs only the 16-byte entries and is what is counted.)
    }

    public static func hash64(_ data: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(data.baseAddress, data.count)
    }

    /// False for data of one repeated byte or a short repeated pattern.
    public static func isProbative(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let p = data.baseAddress, data.count > 1 else { return false }
        var period = 1
        while period <= 256 && period < data.count {
            if memcmp(p, p + period, data.count - period) == 0 { return false }
            period *= 2
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#endif
