import KanshiCore
import KanshiTrace

/// One thing the rules look at: a behaviour event (`kanshi trace`, the VM sensor), a block
/// record or a note of a journal, or the match of a silent rule that other rules count.
public struct RuleEvent: Sendable {
    public enum Source: String, Sendable { case behaviour, block, note, match }

    /// A block record's part.
    public struct Block: Sendable {
        public var lba: UInt64
        public var length: UInt32
        /// Mean entropy of the written data, bits per byte (writes only).
        public var entropy: Double?
    }

    public var source: Source
    /// The event's kind (`ev`): a behaviour kind (open, rename...), block_read, block_write,
    /// block_trim, block_write_zeroes, block_flush, note or match.
    public var kind: String
    public var seq: UInt64
    public var time: UInt64
    /// The behaviour event (behaviour events; a match carries its last event's).
    public var trace: TraceEvent?
    public var block: Block?
    /// A journal note's JSON text and its "event" field.
    public var note: String?
    public var noteEvent: String?
    /// Where the record is in its journal (block records and notes): segment and byte offset.
    public var segment: UInt64?
    public var offset: UInt64?
    /// A match: the silent rule and the events that made it.
    public var rule: String?
    public var evidence: [Evidence] = []

    public init(_ e: TraceEvent) {
        source = .behaviour; kind = e.kind.rawValue; seq = e.seq; time = e.time; trace = e
    }

    public init(block op: BlockEvent.Operation, lba: UInt64, length: UInt32, entropy: Double?, time: UInt64, seq: UInt64,
                segment: UInt64, offset: UInt64) {
        source = .block
        kind = Self.blockKind(op)
        self.seq = seq; self.time = time; self.segment = segment; self.offset = offset
        block = Block(lba: lba, length: length, entropy: entropy)
    }

    public init(note json: String, event: String?, time: UInt64, seq: UInt64, segment: UInt64, offset: UInt64) {
        source = .note; kind = "note"; self.seq = seq; self.time = time; self.segment = segment; self.offset = offset
        note = json; noteEvent = event
    }

    static func blockKind(_ op: BlockEvent.Operation) -> String {
        switch op {
        case .read: "block_read"
        case .write: "block_write"
        case .trim: "block_trim"
        case .writeZeroes: "block_write_zeroes"
        case .flush: "block_flush"
        }
    }

    /// The event as evidence: its `seq` (in its log or journal) and, in a journal, where.
    public var asEvidence: Evidence { Evidence(seq: seq, segment: segment, offset: offset, time: time, kind: kind) }
}

/// One event behind an alert.
public struct Evidence: Sendable, Equatable, Hashable {
    public var seq: UInt64?
    public var segment: UInt64?
    public var offset: UInt64?
    public var time: UInt64
    public var kind: String
}

/// What the rules know beside the events: the process table, the files that became managed,
/// the protected (confidential) paths.
public final class RuleWorld {
    let activity = ProcessActivity(recordsFiles: false)
    var managedFiles: Set<String> = []
    var managedProcesses: Set<Int32> = []
    let protectedPrefixes: [String]

    public init(protected: [String] = []) {
        protectedPrefixes = protected
    }

    func add(_ e: TraceEvent) {
        switch e.kind {
        case .spawn, .exec: activity.add(e)
        case .managed:
            if let p = e.path { managedFiles.insert(p) } else { managedProcesses.insert(e.pid) }
        default: break
        }
    }

    func isProtected(_ path: String) -> Bool {
        if managedFiles.contains(path) { return true }
        for p in protectedPrefixes where path == p || path.hasPrefix(p.hasSuffix("/") ? p : p + "/") { return true }
        return false
    }

    func argv(_ pid: Int32) -> [String]? { activity.processes[pid]?.argv }

    /// The process tree `pid` belongs to (rooted as `proc.tree` is), root first.
    public func tree(of pid: Int32) -> [Int32] { activity.tree(of: activity.blameRoot(of: pid)) }
    func name(_ pid: Int32) -> String? { argv(pid)?.first.map(Self.baseName) }
    func parent(_ pid: Int32) -> Int32? { activity.processes[pid]?.parent }

