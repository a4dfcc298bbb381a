import KanshiSystem

/// Errors of the journal, each naming the journal and where in it.
public enum JournalError: Error, CustomStringConvertible, Sendable {
    /// A system call failed.
    case system(SystemError)
    /// The directory is not a journal or cannot be used as one.
    case notAJournal(directory: String, reason: String)
    /// Another process has the journal open for writing.
    case locked(directory: String)
    /// Damage that is not a torn tail: writing is refused so nothing is lost.
    case corrupt(location: JournalLocation, reason: String)
    /// A record too large for the format.
    case recordTooLarge(bytes: Int)
    /// The journal was closed.
    case closed(directory: String)

    public var description: String {
        switch self {
        case .system(let e): return e.description
        case .notAJournal(let d, let why): return "\(d): not a usable journal: \(why)"
        case .locked(let d): return "\(d): the journal is in use by another process (it holds \(d)/LOCK)"
        case .corrupt(let loc, let why):
            return "\(loc): \(why); the journal was left untouched; run `kanshi journal verify` for a full report"
        case .recordTooLarge(let n): return "record of \(n) bytes exceeds the journal's limit of \(JournalFormat.maxRecordLength)"
        case .closed(let d): return "\(d): the journal is closed"
        }
    }
}

/// A place in a journal: segment file, byte offset, and the record's sequence number when known.
public struct JournalLocation: Sendable, CustomStringConvertible, Equatable {
    public var segmentPath: String
    public var offset: UInt64
    public var sequence: UInt64?

    public var description: String {
        var s = "\(segmentPath) at byte \(offset)"
        if let q = sequence { s += " (record #\(q))" }
        return s
    }
}
