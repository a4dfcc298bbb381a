import Foundation
import KanshiCore
import KanshiTrace

/// One thing the rules look at: a behaviour event (`kanshi trace`, the VM sensor), a block
/// record or a note of a journal, or the match of a silent rule that other rules count.
/// A class: conditions, sequences and counts hand it around and keep it without copying it.
public final class RuleEvent: @unchecked Sendable {
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
    public var kind: String { EventKinds.all[kindIndex] }
    /// `kind`'s number in `EventKinds.all` (for dispatching to rules).
    public var kindIndex: Int
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

    /// True for the engine's reused event: what keeps it must copy it (`kept`).
    private var reused = false
    /// Whether this is the engine's reused event (its byte slots are kept from event to event).
    var isReused: Bool { reused }
    /// Changes with every event the reused one becomes (the byte slots filled for another are stale).
    private(set) var epoch: UInt64 = 1
    /// Text fields as bytes (see `EventBytes.swift`), allocated on first use.
    private var slots: UnsafeMutablePointer<ByteSlot>?
    var slotStorage: UnsafeMutablePointer<ByteSlot> {
        if let slots { return slots }
        let s = ByteSlots.allocate()
        slots = s
        return s
    }
    /// The copy of this (reused) event that sequences keep, made once per event.
    private var keptCopy: RuleEvent?
    private var keptEpoch: UInt64 = 0

    /// Macros' values in this event (see `MacroMemo`): epoch << 1 | value.
    private var memo: UnsafeMutablePointer<UInt64>?

    deinit {
        if let slots { ByteSlots.free(slots) }
        memo?.deallocate()
    }

    /// Macro `slot`'s value in this event: `body` the first time.
    @inline(__always)
    func memoized(_ slot: Int, _ body: () -> Bool) -> Bool {
        let m: UnsafeMutablePointer<UInt64>
        if let memo { m = memo } else {
            m = .allocate(capacity: MacroMemo.limit)
            m.initialize(repeating: 0, count: MacroMemo.limit)
            memo = m
        }
        let v = m[slot]
        if v >> 1 == epoch { return v & 1 != 0 }
        let r = body()
        m[slot] = epoch << 1 | (r ? 1 : 0)
        return r
    }

    public init(_ e: TraceEvent) {
        source = .behaviour; kindIndex = EventKinds.ordinal(e.kind); seq = e.seq; time = e.time; trace = e
    }

    private init(copying o: RuleEvent) {
        source = o.source; kindIndex = o.kindIndex; seq = o.seq; time = o.time; trace = o.trace; block = o.block
        note = o.note; noteEvent = o.noteEvent; segment = o.segment; offset = o.offset; rule = o.rule; evidence = o.evidence
    }

    /// Makes this (the engine's reused event) the behaviour event `e`.
    func reuse(_ e: consuming TraceEvent) {
        reused = true
        epoch &+= 1
        kindIndex = EventKinds.ordinal(e.kind); seq = e.seq; time = e.time; trace = consume e
    }

    /// The event to keep beyond the current one: itself, or a copy of the reused one.
    func kept() -> RuleEvent {
        guard reused else { return self }
        if keptEpoch == epoch, let k = keptCopy { return k }
        let k = RuleEvent(copying: self)
        keptCopy = k
        keptEpoch = epoch
        return k
    }

    public init(block op: BlockEvent.Operation, lba: UInt64, length: UInt32, entropy: Double?, time: UInt64, seq: UInt64,
                segment: UInt64, offset: UInt64) {
        source = .block
        kindIndex = EventKinds.index[Self.blockKind(op)]!
        self.seq = seq; self.time = time; self.segment = segment; self.offset = offset
        block = Block(lba: lba, length: length, entropy: entropy)
    }

    public init(note json: String, event: String?, time: UInt64, seq: UInt64, segment: UInt64, offset: UInt64) {
        source = .note; kindIndex = EventKinds.note; self.seq = seq; self.time = time; self.segment = segment; self.offset = offset
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

    /// A detector's alert, when this is its journal note (read once, for all its fields).
    lazy var verdict: [String: Any]? = {
        guard noteEvent == "detector-alert", let note else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(note.utf8))) as? [String: Any]
    }()

    /// A silent rule's match, carrying the last event's fields.
    init(match rule: String, last: RuleEvent, evidence: [Evidence]) {
        source = .match; kindIndex = EventKinds.match
        seq = last.seq; time = last.time; trace = last.trace; block = last.block; note = last.note; noteEvent = last.noteEvent
        segment = last.segment; offset = last.offset
        self.rule = rule
        self.evidence = evidence
    }

    /// The event as evidence: its `seq` (in its log or journal) and, in a journal, where.
    public var asEvidence: Evidence { Evidence(seq: seq, segment: segment, offset: offset, time: time, kindIndex: kindIndex) }
}

