import ArgumentParser
import Foundation
import KanshiBlock
import KanshiHistory
import KanshiJournal
import KanshiSystem

struct BenchHistory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Restore time through the block -> versions index against a full journal replay, and sector-hash lookups per second.",
        discussion: """
            Fills a disk image with data, journals random 4 KiB writes to it through the \
            same engine `disk serve` uses, then times: building the version index from \
            scratch; `restore` at the middle of the journal; the peer method (copy the \
            starting image, replay every journaled change up to that moment); building the \
            sector-hash index; and hash lookups (half present, half absent). Prints medians.
            """)

    @Option(name: .customLong("size-mib"), help: "Disk size in MiB.")
    var sizeMiB: Int = 1024
    @Option(help: "Number of journaled 4 KiB writes.")
    var writes: Int = 100_000
    @Option(help: "Scratch directory (needs about 2.5x the disk size free).")
    var dir: String = NSTemporaryDirectory() + "kanshi-bench-history"
    @Option(help: "Repetitions of each timed step; medians are reported.")
    var rounds: Int = 3
    @Option(help: "Hash lookups per round.")
    var lookups: Int = 2_000_000
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = UInt64(sizeMiB) << 20
        let image = dir + "/disk.img", start = dir + "/start.img", journal = dir + "/journal"
        Output.error("bench: filling a \(sizeMiB) MiB image")
        try fill(image, size: size)
        try copy(image, to: start)
        Output.error("bench: journaling \(writes) random 4 KiB writes")
        let writer = try JournalWriter(directory: journal, logger: .init(label: "bench"))
        let disk = try JournaledDisk(imagePath: image, journal: writer, readOnly: false)
        var rng = SystemRandomNumberGenerator()
        var data = [UInt8](repeating: 0, count: 4096)
        var marks: [UInt64] = []
        let blocks = size / 4096
        for i in 0..<writes {
            for k in stride(from: 0, to: 4096, by: 8) {
                data.withUnsafeMutableBytes { $0.storeBytes(of: rng.next() as UInt64, toByteOffset: k, as: UInt64.self) }
            }
            let block = UInt64.random(in: 0..<blocks, using: &rng)
            try data.withUnsafeBytes { try disk.write($0, at: block * 4096, fua: false, connection: 1) }
            if i % 1000 == 999 { try disk.flush(connection: 1) }
            if i == writes / 10 || i == writes / 2 || i == writes * 9 / 10 {
                marks.append(try writer.appendNote("{\"event\":\"bench-mark\",\"writes\":\(i)}"))
            }
        }
        try writer.close()
        let journalBytes = try FileSystem.list(journal).filter { $0.hasPrefix("segment-") }
            .reduce(UInt64(0)) { $0 + (try SystemFile(path: journal + "/" + $1, mode: .readOnly).size()) }

        let points = [10, 50, 90]
        var indexTimes: [Double] = [], copyTimes: [Double] = [], hashTimes: [Double] = [], lookupRates: [Double] = []
        var restoreTimes = [[Double]](repeating: [], count: marks.count), replayTimes = restoreTimes
        var versions = 0, entries = 0, bytesPerHash = 0.0
        let out = dir + "/restored.img", replayed = dir + "/replayed.img"
        for round in 0..<max(1, rounds) {
            try? FileManager.default.removeItem(atPath: journal + "/" + VersionIndex.fileName)
            try? FileManager.default.removeItem(atPath: journal + "/" + SectorHashIndex.fileName)
            var t = FileSystem.monotonicNs()
            let index = try VersionIndex(journal: journal)
            indexTimes.append(seconds(since: t))
            versions = index.versions.count
            t = FileSystem.monotonicNs()
            try copy(image, to: out)
            copyTimes.append(seconds(since: t))
            for (k, mark) in marks.enumerated() {
                t = FileSystem.monotonicNs()
                _ = try Restore.write(PastImage(index: index, at: .sequence(mark), imagePath: image), to: out)
                restoreTimes[k].append(seconds(since: t))
                t = FileSystem.monotonicNs()
                try replay(journal, start: start, to: replayed, until: mark)
                replayTimes[k].append(seconds(since: t))
                if round == 0 {
                    guard try same(out, replayed) else { throw CLIError("bench: the restored image differs from the replayed one at seq \(mark)") }
                }
            }
            t = FileSystem.monotonicNs()
            let hashes = try SectorHashIndex(versions: index)
            hashTimes.append(seconds(since: t))
            entries = hashes.entries.count
            bytesPerHash = hashes.bytesPerHash
            var probes: [UInt64] = []
            probes.reserveCapacity(lookups)
            for i in 0..<lookups {
                probes.append(i % 2 == 0 && entries > 0 ? hashes.entries[Int.random(in: 0..<entries, using: &rng)].hash : rng.next())
            }
            // Two threads, one per core, each on half of the probes.
            t = FileSystem.monotonicNs()
            let counts = LockedCounter()
            let half = probes.count / 2
            let all = probes
            DispatchQueue.concurrentPerform(iterations: 2) { k in
                var n = 0
                for p in all[(k * half)..<(k == 1 ? all.count : half)] { n &+= hashes.range(of: p).count }
                counts.add(n)
            }
            let found = counts.value
            let s = seconds(since: t)
            guard found >= lookups / 2 else { throw CLIError("bench: lookups found \(found) of \(lookups / 2) present hashes") }
            lookupRates.append(Double(lookups) / s)
        }
        let copyTime = median(copyTimes)
        let restore = restoreTimes.map(median), replay = replayTimes.map(median)
        let r = (index: median(indexTimes), hash: median(hashTimes), lookups: median(lookupRates))
        if json {
            Output.line(try Output.json([
                "diskBytes": size, "writes": writes, "journalBytes": journalBytes, "versions": versions,
                "indexBuildSeconds": r.index, "imageCopySeconds": copyTime,
                "restore": points.enumerated().map { k, p in
                    ["atPercent": p, "restoreSeconds": restore[k], "replaySeconds": replay[k], "replayOverRestore": replay[k] / restore[k]] as [String: Any]
                },
                "hashIndexSeconds": r.hash, "hashEntries": entries,
                "bytesPerHash": bytesPerHash, "lookupsPerSecond": r.lookups,
                "hashdbLookupsPerSecond4Cores": 900_000, "hashdbBytesPerHash": 50,
            ] as [String: Any]))
            return
        }
        Output.line("disk \(sizeMiB) MiB, \(writes) journaled 4 KiB writes, journal \(Output.bytes(journalBytes)), \(versions) block versions (medians of \(rounds))")
        Output.line(String(format: "  version index, built from scratch   %6.2f s", r.index))
        Output.line(String(format: "  copying the image alone             %6.2f s (both methods start with it)", copyTime))
        for (k, p) in points.enumerated() {
            Output.line(String(format: "  restore at %2d%% of the writes        %6.2f s   peer (copy start image + replay) %6.2f s   %.1fx", p, restore[k], replay[k], replay[k] / restore[k]))
        }
        Output.line(String(format: "  sector-hash index, built            %6.2f s   %d hashes, %.1f bytes per hash (hashdb: about 50)", r.hash, entries, bytesPerHash))
        Output.line(String(format: "  lookups                             %6.2f M/s on 2 cores (hashdb: about 0.9 M/s on 4 cores), %.1fx", r.lookups / 1e6, r.lookups / 900_000))
    }

    private func seconds(since t: UInt64) -> Double { Double(FileSystem.monotonicNs() - t) / 1e9 }
    private func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }

    /// Non-zero data, different in every block.
    private func fill(_ path: String, size: UInt64) throws {
        let f = try SystemFile(path: path, mode: [.readWrite, .create, .truncate])
        var rng = SystemRandomNumberGenerator()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        chunk.withUnsafeMutableBytes { b in for k in stride(from: 0, to: b.count, by: 8) { b.storeBytes(of: rng.next() as UInt64, toByteOffset: k, as: UInt64.self) } }
        var at: UInt64 = 0
        while at < size {
            chunk.withUnsafeMutableBytes { b in
                for k in stride(from: 0, to: b.count, by: 4096) { b.storeBytes(of: at + UInt64(k), toByteOffset: k, as: UInt64.self) }
            }
            try chunk.withUnsafeBytes { try f.write($0, at: at) }
            at += UInt64(chunk.count)
        }
        try f.syncData()
    }

    /// Copies a file inside the kernel; with `sync`, waits until it is on disk (as a restore does).
    private func copy(_ from: String, to: String, sync: Bool = true) throws {
        let src = try SystemFile(path: from, mode: .readOnly)
        let dst = try SystemFile(path: to, mode: [.readWrite, .create, .truncate])
        try src.copy(to: dst, offset: 0, length: try src.size())
        if sync { try dst.syncData() }
    }

    /// The peer method: the starting image with every change up to `until` replayed.
    private func replay(_ journal: String, start: String, to out: String, until: UInt64) throws {
        try copy(start, to: out, sync: false)
        let dst = try SystemFile(path: out, mode: .readWrite)
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        try JournalReader(directory: journal).forEachRecord { r in
            guard r.sequence <= until, let (e, data) = try BlockRecords.decode(r) else { return }
            switch e.operation {
            case .write: try dst.write(data, at: e.lba * 512)
            case .trim, .writeZeroes:
                var left = Int(e.length), at = e.lba * 512
                while left > 0 {
                    let n = min(left, zeros.count)
                    try zeros.withUnsafeBytes { try dst.write(UnsafeRawBufferPointer(rebasing: $0[0..<n]), at: at) }
                    left -= n; at += UInt64(n)
                }
            default: break
            }
        }
        try dst.syncData()
    }

    private func same(_ a: String, _ b: String) throws -> Bool {
        let fa = try SystemFile(path: a, mode: .readOnly), fb = try SystemFile(path: b, mode: .readOnly)
        guard try fa.size() == fb.size() else { return false }
        var x = [UInt8](repeating: 0, count: 1 << 20), y = x
        var at: UInt64 = 0
        while true {
            let n = try x.withUnsafeMutableBytes { try fa.read(into: $0, at: at) }
            _ = try y.withUnsafeMutableBytes { try fb.read(into: $0, at: at) }
            if n == 0 { return true }
            if x[0..<n] != y[0..<n] { return false }
            at += UInt64(n)
        }
    }
}

final class LockedCounter: @unchecked Sendable {
    // SAFETY: `n` is only touched under `lock`.
    private let lock = NSLock()
    private var n = 0
    func add(_ k: Int) { lock.lock(); n += k; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
