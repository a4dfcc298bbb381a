import KanshiSystem

/// Where the pieces of a file were written, found by sector hashes.
public struct FileSearchResult: Sendable {
    /// One place a piece of the file was written.
    public struct Occurrence: Sendable {
        public var lba: UInt64
        /// When it was written; 0 for content already on the disk when
        /// recording began (found in a base record).
        public var timeNs: UInt64
        public var sequence: UInt64
        /// When it was overwritten, if it was.
        public var goneNs: UInt64?

        public init(lba: UInt64, timeNs: UInt64, sequence: UInt64, goneNs: UInt64?) {
            self.lba = lba; self.timeNs = timeNs; self.sequence = sequence; self.goneNs = goneNs
        }
    }

    /// A 4 KiB piece of the file.
    public struct Block: Sendable {
        public var fileOffset: UInt64
        public var bytes: Int
        /// Sectors of the piece that carry information (not zeros or a pattern).
        public var probativeSectors: Int
        /// Of those, the sectors found somewhere in the journal.
        public var foundSectors: Int
        /// Places the whole piece was written as one 4 KiB block (if it is a whole piece).
        public var wholeBlock: [Occurrence]
        /// Places its first probative sector was written (the others follow in `sectors`).
        public var sectors: [[Occurrence]]
    }

    public var path: String
    public var size: UInt64
    public var blocks: [Block]
    public var probativeSectors: Int
    public var foundSectors: Int
    /// Fraction of probative sectors found, 0...1 (1 for a file with none).
    public var coverage: Double { probativeSectors == 0 ? 1 : Double(foundSectors) / Double(probativeSectors) }
    /// Periods when every probative sector of the file was on the disk at
    /// once (start, end; nil end: still). A start of 0: before recording began.
    public var completeCopies: [(from: UInt64, to: UInt64?)]
    /// Sectors whose hash is too common to tell where they came from.
    public var commonSectors: Int
}

/// The pieces of a file to look for: per 4 KiB piece, the hash of the whole
/// piece and of each probative sector (as `SectorHashIndex` hashes them).
public struct FileDigest: Sendable {
    public struct Piece: Sendable {
        public var fileOffset: UInt64
        public var bytes: Int
        /// The whole piece's hash, if it is a whole, probative 4 KiB piece.
        public var whole: UInt64?
        /// The hashes of its probative sectors, in order.
        public var sectors: [UInt64]
    }

    public var path: String
    public var size: UInt64
    public var pieces: [Piece]

    /// Reads and hashes the file at `path` (the last piece padded with zeros, as a file system's slack usually is).
    public init(file path: String) throws {
        let file: SystemFile
        do { file = try SystemFile(path: path, mode: .readOnly) } catch {
            throw HistoryError.badImage(path: path, reason: "cannot open the file to search for: \(error)")
        }
        self.path = path
        size = try sys { try file.size() }
        pieces = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var at: UInt64 = 0
        while at < size {
            let n = try chunk.withUnsafeMutableBytes { b in try sys { try file.read(into: b, at: at) } }
            if n == 0 { break }
            let padded = (n + 511) / 512 * 512
            if padded > n { for k in n..<padded { chunk[k] = 0 } }
            var off = 0
            while off < padded {
                let len = min(4096, padded - off)
                var piece = Piece(fileOffset: at + UInt64(off), bytes: min(4096, n - off), whole: nil, sectors: [])
                chunk.withUnsafeBytes { b in
                    if len == 4096 {
                        let whole = UnsafeRawBufferPointer(rebasing: b[off..<off + 4096])
                        if SectorHashIndex.isProbative(whole) { piece.whole = SectorHashIndex.hash64(whole) }
                    }
                    for s in stride(from: off, to: off + len, by: 512) {
                        let sector = UnsafeRawBufferPointer(rebasing: b[s..<s + 512])
                        if SectorHashIndex.isProbative(sector) { piece.sectors.append(SectorHashIndex.hash64(sector)) }
                    }
                }
                pieces.append(piece)
                off += len
            }
            at += UInt64(n)
        }
    }
}

extension FileSearchResult.Occurrence: Equatable, Comparable {
    public static func < (a: Self, b: Self) -> Bool { (a.sequence, a.lba) < (b.sequence, b.lba) }
}

extension FileSearchResult.Block: Equatable {}

extension FileSearchResult: Equatable {
    /// Every field the same (the search on one journal and the fleet's are compared with this).
    public static func == (a: Self, b: Self) -> Bool {
        a.path == b.path && a.size == b.size && a.blocks == b.blocks && a.probativeSectors == b.probativeSectors
            && a.foundSectors == b.foundSectors && a.commonSectors == b.commonSectors
            && a.completeCopies.elementsEqual(b.completeCopies) { $0.from == $1.from && $0.to == $1.to }
    }
}