/// Every event kind a rule can name (`ev`), numbered.
public enum EventKinds {
    public static let all: [String] = TraceEvent.Kind.allCases.map(\.rawValue)
        + BlockEvent.Operation.allCases.map(RuleEvent.blockKind) + ["note", "match"]
    public static let index: [String: Int] = Dictionary(uniqueKeysWithValues: all.enumerated().map { ($1, $0) })
    /// A behaviour kind's number (its place in `TraceEvent.Kind.allCases`, which `all` starts with).
    @inline(__always)
    static func ordinal(_ k: TraceEvent.Kind) -> Int {
        switch k {
        case .open: 0
        case .close: 1
        case .read: 2
        case .write: 3
        case .dup: 4
        case .pipe: 5
        case .socket: 6
        case .connect: 7
        case .bind: 8
        case .accept: 9
        case .send: 10
        case .recv: 11
        case .rename: 12
        case .link: 13
        case .symlink: 14
        case .unlink: 15
        case .truncate: 16
        case .mmap: 17
        case .transfer: 18
        case .exec: 19
        case .spawn: 20
        case .thread: 21
        case .exit: 22
        case .utime: 23
        case .managed: 24
        case .blocked: 25
        case .signal: 26
        case .dropped: 27
        case .notice: 28
        case .call: 29
        }
    }
    static let note = index["note"]!
    static let match = index["match"]!

    /// A set of kinds as bits (there are fewer than 64).
    static func mask(_ kinds: Set<String>) -> UInt64 {
        kinds.reduce(UInt64(0)) { $0 | (index[$1].map { UInt64(1) << UInt64($0) } ?? 0) }
    }
}

/// One event behind an alert. (Plain data, no strings: sequences and counts copy many.)
public struct Evidence: Sendable, Equatable, Hashable {
    public var seq: UInt64?
    public var segment: UInt64?
    public var offset: UInt64?
    public var time: UInt64
    /// The kind's number in `EventKinds.all`.
    var kindIndex: Int
    /// The event's kind (`ev`).
    public var kind: String { EventKinds.all[kindIndex] }

    public init(seq: UInt64?, segment: UInt64? = nil, offset: UInt64? = nil, time: UInt64, kind: String) {
        self.init(seq: seq, segment: segment, offset: offset, time: time, kindIndex: EventKinds.index[kind] ?? EventKinds.note)
    }

    init(seq: UInt64?, segment: UInt64?, offset: UInt64?, time: UInt64, kindIndex: Int) {
        self.seq = seq; self.segment = segment; self.offset = offset; self.time = time; self.kindIndex = kindIndex
    }
}

/// What the rules know beside the events: the process table, the files that became managed,
/// the protected (confidential) paths.
public final class RuleWorld {
    final class Process {
        let pid: Int32
        var parent: Int32?
        var argv: [String] = []
        var name: String?
        var children: [Int32] = []
        init(pid: Int32, parent: Int32?) { self.pid = pid; self.parent = parent }

        func setArgv(_ a: [String]) {
            argv = a
            name = a.first.map(Text.baseName)
        }
    }

    private(set) var processes: [Int32: Process] = [:]
    var managedFiles: Set<String> = []
    var managedProcesses: Set<Int32> = []
    let protectedPrefixes: [String]

    public init(protected: [String] = []) {
        protectedPrefixes = protected
    }

    private func process(_ pid: Int32) -> Process {
        if let p = lookup(pid) { return p }
        let p = Process(pid: pid, parent: nil)
        processes[pid] = p
        lastPid = nil
        return p
    }

    /// The last process looked up (consecutive events mostly come from one process): no
    /// dictionary hashing for it. Forgotten whenever `processes` changes.
    private var lastPid: Int32?
    private var lastProcess: Process?

    @inline(__always)
    private func lookup(_ pid: Int32) -> Process? {
        if pid == lastPid { return lastProcess }
        let p = processes[pid]
        lastPid = pid
        lastProcess = p
        return p
    }

    /// Process starts and program changes (as `ProcessActivity` keeps them), and what became
    /// managed (read field by field: the event is not copied).
    func add(_ e: RuleEvent) {
        switch e.trace?.kind {
        case .spawn?, .exec?, .managed?:
            add(e.trace!.kind, pid: e.trace!.pid, child: e.trace!.child, argv: e.trace!.argv, ret: e.trace!.ret, path: e.trace!.path)
        default:
            break
        }
    }

