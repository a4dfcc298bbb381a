import Foundation
import KanshiBlock
import KanshiHistory
import KanshiJournal
import KanshiSystem
import Logging

/// The fleet benchmark: a synthetic fleet of journals made by replaying a
/// recording's block requests with a different seed per host (fresh data for
/// every write, the pattern kept), a file planted on some hosts; then, side
/// by side in one run: the Parquet export's throughput, the single-machine
/// index `kanshi search` builds, and the time a search for the file takes on
/// Spark with 1 and 2 cores and with `kanshi search` journal by journal.
public struct FleetBench {
    public struct Options: Sendable {
        public var directory: String
        public var hosts = 16
        public var mibPerHost = 256
        public var fileMiB = 10
        /// Every this many hosts holds the planted file (the first at host 2).
        public var plantEvery = 5
        /// The recording whose requests are replayed (nil: a built-in pattern, below).
        public var template: String?
        public var masters = ["local[1]", "local[2]"]
        public var rounds = 3
        public var python: FleetPython
        public init(directory: String, python: FleetPython) {
            self.directory = directory
            self.python = python
        }
    }

    public struct Result: Sendable {
        public var hosts = 0
        public var journalBytes: UInt64 = 0
        public var records = 0
        public var hashes = 0
        public var plantedHosts: [String] = []
        /// Per round: wall seconds, and CPU seconds (kanshi and its pyarrow writer) of exporting every journal.
        public var exportSeconds: [Double] = []
        public var exportCPUSeconds: [Double] = []
        /// Per round: seconds to build `kanshi search`'s indexes (versions and sector hashes) of every journal.
        public var indexSeconds: [Double] = []
        /// Per round: `kanshi search` for the file in every journal, indexes built.
        public var localSearchSeconds: [Double] = []
        /// Per master, per round: `kanshi fleet search` for the file over the whole fleet.
        public var fleetSearchSeconds: [String: [Double]] = [:]
        /// The fleet's answer equals the single-machine one on every host.
        public var sameAnswers = false
        public var differences: [String] = []
    }

    /// Makes the fleet (once: kept in the directory for later runs) and measures.
    public static func run(_ o: Options, progress: (String) -> Void) throws -> Result {
        var r = Result()
        let fleet = o.directory + "/journals", store = o.directory + "/store"
        try FileManager.default.createDirectory(atPath: fleet, withIntermediateDirectories: true)
        let file = o.directory + "/planted.bin"
        if !FileSystem.exists(file) {
            var g = SeededBytes(seed: 0x5eed_f11e)
            try Data(g.random(o.fileMiB << 20)).write(to: URL(fileURLWithPath: file))
        }
        let pattern = try o.template.map { try Pattern(journal: $0) } ?? Pattern.builtin()
        var journals: [(host: String, journal: String)] = []
        for h in 0..<o.hosts {
            let host = String(format: "host-%02d", h + 1)
            let journal = fleet + "/\(host).journal"
            let planted = h % o.plantEvery == 1
            if planted { r.plantedHosts.append(host) }
            if !FileSystem.exists(journal + "/" + JournalFormat.segmentName(1)) {
                progress("making \(host)'s journal (\(o.mibPerHost) MiB\(planted ? ", the file planted" : ""))")
                try replay(pattern, seed: UInt64(h + 1), into: journal, image: fleet + "/\(host).img", bytes: UInt64(o.mibPerHost) << 20,
                           plant: planted ? file : nil)
                try? FileManager.default.removeItem(atPath: fleet + "/\(host).img")
            }
            journals.append((host, journal))
        }
        r.hosts = journals.count
        r.journalBytes = try journals.reduce(UInt64(0)) { $0 + (try JournalVerifier.verify(directory: $1.journal).bytes) }

        for round in 0..<max(1, o.rounds) {
            // Export every journal.
            try? FileManager.default.removeItem(atPath: store)
            let cpu0 = Host.cpuSeconds()
            var t = FileSystem.monotonicNs()
            var records = 0, hashes = 0
            for (host, journal) in journals {
                let s = try FleetExport(root: store, host: host, recording: "replay", python: o.python).export(journal: journal)
                records += s.records; hashes += s.hashes
            }
            r.exportSeconds.append(Self.seconds(since: t))
            let cpu1 = Host.cpuSeconds()
            r.exportCPUSeconds.append((cpu1.own - cpu0.own) + (cpu1.children - cpu0.children))
            r.records = records; r.hashes = hashes
            progress(String(format: "round %d: exported %@ in %.1f s", round + 1, Self.mb(r.journalBytes), r.exportSeconds.last!))

            // kanshi search's own index, then its search, journal by journal.
            t = FileSystem.monotonicNs()
            var indexes: [(String, SectorHashIndex)] = []
            for (host, journal) in journals {
                try? FileManager.default.removeItem(atPath: journal + "/" + VersionIndex.fileName)
                try? FileManager.default.removeItem(atPath: journal + "/" + SectorHashIndex.fileName)
                indexes.append((host, try SectorHashIndex(versions: try VersionIndex(journal: journal))))
            }
            r.indexSeconds.append(Self.seconds(since: t))
            t = FileSystem.monotonicNs()
            let digest = try FileDigest(file: file)
            var local: [String: FileSearchResult] = [:]
            for (host, index) in indexes { local[host] = index.search(digest) }
            r.localSearchSeconds.append(Self.seconds(since: t))
            progress(String(format: "round %d: kanshi search indexed in %.1f s, searched in %.2f s", round + 1, r.indexSeconds.last!, r.localSearchSeconds.last!))

            // The same search on Spark.
            for master in o.masters {
                let search = FleetSearch(store: try FleetStore(data: store), job: try FleetJob(master: master, python: o.python))
                t = FileSystem.monotonicNs()
                let report = try search.run(files: [file])
                r.fleetSearchSeconds[master, default: []].append(Self.seconds(since: t))
                progress(String(format: "round %d: fleet search on %@ in %.1f s", round + 1, master, r.fleetSearchSeconds[master]!.last!))
                if round == 0 && master == o.masters.first {
                    r.differences = Self.compare(local: local, fleet: report)
                    r.sameAnswers = r.differences.isEmpty
                }
            }
            indexes.removeAll()
        }
        return r
    }

