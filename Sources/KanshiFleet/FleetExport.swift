import Foundation
import KanshiHistory
import KanshiJournal
import KanshiSystem

/// Writes a journal's block records and sector hashes into the fleet's
/// Parquet tables (`FleetFormat`), through pyarrow (fleet_writer.py).
///
/// A whole journal (`export`) is verified first (record CRCs, the hash
/// chain, the seals): a journal that fails is refused before anything is
/// written. Nothing appears in the store until the whole export is written;
/// a failure leaves it as it was. An export of a recording already in the
/// store replaces its files.
public struct FleetExport {
    public struct Summary: Sendable {
        public var records = 0
        public var hashes = 0
        /// Bytes of the journal's segments.
        public var journalBytes: UInt64 = 0
        public var files = 0
        public var seconds = 0.0
        /// Where the next record starts (an incremental export continues there).
        public var end: JournalTail.Position?
    }

    public let root: String
    public let host: String
    public let recording: String
    public let python: FleetPython
    /// Rows per frame sent to the writer.
    public var batchRows = 1 << 16

    public init(root: String, host: String, recording: String, python: FleetPython) throws {
        guard RecordingName.isValid(host) else { throw FleetError("host name \"\(host)\": \(RecordingName.rule)") }
        guard RecordingName.isValid(recording) else { throw FleetError("recording name \"\(recording)\": \(RecordingName.rule)") }
        self.root = root
        self.host = host
        self.recording = recording
        self.python = python
    }

    /// Exports the whole journal at `journal` (verified first), replacing the recording's files.
    public func export(journal: String, progress: ((UInt64, UInt64) -> Void)? = nil) throws -> Summary {
        let started = Date()
        let report: VerifyReport
        do { report = try JournalVerifier.verify(directory: journal) } catch { throw FleetError("\(journal): \(error)") }
        if let p = report.problem {
            throw FleetError("\(journal) fails verification, nothing exported: \(p.location.segmentPath) at byte \(p.location.offset)\(p.location.sequence.map { " (record \($0))" } ?? ""): \(p.reason)")
        }
        let segments = UInt64(report.segments.count)
        var s = try write(mode: "replace") { add in
            let tail = try JournalTail(directory: journal)
            var last = Date()
            try tail.poll { r in
                try add(r)
                if let progress, Date().timeIntervalSince(last) > 1 { last = Date(); progress(r.segment, segments) }
            }
            return tail.position
        }
        s.journalBytes = report.bytes
        s.seconds = Date().timeIntervalSince(started)
        return s
    }

    /// Exports the records after `position` (the server's incremental export: chunks it verified on arrival).
    public func append(journal: String, from position: JournalTail.Position) throws -> Summary {
        let started = Date()
        var s = try write(mode: "append") { add in
            let tail = try JournalTail(directory: journal, from: position)
            try tail.poll { r in try add(r) }
            return tail.position
        }
        s.seconds = Date().timeIntervalSince(started)
        return s
    }

    /// Runs the writer, feeds it what `walk` passes to `add`, commits.
    private func write(mode: String, _ walk: (_ add: (JournalRecord) throws -> Void) throws -> JournalTail.Position) throws -> Summary {
        try python.require(["pyarrow", "pyarrow.parquet"], for: "writing Parquet")
        BrokenPipe.failWritesInstead()
        do { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) } catch { throw FleetError("\(root): cannot create the fleet directory: \(error)") }
        let writer = try PythonProcess(python: python, script: try FleetPython.script("fleet_writer.py"), arguments: [root, mode])
        var batches = Batches(host: host, recording: recording, rows: batchRows)
        var summary = Summary()
        var failure: Error?
        do {
            let end = try walk { r in
                try batches.add(r, summary: &summary)
                for frame in batches.ready() where !writer.send(frame) { throw FleetError("the Parquet writer stopped reading") }
            }
            for frame in batches.flushAll() + [Batches.endFrame] where !writer.send(frame) {
                throw FleetError("the Parquet writer stopped reading")
            }
            summary.end = end
        } catch {
            failure = error
        }
        if let failure {
            // No END frame: the writer removes what it wrote.
            _ = try? writer.finish()
            if let f = failure as? FleetError { throw f }
            throw FleetError("\(failure)")
        }
        let out = try writer.finish()
        summary.files = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        return summary
    }
}

/// Column buffers per table and day, cut into frames.
struct Batches {
    let host: [UInt8]
    let recording: [UInt8]
    let rows: Int
    private var blocks: [String: BlockColumns] = [:]
    private var hashes: [String: HashColumns] = [:]
    private var out: [[UInt8]] = []
    private var lastDay: (day: UInt64, name: String) = (UInt64.max, "")