    private func add(_ kind: TraceEvent.Kind, pid: Int32, child: Int32?, argv: [String]?, ret: Int64?, path: String?) {
        switch kind {
        case .spawn:
            guard let child, child != pid else { return }
            let parent = process(pid)
            let c = processes[child] ?? Process(pid: child, parent: pid)
            processes[child] = c
            lastPid = nil
            ancestorCache[child] = nil
            if c.parent == nil { c.parent = pid }
            // A fork runs its parent's program until it execs.
            if c.argv.isEmpty { c.setArgv(argv ?? parent.argv) }
            parent.children.append(child)
            spawns += 1
        case .exec:
            if ret == 0, let a = argv {
                process(pid).setArgv(a)
                execs += 1
            }
        case .managed:
            if let p = path { managedFiles.insert(p) } else { managedProcesses.insert(pid) }
        default:
            break
        }
    }

    func isProtected(_ path: String) -> Bool {
        if managedFiles.contains(path) { return true }
        for p in protectedPrefixes where path == p || path.hasPrefix(p.hasSuffix("/") ? p : p + "/") { return true }
        return false
    }

    func argv(_ pid: Int32) -> [String]? { lookup(pid)?.argv }
    func name(_ pid: Int32) -> String? { lookup(pid)?.name }
    func parent(_ pid: Int32) -> Int32? { lookup(pid)?.parent }

    /// The root of the tree `pid` belongs to: its nearest chain of ancestors running the same
    /// program (a program that forks workers is one tree), else itself.
    func treeRoot(_ pid: Int32) -> Int32 {
        if let c = rootCache[pid], c.execs == execs, c.spawns == spawns { return c.root }
        let root = computeTreeRoot(pid)
        rootCache[pid] = (execs, spawns, root)
        return root
    }

    /// Bumped by every new process (a tree can gain an ancestor's link); with `execs`, when a
    /// cached tree root is made again.
    private var spawns = 0
    private var rootCache: [Int32: (execs: Int, spawns: Int, root: Int32)] = [:]

    private func computeTreeRoot(_ pid: Int32) -> Int32 {
        guard var p = processes[pid], let program = p.argv.first else { return pid }
        while let parent = p.parent, parent != p.pid, let pp = processes[parent], pp.argv.first == program { p = pp }
        return p.pid
    }

    /// The processes an alert's actions (kill, isolate) act on: its process, or the whole tree
    /// for rules keyed by tree.
    public func processes(actedOnBy alert: RuleAlert) -> [Int32] {
        guard let pid = alert.pid else { return [] }
        return alert.key["proc.tree"] != nil ? tree(of: pid) : [pid]
    }

    /// The process tree `pid` belongs to (rooted as `proc.tree` is), root first.
    public func tree(of pid: Int32) -> [Int32] {
        var out: [Int32] = []
        var seen: Set<Int32> = []
        var stack = [treeRoot(pid)]
        while let p = stack.popLast() {
            guard seen.insert(p).inserted else { continue }
            out.append(p)
            stack.append(contentsOf: (processes[p]?.children ?? []).reversed())
        }
        return out
    }

    /// Bumped by every exec: cached ancestor names older than it are made again.
    private var execs = 0
    private var ancestorCache: [Int32: (execs: Int, names: [String])] = [:]

    func ancestorNames(_ pid: Int32) -> [String] {
        if let c = ancestorCache[pid], c.execs == execs { return c.names }
        let names = computeAncestorNames(pid)
        ancestorCache[pid] = (execs, names)
        return names
    }

    private func computeAncestorNames(_ pid: Int32) -> [String] {
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
}

/// Path parts and substring tests on strings (output templates, keys, the slow path): the
/// byte functions of `Bytes` (the conditions' fast path) on the string's UTF-8, so both ways
/// give the same parts. A slash or dot never splits a UTF-8 sequence, so every part is whole text.
enum Text {
    private static func onBytes<R>(_ s: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var s = s
        return s.withUTF8 { body(UnsafeRawBufferPointer($0)) }
    }

    private static func part(_ path: String, _ cut: (UnsafeRawBufferPointer) -> UnsafeRawBufferPointer) -> String {
        onBytes(path) { String(decoding: cut($0), as: UTF8.self) }
    }

    static func baseName(_ path: String) -> String { part(path, Bytes.baseName) }
    static func directory(_ path: String) -> String { part(path, Bytes.directory) }
    /// The extension of the last component, without the dot ("" when none).
    static func fileExtension(_ path: String) -> String { part(path, Bytes.fileExtension) }
    /// The path without the extension of its last component.
    static func withoutExtension(_ path: String) -> String { part(path, Bytes.withoutExtension) }