    /// Where the fleet's answer and the single-machine one differ (nothing: the same).
    static func compare(local: [String: FileSearchResult], fleet: FleetSearch.Report) -> [String] {
        var out: [String] = []
        let byHost = Dictionary(fleet.recordings.map { ($0.host, $0.files[0]) }, uniquingKeysWith: { a, _ in a })
        for (host, l) in local.sorted(by: { $0.key < $1.key }) {
            let found = l.foundSectors > 0 || l.blocks.contains { !$0.wholeBlock.isEmpty }
            guard let f = byHost[host] else {
                if found { out.append("\(host): found by kanshi search, not by the fleet") }
                continue
            }
            if l != f { out.append("\(host): the answers differ (coverage \(l.coverage) vs \(f.coverage))") }
        }
        for host in byHost.keys where local[host] == nil { out.append("\(host): found by the fleet only") }
        return out
    }

    static func seconds(since t: UInt64) -> Double { Double(FileSystem.monotonicNs() - t) / 1e9 }
    static func mb(_ n: UInt64) -> String { String(format: "%.0f MB", Double(n) / 1e6) }

    /// A recording's requests, in order, without their data: what is replayed.
    struct Pattern {
        enum Op { case read, write(highEntropy: Bool), trim }
        var steps: [(op: Op, lba: UInt64, length: UInt32)]
        var diskSectors: UInt64

        init(steps: [(op: Op, lba: UInt64, length: UInt32)]) {
            self.steps = steps
            diskSectors = steps.map { $0.lba + UInt64($0.length + 511) / 512 }.max() ?? 0
        }

        /// The block requests of a journal (reads, writes with whether their data looked random, trims).
        init(journal: String) throws {
            var steps: [(op: Op, lba: UInt64, length: UInt32)] = []
            try JournalReader(directory: journal).forEachBlockEvent { e, _ in
                switch e.operation {
                case .read: steps.append((.read, e.lba, e.length))
                case .write:
                    let mean = e.entropies.isEmpty ? 0 : e.entropies.reduce(0, +) / Float(e.entropies.count)
                    steps.append((.write(highEntropy: mean > 0.9), e.lba, e.length))
                case .trim, .writeZeroes: steps.append((.trim, e.lba, e.length))
                case .flush: break
                }
            }
            guard steps.contains(where: { if case .write = $0.op { true } else { false } }) else {
                throw FleetError("\(journal): the template has no writes to replay")
            }
            self.init(steps: steps)
        }

        /// A file server's day, in miniature: files written in 64 KiB–1 MiB requests (two thirds
        /// compressed or encrypted data, a third text), half read back, some overwritten, some trimmed.
        static func builtin() -> Pattern {
            var rng = SeededBytes(seed: 0x7e3a_91c5)
            var steps: [(op: Op, lba: UInt64, length: UInt32)] = []
            var lba: UInt64 = 2048
            for _ in 0..<512 {
                let fileBytes = UInt64(64 << 10) * (1 + rng.next() % 64)
                let high = rng.next() % 3 != 0
                var done: UInt64 = 0
                while done < fileBytes {
                    let n = UInt32(min(fileBytes - done, UInt64(64 << 10) * (1 + rng.next() % 16)))
                    steps.append((.write(highEntropy: high), lba + done / 512, n))
                    done += UInt64(n)
                }
                if rng.next() % 2 == 0 { steps.append((.read, lba, UInt32(min(fileBytes, 1 << 20)))) }
                if rng.next() % 8 == 0 { steps.append((.write(highEntropy: high), lba, UInt32(min(fileBytes, 256 << 10)))) }
                if rng.next() % 16 == 0 { steps.append((.trim, lba, UInt32(min(fileBytes, 1 << 20)))) }
                lba += (fileBytes + 4095) / 4096 * 8
            }
            return Pattern(steps: steps)
        }
    }

