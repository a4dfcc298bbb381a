import Foundation
import KanshiCore
import KanshiJournal
import KanshiSystem
import Logging

/// Many sensors shipping at once: each writes block records into its own journal as fast as its
/// shipper lets it (back-pressure holds it when the server falls behind or is down) and ships
/// them to a server. Used by `kanshi bench ship` (scripts/bench-server.sh kills and restarts the
/// server meanwhile).
public enum ShipBench {
    public struct Options: Sendable {
        public var url: String
        /// One token per sensor, in order; sensor i ships as recording `name`.
        public var tokens: [String]
        public var directory: String
        public var seconds: Double
        public var name = "bench"
        /// Bytes per record written (a guest's large write).
        public var recordBytes = 256 << 10
        /// Unacknowledged bytes per sensor before it is held back.
        public var maxBacklog: UInt64 = 32 << 20
        public var caFile: String?
        public init(url: String, tokens: [String], directory: String, seconds: Double) {
            self.url = url
            self.tokens = tokens
            self.directory = directory
            self.seconds = seconds
        }
    }

    public struct SensorResult: Sendable {
        public var journal: String
        public var written: UInt64
        public var status: Shipper.Status
    }

    public struct Result: Sendable {
        public var sensors: [SensorResult]
        /// From the first write to the last acknowledgement.
        public var seconds: Double
        public var written: UInt64 { sensors.reduce(0) { $0 + $1.written } }
        /// Bytes of journal the server acknowledged (every sensor caught up: all of them).
        public var acknowledged: UInt64 { sensors.reduce(0) { $0 + $1.status.bytesShipped } }
        public var unacknowledged: UInt64 { sensors.reduce(0) { $0 + $1.status.backlog } }
        public var failures: Int { sensors.reduce(0) { $0 + $1.status.failures } }
        public var resent: Int { sensors.reduce(0) { $0 + $1.status.chunksResent } }
        public var throttled: Int { sensors.reduce(0) { $0 + $1.status.throttled } }
    }

    public static func run(_ o: Options, progress: @escaping @Sendable (String) -> Void = { _ in }) throws -> Result {
        let logger: Logger = {
            var l = Logger(label: "kanshi.bench.ship")
            l.logLevel = .error
            return l
        }()
        try FileManager.default.createDirectory(atPath: o.directory, withIntermediateDirectories: true)
        // One random buffer, each record a different slice of it (rotated by the record number).
        var pattern = [UInt8](repeating: 0, count: o.recordBytes * 2)
        var rng = SystemRandomNumberGenerator()
        for i in stride(from: 0, to: pattern.count, by: 8) {
            withUnsafeBytes(of: rng.next() as UInt64) { for (j, b) in $0.enumerated() where i + j < pattern.count { pattern[i + j] = b } }
        }
        let shared = pattern
        let start = Date()
        let stopAt = start.addingTimeInterval(o.seconds)
        let results = Locked<[SensorResult?]>(Array(repeating: nil, count: o.tokens.count))
        let failures = Locked<[String]>([])
        let group = DispatchGroup()
        for (i, token) in o.tokens.enumerated() {
            group.enter()
            let t = Thread {
                defer { group.leave() }
                let dir = o.directory + "/sensor-\(i + 1).journal"
                do {
                    let writer = try JournalWriter(directory: dir, options: .init(segmentBytes: 64 << 20), logger: logger)
                    var so = Shipper.Options(url: o.url, token: token, recording: o.name, caFile: o.caFile)
                    so.maxBacklog = o.maxBacklog
                    so.maxPauseMs = 1000
                    let shipper = try Shipper(options: so, journal: dir, log: nil)
                    shipper.start()
                    var written: UInt64 = 0
                    var n = 0
                    while Date() < stopAt {
                        shipper.waitForRoom()
                        let offset = (n * 4096) % o.recordBytes
                        let e = BlockEvent(operation: .write, timeNs: FileSystem.nowNs(), lba: UInt64(n % 1_000_000) * UInt64(o.recordBytes / 512),
                                           length: UInt32(o.recordBytes), entropies: [])
                        let meta = BlockRecords.encodeMetadata(e)
                        _ = try meta.withUnsafeBytes { m in
                            try shared.withUnsafeBytes { d in
                                try writer.append(kind: .blockWrite, timeNs: e.timeNs, parts: [m, UnsafeRawBufferPointer(rebasing: d[offset..<(offset + o.recordBytes)])])
                            }
                        }
                        written += UInt64(o.recordBytes)
                        n += 1
                        if n % 16 == 0 { try writer.sync() }
                    }
                    try writer.close()
                    let status = shipper.finish(timeout: 300)
                    results.withLock { $0[i] = SensorResult(journal: dir, written: written, status: status) }
                } catch {
                    failures.withLock { $0.append("sensor \(i + 1): \(error)") }
                }
            }
            t.name = "kanshi.bench.sensor\(i + 1)"
            t.start()
        }
        // Progress every 10 s while the sensors write.
        while group.wait(timeout: .now() + 10) == .timedOut {
            progress(String(format: "%.0f s", Date().timeIntervalSince(start)))
        }
        let problems = failures.withLock { $0 }
        if !problems.isEmpty { throw ShipError(problems.joined(separator: "; ")) }
        return Result(sensors: results.withLock { $0.compactMap { $0 } }, seconds: Date().timeIntervalSince(start))
    }

    /// The baseline: the same bytes (the sensors' journals, up to `limit` of them) written to local
    /// disk the way the server writes them: 4 MiB at a time, each synced. MB/s.
    public static func localDiskBaseline(journals: [String], into directory: String, limit: UInt64 = 4 << 30) throws -> (bytes: UInt64, seconds: Double) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var buffer = [UInt8](repeating: 0, count: ShipProtocol.chunkBytes)
        var total: UInt64 = 0
        let start = Date()
        for (i, j) in journals.enumerated() {
            for name in try FileSystem.list(j).sorted() where name.hasSuffix(JournalFormat.segmentSuffix) {
                let src = try SystemFile(path: j + "/" + name, mode: .readOnly)
                let dst = try SystemFile(path: directory + "/\(i)-\(name)", mode: [.readWrite, .create, .truncate])
                var at: UInt64 = 0
                while true {
                    let got = try buffer.withUnsafeMutableBytes { try src.read(into: $0, at: at) }
                    if got == 0 { break }
                    try buffer.withUnsafeBytes { try dst.write(UnsafeRawBufferPointer(rebasing: $0[0..<got]), at: at) }
                    try dst.syncData()
                    at += UInt64(got)
                }
                total += at
                try? FileManager.default.removeItem(atPath: directory + "/\(i)-\(name)")
                if total >= limit { return (total, Date().timeIntervalSince(start)) }
            }
        }
        return (total, Date().timeIntervalSince(start))
    }
}