extension FileSearchResult {
    /// The result for a file from where its hashes were found: `sectorHits`
    /// gives a sector hash's occurrences, or nil when it is too common to
    /// tell; `wholeHits` a whole piece's. Occurrences are listed in order of
    /// sequence number. Shared by the search on one journal and the fleet's.
    public init(_ digest: FileDigest, sectorHits: (UInt64) -> [Occurrence]?, wholeHits: (UInt64) -> [Occurrence]) {
        self.init(path: digest.path, size: digest.size, blocks: [], probativeSectors: 0, foundSectors: 0, completeCopies: [], commonSectors: 0)
        // Per probative sector of the file: its live intervals.
        var intervals: [[(UInt64, UInt64?)]] = []
        for p in digest.pieces {
            var block = Block(fileOffset: p.fileOffset, bytes: p.bytes, probativeSectors: 0, foundSectors: 0,
                              wholeBlock: p.whole.map { wholeHits($0).sorted() } ?? [], sectors: [])
            for h in p.sectors {
                guard let occ = sectorHits(h)?.sorted() else { commonSectors += 1; continue }
                block.probativeSectors += 1
                if !occ.isEmpty { block.foundSectors += 1 }
                block.sectors.append(occ)
                intervals.append(occ.map { ($0.timeNs, $0.goneNs) })
            }
            probativeSectors += block.probativeSectors
            foundSectors += block.foundSectors
            blocks.append(block)
        }
        completeCopies = SectorHashIndex.completeCopies(intervals)
    }
}

extension SectorHashIndex {
    /// Searches the journal for the pieces of the file at `path`.
    public func search(file path: String) throws -> FileSearchResult {
        try search(FileDigest(file: path))
    }

    /// Searches the journal for the pieces of a file.
    public func search(_ digest: FileDigest) -> FileSearchResult {
        FileSearchResult(digest, sectorHits: { h in
            let hits = lookup(h).filter { $0.piece < Self.wholeBlock }
            return hits.count > maxOccurrences ? nil : hits.map { occurrence($0, sector: Int($0.piece)) }
        }, wholeHits: { h in
            lookup(h).filter { $0.piece == Self.wholeBlock }.map { occurrence($0, sector: 0) }
        })
    }

    /// The occurrence of a hash entry: where and when its data was written,
    /// and when the newer version of that sector replaced it.
    private func occurrence(_ e: Entry, sector: Int) -> FileSearchResult.Occurrence {
        let v = versions.versions[e.version]
        let s = e.piece == Self.wholeBlock ? 0 : Int(e.piece)
        var gone: UInt64?
        // Walk the block's chain from the newest version down to this one;
        // the last covering version seen before reaching it is its successor.
        var cursor = versions.newest[v.block] ?? VersionIndex.none
        while cursor != VersionIndex.none && cursor > UInt64(e.version) {
            let w = versions.versions[Int(cursor)]
            let covers = e.piece == Self.wholeBlock ? w.sectorMask != 0 : w.sectorMask & (1 << UInt8(s)) != 0
            if !w.isBase && covers { gone = w.timeNs }
            cursor = w.previous
        }
        return FileSearchResult.Occurrence(lba: v.block * 8 + UInt64(s), timeNs: v.isBase ? 0 : v.timeNs,
                                           sequence: v.sequence, goneNs: gone)
    }

    /// Sweeps the live intervals of every sector: when were all present at once?
    public static func completeCopies(_ sectors: [[(UInt64, UInt64?)]]) -> [(from: UInt64, to: UInt64?)] {
        guard !sectors.isEmpty, sectors.allSatisfy({ !$0.isEmpty }) else { return [] }
        var events: [(time: UInt64, sector: Int, delta: Int)] = []
        for (j, list) in sectors.enumerated() {
            for (from, to) in list {
                events.append((from, j, 1))
                if let to { events.append((to, j, -1)) }
            }
        }
        events.sort { $0.time < $1.time }
        var count = [Int](repeating: 0, count: sectors.count)
        var present = 0
        var out: [(from: UInt64, to: UInt64?)] = []
        var i = 0
        while i < events.count {
            let t = events[i].time
            while i < events.count && events[i].time == t {
                let e = events[i]
                let before = count[e.sector]
                count[e.sector] += e.delta
                if before == 0 && count[e.sector] > 0 { present += 1 }
                if before > 0 && count[e.sector] == 0 { present -= 1 }
                i += 1
            }
            let complete = present == sectors.count
            if complete && (out.last.map { $0.to != nil } ?? true) { out.append((t, nil)) }
            if !complete, let last = out.last, last.to == nil { out[out.count - 1].to = t }
        }
        return out
    }
}
