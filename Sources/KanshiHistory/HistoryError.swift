import KanshiJournal
import KanshiSystem

/// Errors of time travel and search, each saying what to fix.
public enum HistoryError: Error, CustomStringConvertible, Sendable {
    case system(SystemError)
    case journal(JournalError)
    /// The journal has no segment yet: nothing was recorded.
    case emptyJournal(directory: String)
    /// The saved index file ends early (it is then rebuilt).
    case truncatedIndex
    /// A time that cannot be parsed.
    case badTime(String, reason: String)
    /// The image does not fit the journal.
    case badImage(path: String, reason: String)
    /// A time before anything was recorded, or after the end.
    case outOfRange(String)

    public var description: String {
        switch self {
        case .system(let e): e.description
        case .journal(let e): e.description
        case .emptyJournal(let d): "\(d): the journal holds no segment yet (nothing was recorded)"
        case .truncatedIndex: "the saved index ends early"
        case .badTime(let t, let why): "\"\(t)\" is not a time: \(why) (give RFC 3339 like 2026-11-22T05:30:00.25Z, ns since the epoch, or a record sequence number like seq:1234)"
        case .badImage(let p, let why): "\(p): \(why)"
        case .outOfRange(let why): why
        }
    }
}

func sys<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as SystemError { throw HistoryError.system(e) }
}
