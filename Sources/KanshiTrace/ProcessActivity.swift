/// What each process did to files, learnt from behaviour events (of `kanshi trace` or the VM
/// sensor): which paths it opened for writing, truncated, created, renamed and deleted, and
/// when first; which files it read; which process started which. From that, the processes
/// most likely to have done damage, each with its tree and the files to put back.
public final class ProcessActivity {
    /// What was done to a path.
    public struct Change: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Opened for writing (its content may have changed).
        public static let written = Change(rawValue: 1)
        public static let truncated = Change(rawValue: 2)
        /// Opened with O_CREAT (made if it was not there).
        public static let created = Change(rawValue: 4)
        /// Renamed to another path: what was here is gone.
        public static let renamedAway = Change(rawValue: 8)
        /// Another path was renamed or linked to this one: what was here is replaced.
        public static let replaced = Change(rawValue: 16)
        public static let deleted = Change(rawValue: 32)

        /// Changes that can destroy what the path held before.
        public static let destructive: Change = [.written, .truncated, .renamedAway, .replaced, .deleted]

        public var names: [String] {
            [(Change.written, "written"), (.truncated, "truncated"), (.created, "created"), (.renamedAway, "renamed away"),
             (.replaced, "replaced"), (.deleted, "deleted")].compactMap { contains($0.0) ? $0.1 : nil }
        }
    }

    /// One path changed by a process (or a tree of them).
    public struct FileChange: Sendable, Equatable {
        public var path: String
        public var change: Change
        /// The first change's time (ns since the epoch) and log sequence number.
        public var firstNs: UInt64
        public var firstSeq: UInt64
    }

    /// A process as the events show it.
    public struct Process: Sendable {
        public var pid: Int32
        public var parent: Int32?
        /// Its command line (the last exec's), empty when no exec was seen.
        public var argv: [String] = []
        public var firstNs: UInt64
        public var children: [Int32] = []
    }

    /// A process that changed files others had before it, with the tree it leads.
    public struct Suspect: Sendable {
        /// The tree's root: the process itself, or its nearest ancestor running the same program.
        public var pid: Int32
        public var argv: [String]
        /// Every process of the tree (root first).
        public var tree: [Int32]
        /// Paths that existed before it and that the tree changed destructively.
        public var existingChanged: Int
        /// Paths the tree made that did not exist before.
        public var created: Int
        /// Distinct files the tree opened for reading.
        public var filesRead: Int
        /// The tree's first change (ns since the epoch), nil if it changed nothing.
        public var firstChangeNs: UInt64?
        /// Every path the tree changed, with what it did, by path.
        public var changes: [FileChange]
    }

    public private(set) var processes: [Int32: Process] = [:]
    private var changes: [Int32: [String: FileChange]] = [:]
    private var reads: [Int32: Set<String>] = [:]
    /// Events seen.
    public private(set) var events = 0
    /// Whether file changes and reads are kept (false: only the process table, for callers that
    /// keep their own view of files, as `ProcessWindows` does).
    public let recordsFiles: Bool

    public init(recordsFiles: Bool = true) { self.recordsFiles = recordsFiles }

    /// Takes one event into account.
    public func add(_ e: TraceEvent) {
        events += 1
        let pid = e.pid
        if processes[pid] == nil { processes[pid] = Process(pid: pid, parent: nil, firstNs: e.time) }
        switch e.kind {
        case .spawn:
            guard let child = e.child, child != pid else { return }
            if processes[child] == nil { processes[child] = Process(pid: child, parent: pid, firstNs: e.time) }
            if processes[child]?.parent == nil { processes[child]?.parent = pid }
            // A fork runs its parent's program until it execs.
            let inherited = e.argv ?? processes[pid]?.argv ?? []
            if processes[child]?.argv.isEmpty == true { processes[child]?.argv = inherited }
            processes[pid]?.children.append(child)
        case .exec:
            if e.ret == 0, let a = e.argv { processes[pid]?.argv = a }
        case _ where !recordsFiles:
            return
        case .open:
            guard let path = e.path, (e.ret ?? 0) >= 0 else { return }
            let flags = e.flags ?? "r"
            if flags.hasPrefix("r") && !flags.contains(",path") { reads[pid, default: []].insert(path) }
            var c: Change = []
            if flags.hasPrefix("w") || flags.hasPrefix("rw") { c.insert(.written) }
            if flags.contains("trunc") { c.insert(.truncated) }
            if flags.contains("creat") { c.insert(.created) }
            if !c.isEmpty { record(pid, path, c, e) }
        case .truncate:
            guard e.ret == 0, let path = e.path else { return }
            record(pid, path, .truncated, e)
        case .rename:
            guard e.ret == 0, let from = e.path, let to = e.path2 else { return }
            record(pid, from, .renamedAway, e)
            record(pid, to, .replaced, e)
        case .link, .symlink:
            guard e.ret == 0, let to = e.path2 else { return }
            record(pid, to, .replaced, e)
        case .unlink:
            guard e.ret == 0, let path = e.path else { return }
            record(pid, path, .deleted, e)
        case .transfer, .write:
            // Writes through a descriptor opened for writing: already counted by the open.
            return
        default:
            return
        }
    }

    private func record(_ pid: Int32, _ path: String, _ c: Change, _ e: TraceEvent) {
        if var old = changes[pid]?[path] {
            old.change.formUnion(c)
            changes[pid]![path] = old
        } else {
            changes[pid, default: [:]][path] = FileChange(path: path, change: c, firstNs: e.time, firstSeq: e.seq)
        }
    }

    /// The process and every process it started, directly or not (root first).
    public func tree(of root: Int32) -> [Int32] {
        var out: [Int32] = []
        var seen: Set<Int32> = []
        var stack = [root]
        while let p = stack.popLast() {
            guard seen.insert(p).inserted else { continue }
            out.append(p)
            stack.append(contentsOf: (processes[p]?.children ?? []).reversed())
        }
        return out
    }

    /// The root of the tree `pid` belongs to for blame: its nearest chain of ancestors running
    /// the same program (a program that forks workers is one suspect), else itself.
    public func blameRoot(of pid: Int32) -> Int32 {
        var p = pid
        let program = processes[pid]?.argv.first
        while let parent = processes[p]?.parent, parent != p, let pp = processes[parent],
              program != nil, pp.argv.first == program {
            p = pp.pid
        }
        return p
    }

    /// Changes made by a tree at or after `sinceNs` to paths under `prefix` (a directory).
    public func changes(ofTree tree: [Int32], sinceNs: UInt64, under prefix: String) -> [FileChange] {
        var merged: [String: FileChange] = [:]
        for pid in tree {
            for (path, c) in changes[pid] ?? [:] where c.firstNs >= sinceNs && Self.isUnder(path, prefix) {
                if var m = merged[path] {
                    m.change.formUnion(c.change)
                    if c.firstNs < m.firstNs { m.firstNs = c.firstNs; m.firstSeq = c.firstSeq }
                    merged[path] = m
                } else {
                    merged[path] = c
                }
            }
        }
        return merged.values.sorted { ($0.firstNs, $0.path) < ($1.firstNs, $1.path) }
    }

    /// Processes ranked by the damage they did since `sinceNs` under `prefix`: paths that
    /// `existedBefore` says were there and that the process wrote, truncated, renamed away,
    /// replaced or deleted; ties broken by the files it read. Each suspect is then widened to
    /// its tree (`blameRoot`, and everything that root started), and listed once.
    public func suspects(sinceNs: UInt64, under prefix: String, existedBefore: (String) -> Bool) -> [Suspect] {
        var existing: [String: Bool] = [:]
        func existed(_ p: String) -> Bool {
            if let e = existing[p] { return e }
            let e = existedBefore(p)
            existing[p] = e
            return e
        }
        func readCount(_ tree: [Int32]) -> Int {
            var read: Set<String> = []
            for p in tree { for r in reads[p] ?? [] where Self.isUnder(r, prefix) { read.insert(r) } }
            return read.count
        }
        func destroyed(_ c: [FileChange]) -> Int { c.filter { !$0.change.isDisjoint(with: .destructive) && existed($0.path) }.count }
        // Each process on its own first: a parent shell is not blamed for what its children did.
        let own = Set(changes.keys).union(reads.keys).compactMap { pid -> (pid: Int32, destroyed: Int, read: Int)? in
            let c = changes(ofTree: [pid], sinceNs: sinceNs, under: prefix)
            let r = readCount([pid])
            return c.isEmpty && r == 0 ? nil : (pid, destroyed(c), r)
        }.sorted { ($0.destroyed, $0.read, $1.pid) > ($1.destroyed, $1.read, $0.pid) }
        var out: [Suspect] = []
        var blamed: Set<Int32> = []
        for o in own where !blamed.contains(o.pid) {
            let root = blameRoot(of: o.pid)
            let tree = tree(of: root)
            blamed.formUnion(tree)
            let c = changes(ofTree: tree, sinceNs: sinceNs, under: prefix)
            out.append(Suspect(pid: root, argv: processes[root]?.argv ?? [], tree: tree, existingChanged: destroyed(c),
                               created: c.filter { !existed($0.path) }.count, filesRead: readCount(tree),
                               firstChangeNs: c.map(\.firstNs).min(), changes: c))
        }
        return out
    }

    /// Whether `path` is `prefix` or inside it ("/" or "": any absolute path).
    public static func isUnder(_ path: String, _ prefix: String) -> Bool {
        if prefix == "/" || prefix.isEmpty { return path.hasPrefix("/") }
        let p = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        return path == p || path.hasPrefix(p + "/")
    }
}