    /// Whether `text` holds `part` (bytes compared).
    static func contains(_ text: String, _ part: String) -> Bool {
        onBytes(text) { t in onBytes(part) { Bytes.contains(t, $0) } }
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
            guard e.trace != nil else { return nil }
            return e.trace!.managed || w.managedProcesses.contains(e.trace!.pid)
        }
        flag("blocked", "the sensor refused the call") { e, _ in e.trace?.blocked }
        flag("protected", "the event's path (or new path) is protected (--protect) or a managed file") { e, w in
            guard e.trace != nil else { return nil }
            return e.trace!.path.map(w.isProtected) == true || e.trace!.path2.map(w.isProtected) == true
        }
        number("entropy", "bits per byte (0-8) of the data written: through a closed file (VM sensor), or a block write") { e, _ in
            e.trace?.entropy ?? e.block?.entropy
        }
        for (p, g) in [("path", { (e: RuleEvent) in e.trace?.path }), ("path2", { (e: RuleEvent) in e.trace?.path2 })] {
            text(p + ".name", "the last component of \(p)") { e, _ in g(e).map(Text.baseName) }
            text(p + ".dir", "the directory of \(p)") { e, _ in g(e).map(Text.directory) }
            text(p + ".ext", "the extension of \(p)'s last component, without the dot (empty: none)") { e, _ in g(e).map(Text.fileExtension) }
            text(p + ".noext", "\(p) without its last extension (a.docx.enc: a.docx)") { e, _ in g(e).map(Text.withoutExtension) }
        }
        text("proc.name", "the process's program name (last component of argv[0])") { e, w in pid(e).flatMap(w.name) }
        text("proc.exe", "the process's argv[0]") { e, w in pid(e).flatMap(w.argv)?.first }
        text("proc.cmdline", "the process's command line") { e, w in pid(e).flatMap(w.argv)?.joined(separator: " ") }
        number("proc.ppid", "the parent's pid") { e, w in pid(e).flatMap(w.parent).map(Double.init) }
        text("proc.pname", "the parent's program name") { e, w in pid(e).flatMap(w.parent).flatMap(w.name) }
        texts("proc.anames", "the program names of every ancestor, nearest first") { e, w in pid(e).map(w.ancestorNames) }
        number("proc.tree", "the pid at the root of the process's tree (its nearest ancestors running the same program)") { e, w in
            pid(e).map { Double(w.treeRoot($0)) }
        }
        number("lba", "first sector (block records)") { e, _ in e.block.map { Double($0.lba) } }
        number("length", "bytes (block records)") { e, _ in e.block.map { Double($0.length) } }
        number("offset", "the record's offset in its journal") { e, _ in e.offset.map(Double.init) }
        text("note", "a journal note's JSON text") { e, _ in e.note }
        text("note.event", "a journal note's \"event\" (serve-start, guest-job-start, rollback-end...)") { e, _ in e.noteEvent }
        text("rule", "the silent rule a match event comes from") { e, _ in e.rule }
        text("verdict.detector", "a detector's alert (a journal note detector-alert): blocks or processes") { e, _ in e.verdict?["detector"] as? String }
        number("verdict.probability", "a detector's alert: the probability of ransomware it gave") { e, _ in (e.verdict?["probability"] as? NSNumber)?.doubleValue }
        number("verdict.pid", "the process detector's alert: the root of the tree it named") { e, _ in (e.verdict?["pid"] as? NSNumber)?.doubleValue }
        number("verdict.window", "a detector's alert: the start of the window it fired on (ns)") { e, _ in (e.verdict?["windowStartNs"] as? NSNumber)?.doubleValue }
        texts("verdict.argv", "the process detector's alert: the named tree's command line") { e, _ in e.verdict?["argv"] as? [String] }
        flag("verdict.acting", "a detector's alert: whether that detector acts on it (false: it only watched beside another)") { e, _ in e.verdict?["acting"] as? Bool }
        return f.mapValues { (getter: $0.0, help: $0.1) }
    }()