    /// Replays `pattern` until the journal holds `bytes` of data: each pass moved to another part of
    /// the disk, every write's data fresh from the host's seed (random, or text of seeded words).
    /// The planted file is written half way through, in 1 MiB requests; then a quarter of it overwritten.
    static func replay(_ pattern: Pattern, seed: UInt64, into journal: String, image: String, bytes: UInt64, plant: String?) throws {
        try? FileManager.default.removeItem(atPath: journal)
        let imageBytes = max(UInt64(4) << 30, pattern.diskSectors * 512 * 2)
        let f = try SystemFile(path: image, mode: [.readWrite, .create, .truncate])
        try f.truncate(to: imageBytes)
        let writer = try JournalWriter(directory: journal, options: .init(segmentBytes: 256 << 20), logger: Logger(label: "kanshi.bench.fleet"))
        let disk = try JournaledDisk(imagePath: image, journal: writer, readOnly: false)
        var rng = SeededBytes(seed: seed)
        var written: UInt64 = 0
        var planted = plant == nil
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var pass: UInt64 = 0
        let span = imageBytes / 512
        while written < bytes {
            let shift = (pass * 7_919 * 2048 + rng.next() % 1024 * 8) % max(span / 2, 8) / 8 * 8
            for step in pattern.steps {
                if written >= bytes { break }
                let lba = (step.lba + shift) % (span - UInt64(step.length) / 512 - 8) / 8 * 8
                let n = Int(step.length)
                if buffer.count < n { buffer = [UInt8](repeating: 0, count: n) }
                switch step.op {
                case .read:
                    try buffer.withUnsafeMutableBytes { try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: lba * 512, connection: 1) }
                case .write(let high):
                    if high { rng.fillRandom(&buffer, n) } else { rng.fillText(&buffer, n) }
                    try buffer.withUnsafeBytes { try disk.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: lba * 512, fua: false, connection: 1) }
                    written += UInt64(n)
                case .trim:
                    try disk.trim(offset: lba * 512, length: step.length, fua: false, connection: 1)
                }
                if !planted && written >= bytes / 2, let plant {
                    let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: plant)))
                    let at = (span / 2 + rng.next() % (span / 4)) / 8 * 8 * 512
                    for off in stride(from: 0, to: data.count, by: 1 << 20) {
                        let end = min(off + (1 << 20), data.count)
                        try data.withUnsafeBytes { try disk.write(UnsafeRawBufferPointer(rebasing: $0[off..<end]), at: at + UInt64(off), fua: false, connection: 1) }
                    }
                    written += UInt64(data.count)
                    rng.fillRandom(&buffer, 1 << 20)
                    for off in stride(from: 0, to: data.count / 4, by: 1 << 20) {
                        try buffer.withUnsafeBytes { try disk.write(UnsafeRawBufferPointer(rebasing: $0[0..<min(1 << 20, data.count / 4 - off)]), at: at + UInt64(off), fua: false, connection: 1) }
                    }
                    planted = true
                }
            }
            try disk.flush(connection: 1)
            pass += 1
        }
        try writer.close()
    }
}

/// A seeded generator of data (xorshift64*): random bytes, or text made of seeded words.
struct SeededBytes {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    mutating func random(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        fillRandom(&out, n)
        return out
    }

    mutating func fillRandom(_ buffer: inout [UInt8], _ n: Int) {
        buffer.withUnsafeMutableBytes { b in
            var i = 0
            while i + 8 <= n { b.storeBytes(of: next(), toByteOffset: i, as: UInt64.self); i += 8 }
            while i < n { b[i] = UInt8(truncatingIfNeeded: next()); i += 1 }
        }
    }

    private static let words = ["kanshi", "journal", "block", "sector", "record", "fleet", "report", "invoice", "customer", "order",
                                "the", "of", "and", "data", "file", "server", "disk", "time", "page", "table"].map { Array(($0 + " ").utf8) }

    mutating func fillText(_ buffer: inout [UInt8], _ n: Int) {
        var i = 0
        while i < n {
            let r = next()
            // A seeded number between words keeps every sector distinct.
            let w = Self.words[Int(r % UInt64(Self.words.count))] + Array(String(r >> 40, radix: 36).utf8) + [0x20]
            for c in w where i < n { buffer[i] = c; i += 1 }
        }
    }
}
