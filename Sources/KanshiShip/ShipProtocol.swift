import Foundation
import KanshiJournal

/// What a sensor and `kanshi server` say to each other, over HTTP(S), with the sensor's token
/// as `Authorization: Bearer TOKEN`. A recording belongs to the sensor whose token made it.
///
/// - `GET  /api/ship`                                         → `{"sensor":SENSOR}`: whose token this is
/// - `GET  /api/ship/SENSOR/NAME/journal`                     → `{"segment":S,"offset":O,"nextSequence":Q}`: where the server's copy ends
/// - `PUT  /api/ship/SENSOR/NAME/journal?segment=S&offset=O`  body: whole records (a new segment's header first) → the new end
/// - `GET  /api/ship/SENSOR/NAME/log`                         → `{"offset":O}`: bytes of the behaviour log the server holds
/// - `PUT  /api/ship/SENSOR/NAME/log?offset=O`                body: whole JSON lines → the new offset
///
/// Answers: 200 with the new end, made durable before the answer; 409 with the server's end
/// (`{"error":…, "expected":{…}}`) for a chunk that does not start there (a duplicate or a gap);
/// 400 for bytes that are not what a journal or log holds there; 401 for a missing or unknown
/// token; 403 for another sensor's recording; 413 for a body over the limit. A refused chunk
/// changes nothing stored.
public enum ShipProtocol {
    public static let prefix = "/api/ship"
    /// The largest body the server takes (a journal record is at most 33 MiB).
    public static let maxBody = 40 << 20
    /// Chunks a sensor sends (a single larger record goes alone).
    public static let chunkBytes = 4 << 20
    /// Sensor and recording names (`RecordingName`).
    public static func validName(_ s: String) -> Bool { RecordingName.isValid(s) }

    public static func journalPath(_ sensor: String, _ recording: String) -> String { "\(prefix)/\(sensor)/\(recording)/journal" }
    public static func logPath(_ sensor: String, _ recording: String) -> String { "\(prefix)/\(sensor)/\(recording)/log" }

    /// Who a token belongs to.
    public struct Identity: Codable, Sendable, Equatable {
        public var sensor: String
        public init(sensor: String) { self.sensor = sensor }
    }

    /// The server's answer about a journal copy.
    public struct JournalHead: Codable, Sendable, Equatable {
        public var segment: UInt64
        public var offset: UInt64
        public var nextSequence: UInt64
        public init(segment: UInt64, offset: UInt64, nextSequence: UInt64) {
            self.segment = segment
            self.offset = offset
            self.nextSequence = nextSequence
        }
        public var position: ShipPosition { ShipPosition(segment: segment, offset: offset) }
    }

    /// The server's answer about a behaviour log copy.
    public struct LogHead: Codable, Sendable, Equatable {
        public var offset: UInt64
        public init(offset: UInt64) { self.offset = offset }
    }

    /// A refusal: what was wrong, and for a 409 where the server's copy ends.
    public struct Refusal: Codable, Sendable {
        public var error: String
        public var expected: JournalHead?
        public var expectedOffset: UInt64?
        public init(error: String, expected: JournalHead? = nil, expectedOffset: UInt64? = nil) {
            self.error = error
            self.expected = expected
            self.expectedOffset = expectedOffset
        }
    }
}