    func ancestorNames(_ pid: Int32) -> [String] {
        var out: [String] = []
        var p = pid
        var steps = 0
        while let parent = parent(p), parent != p, steps < 64 {
            if let n = name(parent) { out.append(n) }
            p = parent
            steps += 1
        }
        return out
    }

    static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    static func directory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The path without the extension of its last component.
    static func withoutExtension(_ path: String) -> String {
        let ext = fileExtension(path)
        return ext.isEmpty ? path : String(path.dropLast(ext.count + 1))
    }

    /// The extension of the last component, without the dot ("" when none).
    static func fileExtension(_ path: String) -> String {
        let name = baseName(path)
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        return String(name[name.index(after: dot)...])
    }
}

/// A field's value getter, by type.
enum Getter: @unchecked Sendable {
    case text((RuleEvent, RuleWorld) -> String?)
    case number((RuleEvent, RuleWorld) -> Double?)
    case flag((RuleEvent, RuleWorld) -> Bool?)
    case texts((RuleEvent, RuleWorld) -> [String]?)

    var typeName: String {
        switch self {
        case .text: "text"
        case .number: "a number"
        case .flag: "yes/no"
        case .texts: "a list of text"
        }
    }
}

/// The fields a condition can name.
enum Fields {
    static func pid(_ e: RuleEvent) -> Int32? { e.trace?.pid }

