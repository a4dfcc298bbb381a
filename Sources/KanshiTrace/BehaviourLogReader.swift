import Foundation

/// Reads a behaviour log (the JSON lines `kanshi trace` and the VM sensor write) back into events.
public enum BehaviourLogReader {
    /// Calls `body` with each event of the log at `path`, in order. A line that is not one of
    /// the log's events is an error naming the file and line; a last line cut short (a log
    /// still being written) is left out.
    public static func read(path: String, _ body: (TraceEvent) throws -> Void) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceError.badLog(path: path, line: 0, reason: FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file")
        }
        var lineNumber = 0
        var start = data.startIndex
        while start < data.endIndex {
            let end = data[start...].firstIndex(of: UInt8(ascii: "\n"))
            lineNumber += 1
            let line = data[start..<(end ?? data.endIndex)]
            start = end.map { $0 + 1 } ?? data.endIndex
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            let e: TraceEvent
            do {
                e = try event(fromJSON: Data(line))
            } catch let TraceError.badLog(_, _, reason) {
                if end == nil { break }  // the writer had not finished its last line
                throw TraceError.badLog(path: path, line: lineNumber, reason: reason)
            }
            try body(e)
        }
    }

    /// One JSON line of the log as an event.
    public static func event(fromJSON line: Data) throws -> TraceEvent {
        guard let o = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] else {
            throw TraceError.badLog(path: "", line: 0, reason: "not a JSON object")
        }
        guard let ev = o["ev"] as? String else { throw TraceError.badLog(path: "", line: 0, reason: "no \"ev\" field") }
        guard let kind = TraceEvent.Kind(rawValue: ev) else { throw TraceError.badLog(path: "", line: 0, reason: "unknown event \"\(ev)\"") }
        func int(_ k: String) -> Int64? { (o[k] as? NSNumber)?.int64Value }
        var e = TraceEvent(kind: kind)
        e.seq = (o["seq"] as? NSNumber)?.uint64Value ?? 0
        e.time = (o["t"] as? NSNumber)?.uint64Value ?? 0
        e.pid = Int32(truncatingIfNeeded: int("pid") ?? 0)
        e.tid = Int32(truncatingIfNeeded: int("tid") ?? 0)
        e.call = o["call"] as? String
        e.fd = int("fd").map { Int32(truncatingIfNeeded: $0) }
        e.fd2 = int("fd2").map { Int32(truncatingIfNeeded: $0) }
        e.path = o["path"] as? String
        e.path2 = o["path2"] as? String
        e.bytes = int("bytes")
        e.ret = int("ret")
        e.argv = o["argv"] as? [String]
        e.addr = o["addr"] as? String
        e.child = int("child").map { Int32(truncatingIfNeeded: $0) }
        e.flags = o["flags"] as? String
        e.managed = o["managed"] as? Bool ?? false
        e.blocked = o["blocked"] as? Bool ?? false
        e.reason = o["reason"] as? String
        e.vm = o["vm"] as? String
        e.entropy = (o["entropy"] as? NSNumber)?.doubleValue
        return e
    }
}

/// Follows a behaviour log being written: each poll hands over the events of the lines
/// completed since the last one.
public final class BehaviourLogTail {
    public let path: String
    private var handle: FileHandle?
    private var pending = Data()
    private var lineNumber = 0

    public init(path: String) { self.path = path }

    /// Calls `body` with each event of the lines completed since the last poll. A log not yet
    /// created gives nothing; a line that is not an event is an error naming the file and line.
    public func poll(_ body: (TraceEvent) throws -> Void) throws {
        if handle == nil {
            guard FileManager.default.fileExists(atPath: path) else { return }
            handle = FileHandle(forReadingAtPath: path)
            guard handle != nil else { throw TraceError.badLog(path: path, line: 0, reason: "cannot be read") }
        }
        guard let chunk = try handle?.readToEnd(), !chunk.isEmpty else { return }
        pending.append(chunk)
        var start = pending.startIndex
        while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            lineNumber += 1
            let line = pending[start..<nl]
            start = nl + 1
            if line.isEmpty { continue }
            let e: TraceEvent
            do { e = try BehaviourLogReader.event(fromJSON: Data(line)) } catch let TraceError.badLog(_, _, reason) {
                throw TraceError.badLog(path: path, line: lineNumber, reason: reason)
            }
            try body(e)
        }
        pending = Data(pending[start...])
    }
}
