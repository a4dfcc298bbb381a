import KanshiCore
import KanshiSystem

/// The result of checking a whole journal.
public struct VerifyReport: Sendable {
    public struct Segment: Sendable {
        public var index: UInt64
        public var path: String
        public var bytes: UInt64
        public var records: Int
        public var firstSequence: UInt64
        public var lastSequence: UInt64?
        public var firstTimeNs: UInt64?
        public var lastTimeNs: UInt64?
        public var sealed: Bool
        /// SHA-256 of the segment (sealed segments only).
        public var hash: String?
        /// Bytes at the end covered by record checksums but by no hash record yet.
        public var uncoveredBytes: UInt64
    }

    /// A problem: where and why.
    public struct Problem: Sendable, CustomStringConvertible {
        public var location: JournalLocation
        public var reason: String
        public var description: String { "\(location): \(reason)" }
    }

    public var directory: String
    public var segments: [Segment] = []
    public var records: Int { segments.reduce(0) { $0 + $1.records } }
    public var bytes: UInt64 { segments.reduce(0) { $0 + $1.bytes } }
    /// The first bad record or chain link; nil when the journal is intact.
    public var problem: Problem?
    /// A torn record at the very end (the writer cuts it off when it next opens).
    public var tornTail: Problem?
    /// Count of records by kind.
    public var kinds: [String: Int] = [:]

    public var ok: Bool { problem == nil }
}

/// Checks every record checksum, sequence number, hash record and chain link.
public enum JournalVerifier {
    public static func verify(directory: String) throws -> VerifyReport {
        var report = VerifyReport(directory: directory)
        let layout: JournalLayout
        do {
            layout = try JournalLayout.read(directory: directory)
        } catch let JournalError.corrupt(location, reason) {
            report.problem = .init(location: location, reason: reason)
            return report
        }
        var previousHash = [UInt8](repeating: 0, count: 32)
        var expectedSequence: UInt64 = 1
        var kinds: [RecordKind: Int] = [:]
        for (i, index) in layout.segments.enumerated() {
            let path = layout.path(of: index)
            let scan: SegmentScan
            do {
                scan = try SegmentScanner.scan(path: path, segment: index) { r in kinds[r.kind, default: 0] += 1 }
            } catch let JournalError.corrupt(location, reason) {
                report.problem = .init(location: location, reason: reason)
                break
            }
            report.segments.append(.init(
                index: index, path: path, bytes: scan.fileSize, records: scan.records,
                firstSequence: scan.header.firstSequence,
                lastSequence: scan.records > 0 ? scan.nextSequence - 1 : nil,
                firstTimeNs: scan.firstTimeNs, lastTimeNs: scan.lastTimeNs,
                sealed: scan.sealHash != nil, hash: scan.sealHash?.hex,
                uncoveredBytes: scan.validEnd - scan.coveredEnd))
            let headerLocation = JournalLocation(segmentPath: path, offset: 0, sequence: nil)
            if scan.header.previousHash != previousHash {
                report.problem = .init(location: headerLocation, reason: i == 0
                    ? "first segment names a previous segment: earlier segments were removed"
                    : "previous-segment hash does not match segment \(index - 1): segments were altered, removed or reordered")
                break
            }
            if scan.header.firstSequence != expectedSequence {
                report.problem = .init(location: headerLocation, reason: "segment starts at record #\(scan.header.firstSequence) where #\(expectedSequence) was expected")
                break
            }
            let isLast = i == layout.segments.count - 1
            switch scan.problem {
            case .corrupt(let offset, let seq, let why):
                report.problem = .init(location: .init(segmentPath: path, offset: offset, sequence: seq ?? scan.nextSequence), reason: why)
            case .tornTail(let offset, let why):
                let p = VerifyReport.Problem(location: .init(segmentPath: path, offset: offset, sequence: scan.nextSequence), reason: why)
                if isLast { report.tornTail = p } else { report.problem = p }
            case nil:
                if !isLast && scan.sealHash == nil {
                    report.problem = .init(location: .init(segmentPath: path, offset: scan.validEnd, sequence: nil),
                                           reason: "segment is not the last but has no seal record")
                }
            }
            if report.problem != nil { break }
            previousHash = scan.sealHash ?? []
            expectedSequence = scan.nextSequence
        }
        report.kinds = Dictionary(uniqueKeysWithValues: kinds.map { ($0.key.description, $0.value) })
        return report
    }
}