    static let all: [String: (getter: Getter, help: String)] = {
        var f: [String: (Getter, String)] = [:]
        func text(_ n: String, _ h: String, _ g: @escaping (RuleEvent, RuleWorld) -> String?) { f[n] = (.text(g), h) }
        func number(_ n: String, _ h: String, _ g: @escaping (RuleEvent, RuleWorld) -> Double?) { f[n] = (.number(g), h) }
        func flag(_ n: String, _ h: String, _ g: @escaping (RuleEvent, RuleWorld) -> Bool?) { f[n] = (.flag(g), h) }
        func texts(_ n: String, _ h: String, _ g: @escaping (RuleEvent, RuleWorld) -> [String]?) { f[n] = (.texts(g), h) }

        text("ev", "the event's kind: open, close, read, write, rename, unlink, exec, spawn, connect, send... (behaviour); block_read, block_write, block_trim, block_write_zeroes, block_flush (block records); note; match (a silent rule's match)") { e, _ in e.kind }
        text("source", "behaviour, block, note or match") { e, _ in e.source.rawValue }
        number("seq", "the event's number in its log or journal") { e, _ in Double(e.seq) }
        number("time", "ns since the epoch") { e, _ in Double(e.time) }
        number("pid", "process id") { e, _ in e.trace.map { Double($0.pid) } }
        number("tid", "thread id") { e, _ in e.trace.map { Double($0.tid) } }
        text("call", "the system call") { e, _ in e.trace?.call }
        text("path", "the file the event is about") { e, _ in e.trace?.path }
        text("path2", "the second path (rename, link: the new name)") { e, _ in e.trace?.path2 }
        text("flags", "open flags: r, w or rw, then ,creat ,trunc ,append ..., or a socket's kind") { e, _ in e.trace?.flags }
        text("addr", "a socket address (connect, send, bind)") { e, _ in e.trace?.addr }
        text("reason", "why (managed, blocked, notice events)") { e, _ in e.trace?.reason }
        text("vm", "the virtual machine (VM sensor), absent on the host") { e, _ in e.trace?.vm }
        number("fd", "file descriptor") { e, _ in e.trace?.fd.map(Double.init) }
        number("fd2", "second file descriptor (dup, pipe)") { e, _ in e.trace?.fd2.map(Double.init) }
        number("bytes", "bytes read, written, sent, or written through a closed file") { e, _ in e.trace?.bytes.map(Double.init) }
        number("ret", "the call's result (negative: -errno)") { e, _ in e.trace?.ret.map(Double.init) }
        number("child", "the new process (spawn)") { e, _ in e.trace?.child.map(Double.init) }
        texts("argv", "the command line (exec, spawn)") { e, _ in e.trace?.argv }
        text("cmdline", "the command line as one string (exec, spawn)") { e, _ in e.trace?.argv?.joined(separator: " ") }
        flag("managed", "the process had touched confidential data (managed) at the event") { e, w in
            guard let t = e.trace else { return nil }
            return t.managed || w.managedProcesses.contains(t.pid)
        }
        flag("blocked", "the sensor refused the call") { e, _ in e.trace?.blocked }
        flag("protected", "the event's path (or new path) is protected (--protect) or a managed file") { e, w in
            guard let t = e.trace else { return nil }
            return t.path.map(w.isProtected) == true || t.path2.map(w.isProtected) == true
        }
        number("entropy", "bits per byte (0-8) of the data written: through a closed file (VM sensor), or a block write") { e, _ in
            e.trace?.entropy ?? e.block?.entropy
        }
        for (p, g) in [("path", { (e: RuleEvent) in e.trace?.path }), ("path2", { (e: RuleEvent) in e.trace?.path2 })] {
            text(p + ".name", "the last component of \(p)") { e, _ in g(e).map(RuleWorld.baseName) }
            text(p + ".dir", "the directory of \(p)") { e, _ in g(e).map(RuleWorld.directory) }
            text(p + ".ext", "the extension of \(p)'s last component, without the dot (empty: none)") { e, _ in g(e).map(RuleWorld.fileExtension) }
            text(p + ".noext", "\(p) without its last extension (a.docx.enc: a.docx)") { e, _ in g(e).map(RuleWorld.withoutExtension) }
        }
        text("proc.name", "the process's program name (last component of argv[0])") { e, w in pid(e).flatMap(w.name) }
        text("proc.exe", "the process's argv[0]") { e, w in pid(e).flatMap(w.argv)?.first }
        text("proc.cmdline", "the process's command line") { e, w in pid(e).flatMap(w.argv)?.joined(separator: " ") }
        number("proc.ppid", "the parent's pid") { e, w in pid(e).flatMap(w.parent).map(Double.init) }
        text("proc.pname", "the parent's program name") { e, w in pid(e).flatMap(w.parent).flatMap(w.name) }
        texts("proc.anames", "the program names of every ancestor, nearest first") { e, w in pid(e).map(w.ancestorNames) }
        number("proc.tree", "the pid at the root of the process's tree (its nearest ancestors running the same program)") { e, w in
            pid(e).map { Double(w.activity.blameRoot(of: $0)) }
        }
        number("lba", "first sector (block records)") { e, _ in e.block.map { Double($0.lba) } }
        number("length", "bytes (block records)") { e, _ in e.block.map { Double($0.length) } }
        number("offset", "the record's offset in its journal") { e, _ in e.offset.map(Double.init) }
        text("note", "a journal note's JSON text") { e, _ in e.note }
        text("note.event", "a journal note's \"event\" (serve-start, guest-job-start, rollback-end...)") { e, _ in e.noteEvent }
        text("rule", "the silent rule a match event comes from") { e, _ in e.rule }
        return f.mapValues { (getter: $0.0, help: $0.1) }
    }()

    /// Shorthands for `by`: a name or a list of fields.
    static let keys: [String: [String]] = [
        "process": ["vm", "pid"], "tree": ["vm", "proc.tree"], "file": ["vm", "path"], "vm": ["vm"],
    ]

    /// A field's value as text (keys, distinct values, output templates); nil when absent.
    static func text(_ g: Getter, _ e: RuleEvent, _ w: RuleWorld) -> String? {
        switch g {
        case .text(let f): return f(e, w)
        case .number(let f):
            guard let v = f(e, w) else { return nil }
            return v == v.rounded() && abs(v) < 1e18 ? String(Int64(v)) : String(v)
        case .flag(let f): return f(e, w).map { $0 ? "true" : "false" }
        case .texts(let f): return f(e, w)?.joined(separator: " ")
        }
    }
}

/// The fields, for `kanshi rules fields` and the README.
public enum RuleFieldCatalog {
    public struct Entry: Sendable { public var name: String; public var type: String; public var help: String }

    public static var all: [Entry] {
        Fields.all.keys.sorted().map { n in
            let f = Fields.all[n]!
            return Entry(name: n, type: f.getter.typeName, help: f.help)
        }
    }
}