    init(host: String, recording: String, rows: Int) {
        self.host = Array(host.utf8)
        self.recording = Array(recording.utf8)
        self.rows = rows
    }

    static var endFrame: [UInt8] {
        var f = FleetFormat.frameMagic
        f += [FleetFormat.endCode, 0, 0, 0]
        f += [UInt8](repeating: 0, count: 12)
        return f
    }

    private mutating func dayName(_ timeNs: UInt64) -> String {
        let d = timeNs / 86_400_000_000_000
        if d != lastDay.day { lastDay = (d, FleetFormat.day(timeNs)) }
        return lastDay.name
    }

    mutating func add(_ r: JournalRecord, summary: inout FleetExport.Summary) throws {
        let op: FleetFormat.Op
        var lba: UInt64, length: UInt32
        var data: UnsafeRawBufferPointer?
        var entropies: [Float] = []
        switch r.kind {
        case .blockRead, .blockWrite, .blockTrim, .blockWriteZeroes, .blockFlush:
            guard let (e, d) = try BlockRecords.decode(r) else { return }
            op = switch r.kind {
            case .blockRead: .read
            case .blockWrite: .write
            case .blockTrim: .trim
            case .blockWriteZeroes: .writeZeroes
            default: .flush
            }
            lba = e.lba; length = e.length; entropies = e.entropies
            if op == .write { data = d }
        case .blockBase:
            guard let (l, n, d) = try BlockRecords.decodeBase(r) else { return }
            lba = l; length = n; data = d
            op = d == nil ? .baseZero : .base
        default:
            return
        }
        let day = dayName(r.timeNs)
        let dataStart: Int64 = data.map { d in
            Int64(r.offset) + Int64(JournalFormat.recordHeaderLength) + Int64(d.baseAddress! - r.payload.baseAddress!)
        } ?? FleetFormat.noData
        let entropy = entropies.isEmpty ? Float.nan : entropies.reduce(0, +) / Float(entropies.count)
        blocks[day, default: BlockColumns()].append(seq: r.sequence, time: r.timeNs, op: op, lba: lba, length: length, entropy: entropy,
                                                      segment: r.segment, recordOffset: r.offset, dataOffset: dataStart, entropies: entropies)
        summary.records += 1
        if let data, !data.isEmpty {
            summary.hashes += hashRows(data, lba: lba, seq: r.sequence, time: r.timeNs, op: op, segment: r.segment, dataStart: dataStart, day: day)
        }
        if blocks[day]!.count >= rows { out.append(blocks[day]!.frame(FleetFormat.blocksCode, host, recording, day)); blocks[day] = nil }
        if let h = hashes[day], h.count >= rows * 4 { out.append(h.frame(FleetFormat.hashesCode, host, recording, day)); hashes[day] = nil }
    }

    /// The probative whole sectors and whole aligned 4 KiB blocks of `data`, as `SectorHashIndex` hashes them.
    private mutating func hashRows(_ data: UnsafeRawBufferPointer, lba: UInt64, seq: UInt64, time: UInt64, op: FleetFormat.Op,
                                   segment: UInt64, dataStart: Int64, day: String) -> Int {
        var h = hashes[day] ?? HashColumns()
        let before = h.count
        let sectors = data.count / 512
        for k in 0..<sectors {
            let sector = UnsafeRawBufferPointer(rebasing: data[k * 512..<(k + 1) * 512])
            guard SectorHashIndex.isProbative(sector) else { continue }
            let at = lba + UInt64(k)
            h.append(seq: seq, time: time, op: op, lba: at, piece: UInt8(at % 8), hash: SectorHashIndex.hash64(sector),
                     segment: segment, dataOffset: dataStart + Int64(k * 512))
        }
        var first = (lba + 7) / 8 * 8
        while first + 8 <= lba + UInt64(sectors) {
            let k = Int(first - lba)
            let whole = UnsafeRawBufferPointer(rebasing: data[k * 512..<k * 512 + 4096])
            if SectorHashIndex.isProbative(whole) {
                h.append(seq: seq, time: time, op: op, lba: first, piece: FleetFormat.wholeBlock, hash: SectorHashIndex.hash64(whole),
                         segment: segment, dataOffset: dataStart + Int64(k * 512))
            }
            first += 8
        }
        hashes[day] = h
        return h.count - before
    }

    mutating func ready() -> [[UInt8]] {
        defer { out = [] }
        return out
    }

