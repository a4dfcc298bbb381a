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
        try data.withUnsafeBytes { (all: UnsafeRawBufferPointer) in
            try forEachLine(all) { line, lineNumber, complete in
                let e: TraceEvent
                do {
                    e = try event(bytes: line)
                } catch let TraceError.badLog(_, _, reason) {
                    if !complete { return }  // the writer had not finished its last line
                    throw TraceError.badLog(path: path, line: lineNumber, reason: reason)
                }
                try body(e)
            }
        }
    }

    /// Calls `body` with each event of `bytes`, whole lines of a log (a shipped chunk), and the
    /// line's bytes. A line that is not one of the log's events throws `badLog` with its line
    /// number in the chunk (from 1) and no path.
    public static func events(inLines bytes: UnsafeRawBufferPointer, _ body: (TraceEvent, UnsafeRawBufferPointer) throws -> Void) throws {
        try forEachLine(bytes) { line, number, _ in
            let e: TraceEvent
            do {
                e = try event(bytes: line)
            } catch let TraceError.badLog(_, _, reason) {
                throw TraceError.badLog(path: "", line: number, reason: reason)
            }
            try body(e, line)
        }
    }

    /// Calls `body` with each line of `bytes` that is not blank, its number (blank lines
    /// counted, from `firstLine`) and whether it ended with a newline.
    static func forEachLine(_ bytes: UnsafeRawBufferPointer, firstLine: Int = 1,
                            _ body: (UnsafeRawBufferPointer, Int, Bool) throws -> Void) rethrows {
        var start = 0
        var number = firstLine - 1
        let n = bytes.count
        while start < n {
            var end = start
            while end < n, bytes[end] != 0x0a { end += 1 }
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            let complete = end < n
            start = complete ? end + 1 : n
            number += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) { continue }
            try body(line, number, complete)
        }
    }

    /// One line's bytes as an event: read directly when it is as the log writes it, else by the
    /// general JSON reader (which names what is wrong).
    static func event(bytes: UnsafeRawBufferPointer) throws -> TraceEvent {
        if let e = BehaviourLogParser.event(bytes) { return e }
        return try generalEvent(fromJSON: Data(bytes))
    }

    /// One JSON line of the log as an event.
    public static func event(fromJSON line: Data) throws -> TraceEvent {
        try line.withUnsafeBytes { try event(bytes: $0) }
    }

    /// The general JSON reader's way (any valid JSON object, in any layout).
    static func generalEvent(fromJSON line: Data) throws -> TraceEvent {
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
        let used = try pending.withUnsafeBytes { (all: UnsafeRawBufferPointer) -> Int in
            // Complete lines only: an unfinished one stays for the next poll.
            guard let lastNewline = all.lastIndex(of: 0x0a) else { return 0 }
            let complete = UnsafeRawBufferPointer(rebasing: all[..<(lastNewline + 1)])
            var lines = 0
            for b in complete where b == 0x0a { lines += 1 }
            try BehaviourLogReader.forEachLine(complete, firstLine: lineNumber + 1) { line, number, _ in
                let e: TraceEvent
                do { e = try BehaviourLogReader.event(bytes: line) } catch let TraceError.badLog(_, _, reason) {
                    throw TraceError.badLog(path: path, line: number, reason: reason)
                }
                try body(e)
            }
            lineNumber += lines
            return lastNewline + 1
        }
        pending.removeFirst(used)
    }
}
