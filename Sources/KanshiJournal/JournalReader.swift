import KanshiCore
import KanshiSystem

/// Reads a journal directory front to back. Does not lock: a journal that is
/// being written can be read; the reader sees what was appended when it got there.
public struct JournalReader: Sendable {
    public let directory: String

    public init(directory: String) throws {
        _ = try JournalLayout.read(directory: directory)
        self.directory = directory
    }

    /// Calls `body` for every valid record in order. A torn tail at the very
    /// end (a crash or a record being written right now) ends the walk
    /// quietly; any other damage throws, naming where it is.
    public func forEachRecord(_ body: (JournalRecord) throws -> Void) throws {
        let layout = try JournalLayout.read(directory: directory)
        for (i, index) in layout.segments.enumerated() {
            let path = layout.path(of: index)
            let scan = try SegmentScanner.scan(path: path, segment: index, visit: body)
            let isLast = i == layout.segments.count - 1
            switch scan.problem {
            case .corrupt(let offset, let seq, let why):
                throw JournalError.corrupt(location: JournalLocation(segmentPath: path, offset: offset, sequence: seq), reason: why)
            case .tornTail(let offset, let why) where !isLast:
                throw JournalError.corrupt(location: JournalLocation(segmentPath: path, offset: offset, sequence: nil),
                                           reason: "\(why), in a segment that is not the last")
            default:
                break
            }
        }
    }

    /// Calls `body` for every block event, with the written data for writes.
    public func forEachBlockEvent(_ body: (BlockEvent, UnsafeRawBufferPointer) throws -> Void) throws {
        try forEachRecord { r in
            if let (e, data) = try BlockRecords.decode(r) { try body(e, data) }
        }
    }
}