    mutating func flushAll() -> [[UInt8]] {
        var frames = ready()
        for (day, b) in blocks.sorted(by: { $0.key < $1.key }) where b.count > 0 { frames.append(b.frame(FleetFormat.blocksCode, host, recording, day)) }
        for (day, h) in hashes.sorted(by: { $0.key < $1.key }) where h.count > 0 { frames.append(h.frame(FleetFormat.hashesCode, host, recording, day)) }
        blocks = [:]; hashes = [:]
        return frames
    }
}

/// A frame's head: magic, table, rows, names (fleet_writer.py reads it).
private func frameHead(_ table: UInt8, rows: Int, _ host: [UInt8], _ recording: [UInt8], _ day: String) -> [UInt8] {
    var f = FleetFormat.frameMagic
    f += [table, 0, 0, 0]
    f.appendLE(UInt32(rows))
    let d = Array(day.utf8)
    f.appendLE(UInt16(host.count)); f.appendLE(UInt16(recording.count)); f.appendLE(UInt16(d.count)); f.appendLE(UInt16(0))
    return f + host + recording + d
}

private func appendColumn<T>(_ f: inout [UInt8], _ values: [T]) {
    values.withUnsafeBytes { b in
        f.appendLE(UInt64(b.count))
        f.append(contentsOf: b)
    }
}

struct BlockColumns {
    var seq: [Int64] = [], time: [Int64] = [], op: [UInt8] = [], lba: [Int64] = [], length: [Int32] = []
    var entropy: [Float] = [], segment: [Int32] = [], recordOffset: [Int64] = [], dataOffset: [Int64] = []
    var entropyOffsets: [UInt32] = [0], entropies: [Float] = []
    var count: Int { seq.count }

    mutating func append(seq s: UInt64, time t: UInt64, op o: FleetFormat.Op, lba l: UInt64, length n: UInt32, entropy e: Float,
                         segment g: UInt64, recordOffset r: UInt64, dataOffset d: Int64, entropies es: [Float]) {
        seq.append(Int64(bitPattern: s)); time.append(Int64(bitPattern: t)); op.append(o.rawValue); lba.append(Int64(bitPattern: l))
        length.append(Int32(bitPattern: n)); entropy.append(e); segment.append(Int32(truncatingIfNeeded: g))
        recordOffset.append(Int64(bitPattern: r)); dataOffset.append(d)
        entropies += es
        entropyOffsets.append(UInt32(entropies.count))
    }

    func frame(_ table: UInt8, _ host: [UInt8], _ recording: [UInt8], _ day: String) -> [UInt8] {
        var f = frameHead(table, rows: count, host, recording, day)
        f.reserveCapacity(f.count + count * 64 + entropies.count * 4)
        appendColumn(&f, seq); appendColumn(&f, time); appendColumn(&f, op); appendColumn(&f, lba); appendColumn(&f, length)
        appendColumn(&f, entropy); appendColumn(&f, segment); appendColumn(&f, recordOffset); appendColumn(&f, dataOffset)
        // The list column: offsets then values, as one column.
        let listBytes = entropyOffsets.count * 4 + entropies.count * 4
        f.appendLE(UInt64(listBytes))
        entropyOffsets.withUnsafeBytes { f.append(contentsOf: $0) }
        entropies.withUnsafeBytes { f.append(contentsOf: $0) }
        return f
    }
}

struct HashColumns {
    var seq: [Int64] = [], time: [Int64] = [], op: [UInt8] = [], lba: [Int64] = [], piece: [UInt8] = [], hash: [Int64] = []
    var segment: [Int32] = [], dataOffset: [Int64] = []
    var count: Int { seq.count }

    mutating func append(seq s: UInt64, time t: UInt64, op o: FleetFormat.Op, lba l: UInt64, piece p: UInt8, hash h: UInt64,
                         segment g: UInt64, dataOffset d: Int64) {
        seq.append(Int64(bitPattern: s)); time.append(Int64(bitPattern: t)); op.append(o.rawValue); lba.append(Int64(bitPattern: l))
        piece.append(p); hash.append(Int64(bitPattern: h)); segment.append(Int32(truncatingIfNeeded: g)); dataOffset.append(d)
    }

    func frame(_ table: UInt8, _ host: [UInt8], _ recording: [UInt8], _ day: String) -> [UInt8] {
        var f = frameHead(table, rows: count, host, recording, day)
        f.reserveCapacity(f.count + count * 48)
        appendColumn(&f, seq); appendColumn(&f, time); appendColumn(&f, op); appendColumn(&f, lba); appendColumn(&f, piece)
        appendColumn(&f, hash); appendColumn(&f, segment); appendColumn(&f, dataOffset)
        return f
    }
}