    /// The text fields' slots (every text field but `ev`, which is tested as bits, and the path
    /// parts, which are slices of their path's).
    static let slots: [String: Int] = {
        let names = all.filter { n, f in
            guard case .text = f.getter else { return false }
            return n != "ev" && !(n.hasPrefix("path.") || n.hasPrefix("path2."))
        }.keys.sorted()
        return Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) })
    }()
    static let slotCount = slots.count

    /// A text field's bytes in an event (nil: it has none, the slow path tests it).
    static func byteGetter(_ name: String) -> ByteGetter? {
        for base in ["path", "path2"] where name.hasPrefix(base + ".") {
            guard let b = byteGetter(base) else { return nil }
            switch name.dropFirst(base.count + 1) {
            case "name": return { e, w in b(e, w).map(Bytes.baseName) }
            case "dir": return { e, w in b(e, w).map(Bytes.directory) }
            case "ext": return { e, w in b(e, w).map(Bytes.fileExtension) }
            case "noext": return { e, w in b(e, w).map(Bytes.withoutExtension) }
            default: return nil
            }
        }
        guard let slot = slots[name], case .text(let g)? = all[name]?.getter else { return nil }
        return { e, w in e.bytes(slot, w, g) }
    }

    /// Shorthands for `by`: a name or a list of fields.
    static let keys: [String: [String]] = [
        "process": ["vm", "pid"], "tree": ["vm", "proc.tree"], "file": ["vm", "path"], "vm": ["vm"],
    ]

    /// A field's value as part of a key (absent: `.none`).
    static func keyPart(_ g: Getter, _ e: RuleEvent, _ w: RuleWorld) -> KeyPart {
        switch g {
        case .text(let f): return f(e, w).map(KeyPart.text) ?? .none  // (see `KeyPart.text`)
        case .number(let f): return f(e, w).map(KeyPart.number) ?? .none
        case .flag(let f): return f(e, w).map { .number($0 ? 1 : 0) } ?? .none
        case .texts(let f): return f(e, w).map { .text($0.joined(separator: " ")) } ?? .none
        }
    }

    /// A field's value as text (keys, distinct values, output templates); nil when absent.
    static func text(_ g: Getter, _ e: RuleEvent, _ w: RuleWorld) -> String? {
        switch g {
        case .text(let f): return f(e, w)
        case .number(let f):
            guard let v = f(e, w) else { return nil }
            return v == v.rounded() && abs(v) < 9.2e18 ? String(Int64(v)) : String(v)
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

/// One field's value in a key. Text carries its own 64-bit hash, made once from its bytes:
/// dictionaries of open sequences hash that, not the string (String hashing is slow).
enum KeyPart: Hashable {
    case none
    case string(String, UInt64)
    case number(Double)

    static func text(_ s: String) -> KeyPart { .string(s, hash(s)) }

    /// `hash` of a text's UTF-8.
    static func hash(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    /// A fast 64-bit hash of bytes (8 at a time, multiply and rotate; not for adversaries: a
    /// collision only costs a string comparison).
    static func hash(_ b: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0x9e37_79b9_7f4a_7c15 ^ UInt64(b.count)
        var i = 0
        while i + 8 <= b.count {
            h = (h ^ b.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xff51_afd7_ed55_8ccd
            h = (h << 31) | (h >> 33)
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < b.count { tail |= UInt64(b[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* 0xc4ce_b9fe_1a85_ec53
        return h ^ (h >> 29)
    }

    static func == (x: KeyPart, y: KeyPart) -> Bool {
        switch (x, y) {
        case (.none, .none): return true
        case (.string(let a, let ha), .string(let b, let hb)): return ha == hb && a == b
        case (.number(let a), .number(let b)): return a == b
        default: return false
        }
    }

    func hash(into h: inout Hasher) { h.combine(hash64) }

    /// This part's 64-bit hash (a number by its bits; -0 and 0 alike).
    var hash64: UInt64 {
        switch self {
        case .none: 0x5bd1_e995
        case .string(_, let x): x
        case .number(let d): (d == 0 ? 0 : d).bitPattern &* 0xff51_afd7_ed55_8ccd
        }
    }
}

/// The values of a rule's key fields: sequences and counts keep their state by it. Its hash is
/// mixed as parts are added (a dictionary hashes one word, not every part again).
struct EventKey: Hashable {
    var a = KeyPart.none, b = KeyPart.none, c = KeyPart.none, d = KeyPart.none
    var rest: [KeyPart] = []
    var count = 0
    private var mixed: UInt64 = 0x243f_6a88_85a3_08d3

    static func == (x: EventKey, y: EventKey) -> Bool {
        x.mixed == y.mixed && x.count == y.count && x.a == y.a && x.b == y.b && x.c == y.c && x.d == y.d && x.rest == y.rest
    }

    func hash(into h: inout Hasher) { h.combine(mixed) }

    mutating func append(_ p: KeyPart) {
        mixed = (mixed ^ p.hash64) &* 0x9e37_79b9_7f4a_7c15
        mixed ^= mixed >> 32
        switch count {
        case 0: a = p
        case 1: b = p
        case 2: c = p
        case 3: d = p
        default: rest.append(p)
        }
        count += 1
    }
}
