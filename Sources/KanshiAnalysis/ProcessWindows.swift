import KanshiTrace

/// Per-process-tree window features from behaviour events (the VM sensor's or `kanshi
/// trace`'s log): what each tree did to files that were there before it, window by window.
/// Only the events the default logs carry are used (opens with their flags, renames,
/// deletions, truncations, process starts), so a model trained on recorded logs runs on a
/// live sensor unchanged.
///
/// A tree is a process with what it started, rooted at its nearest ancestor running the same
/// program (`ProcessActivity.blameRoot`). A file "was there before" the tree when someone
/// opened it without O_CREAT (or the tree's own open says so) and the tree did not make it.
public final class ProcessWindows {
    public static let names = [
        "destroyed", "read_then_replaced", "created", "copies_of_read", "renames", "renames_appending",
        "deleted_after_read", "files_read", "directories", "destroyed_total", "read_total", "created_total",
        "destroyed_per_read", "written_entropy", "high_entropy_files", "high_entropy_total",
        "bytes_written", "directories_read", "disk_write_bytes", "disk_write_entropy",
    ]

    /// Written data at least this random (bits per byte) counts as encrypted or compressed.
    public static let highEntropy = 7.5

    /// One tree's window.
    public struct Row: Sendable {
        public var root: Int32
        public var windowStart: UInt64
        public var values: [Float]
        /// Files the tree had destroyed by the end of the window (since it started).
        public var destroyedTotal: Int
        /// Whether the window is still open (more may come).
        public var open: Bool
    }

    struct Counters {
        var destroyed = 0, readThenReplaced = 0, created = 0, copies = 0, renames = 0, renamesAppending = 0
        var deletedAfterRead = 0, filesRead = 0
        var directories: Set<String> = []
        /// Bytes written into files closed in the window; of those with an entropy from the VM sensor, their bytes and entropy.
        var written: Int64 = 0
        var writtenBytes: Int64 = 0, entropyWeighted = 0.0
        /// Directories of the files read in the window.
        var directoriesRead: Set<String> = []
        /// Files the tree destroyed or made as copies of what it read, closed with high-entropy content.
        var highEntropyFiles = 0
        var isEmpty: Bool { destroyed + readThenReplaced + created + copies + renames + deletedAfterRead + filesRead + highEntropyFiles == 0 && written == 0 }
    }

    final class Tree {
        var read: Set<String> = []
        var destroyed: Set<String> = []
        var created: Set<String> = []
        var window: UInt64 = 0
        var counters = Counters()
        var firstDestroyNs: UInt64?
        var copies: Set<String> = []
        var highEntropy: Set<String> = []
        /// Bytes the tree wrote into files under the prefix (their closes, as the VM sensor logs them).
        var written: Int64 = 0
    }

    public let windowNs: UInt64
    /// Only paths under this directory count (the data disk's mount point in the guest; "/" for all).
    public let prefix: String
    /// The process table (who started whom, with what command line); files are kept here.
    public let activity = ProcessActivity(recordsFiles: false)
    private var trees: [Int32: Tree] = [:]
    private var knownExisting: Set<String> = []
    private var createdBy: [String: Int32] = [:]
    private var closed: [Row] = []
    /// The latest event time seen.
    public private(set) var nowNs: UInt64 = 0

    public init(windowNs: UInt64 = 1_000_000_000, under prefix: String = "/") {
        self.windowNs = windowNs
        self.prefix = prefix
    }

    /// Takes one event into account; windows that ended before it are closed.
    public func add(_ e: TraceEvent) {
        activity.add(e)
        nowNs = max(nowNs, e.time)
        let w = e.time / windowNs
        closeWindows(before: w)
        guard let path = e.path, path.hasPrefix("/") else { return }
        let root = activity.blameRoot(of: e.pid)
        switch e.kind {
        case .open:
            guard (e.ret ?? 0) >= 0, under(path) else { return }
            let flags = e.flags ?? "r"
            guard !flags.contains(",path") else { return }
            let t = tree(root, w)
            let creat = flags.contains("creat"), trunc = flags.contains("trunc")
            let reads = flags.hasPrefix("r"), writes = flags.hasPrefix("w") || flags.hasPrefix("rw") || trunc
            let existed = knownExisting.contains(path) || !creat
            if reads {
                knownExisting.insert(path)
                if t.read.insert(path).inserted { t.counters.filesRead += 1 }
                t.counters.directoriesRead.insert(Self.parent(path))
            }
            guard writes else { return }
            if existed && createdBy[path] != root {
                destroy(path, t)
            } else if !existed {
                createdBy[path] = root
                knownExisting.insert(path)
                if t.created.insert(path).inserted {
                    t.counters.created += 1
                    if isCopy(path, of: t.read) { t.counters.copies += 1; t.copies.insert(path) }
                }
            }
        case .truncate:
            guard e.ret == 0, under(path), createdBy[path] != root else { return }
            destroy(path, tree(root, w))
        case .close:
            guard under(path), let bytes = e.bytes, bytes > 0 else { return }
            let t = tree(root, w)
            t.written += bytes
            t.counters.written += bytes
            guard let entropy = e.entropy else { return }
            t.counters.writtenBytes += bytes
            t.counters.entropyWeighted += entropy * Double(bytes)
            if entropy >= Self.highEntropy, t.destroyed.contains(path) || t.copies.contains(path), t.highEntropy.insert(path).inserted {
                t.counters.highEntropyFiles += 1
            }
        case .rename:
            guard e.ret == 0, let to = e.path2, under(path) || under(to) else { return }
            let t = tree(root, w)
            t.counters.renames += 1
            let from = Self.baseName(path), into = Self.baseName(to)
            if into.count > from.count && into.hasPrefix(from + ".") { t.counters.renamesAppending += 1 }
            if under(path) && createdBy[path] != root { destroy(path, t) }
            if under(to) && knownExisting.contains(to) && createdBy[to] != root { destroy(to, t) }
            knownExisting.remove(path)
            knownExisting.insert(to)
            createdBy[to] = createdBy.removeValue(forKey: path)
        case .unlink:
            guard e.ret == 0, under(path) else { return }
            let t = tree(root, w)
            if createdBy[path] != root {
                destroy(path, t)
                if t.read.contains(path) { t.counters.deletedAfterRead += 1 }
            }
            knownExisting.remove(path)
            createdBy.removeValue(forKey: path)
        default:
            return
        }
    }

    /// The whole disk's writes (every process: a disk cannot say whose), per window: bytes and
    /// their mean entropy (0-1), given to every tree's row of the same second. Writes reach the
    /// disk seconds after the calls that made them (the guest's page cache); those of a window
    /// that come after it closed are not counted.
    private var disk: [UInt64: (bytes: UInt64, entropyWeighted: Double)] = [:]

    /// Takes one write of the disk into account (its entropy: byte entropy / 8).
    public func addDiskWrite(_ a: Access) {
        let w = a.timeNs / windowNs
        var d = disk[w] ?? (0, 0)
        d.bytes += UInt64(a.size)
        d.entropyWeighted += Double(a.entropy) * Double(a.size)
        disk[w] = d
    }

    /// Rows as the table a model reads.
    public static func table(_ rows: [Row]) -> FeatureTable {
        FeatureTable(names: names, values: rows.flatMap(\.values), windowStart: rows.map(\.windowStart),
                     writtenBytes: [UInt64](repeating: 0, count: rows.count))
    }

    /// Closes every window that ended by `ns` (call it as time passes without events).
    public func advance(to ns: UInt64) {
        nowNs = max(nowNs, ns)
        closeWindows(before: ns / windowNs)
    }

    /// The windows closed since the last call, oldest first.
    public func drainClosed() -> [Row] {
        defer { closed.removeAll() }
        return closed
    }

    /// Each tree's window still open, as it stands.
    public func openRows() -> [Row] {
        trees.compactMap { root, t in t.counters.isEmpty ? nil : row(root, t, open: true) }.sorted { $0.root < $1.root }
    }

    /// Every window of every tree at once (a recorded log): closed ones, then the open ones.
    public func allRows() -> [Row] {
        closeWindows(before: UInt64.max)
        return drainClosed()
    }

    private func under(_ path: String) -> Bool { ProcessActivity.isUnder(path, prefix) }

    private func tree(_ root: Int32, _ w: UInt64) -> Tree {
        if let t = trees[root] { return t }
        let t = Tree()
        t.window = w
        trees[root] = t
        return t
    }

    /// When the tree rooted at `root` first destroyed a file that was there before it.
    public func firstDestroyNs(of root: Int32) -> UInt64? { trees[root]?.firstDestroyNs }

    /// Bytes the tree rooted at `root` has written into files under the prefix (counted at their close).
    public func bytesWritten(by root: Int32) -> Int64 { trees[root]?.written ?? 0 }

    private func destroy(_ path: String, _ t: Tree) {
        guard t.destroyed.insert(path).inserted else { return }
        if t.firstDestroyNs == nil { t.firstDestroyNs = nowNs }
        t.counters.destroyed += 1
        t.counters.directories.insert(Self.parent(path))
        if t.read.contains(path) { t.counters.readThenReplaced += 1 }
    }

    private func closeWindows(before w: UInt64) {
        for (root, t) in trees where t.window < w {
            if !t.counters.isEmpty { closed.append(row(root, t, open: false)) }
            t.counters = Counters()
            t.window = w == UInt64.max ? t.window + 1 : w
        }
        // The disk's counts are kept for the windows still open (and a few behind, for late callers).
        if w != UInt64.max, w > 8 { for k in disk.keys where k < w - 8 { disk.removeValue(forKey: k) } }
    }

    private func row(_ root: Int32, _ t: Tree, open: Bool) -> Row {
        let c = t.counters
        let values: [Float] = [
            Float(c.destroyed), Float(c.readThenReplaced), Float(c.created), Float(c.copies), Float(c.renames),
            Float(c.renamesAppending), Float(c.deletedAfterRead), Float(c.filesRead), Float(c.directories.count),
            Float(t.destroyed.count), Float(t.read.count), Float(t.created.count),
            Float(t.destroyed.count) / Float(max(1, t.read.count)),
            c.writtenBytes > 0 ? Float(c.entropyWeighted / Double(c.writtenBytes)) : 0,
            Float(c.highEntropyFiles), Float(t.highEntropy.count),
            Float(c.written), Float(c.directoriesRead.count),
            Float(disk[t.window]?.bytes ?? 0),
            disk[t.window].map { $0.bytes > 0 ? Float($0.entropyWeighted / Double($0.bytes)) : 0 } ?? 0,
        ]
        return Row(root: root, windowStart: t.window &* windowNs, values: values, destroyedTotal: t.destroyed.count, open: open)
    }

    /// `path` is a read file's copy under a new extension (x -> x.enc, x -> x.locked).
    private func isCopy(_ path: String, of read: Set<String>) -> Bool {
        guard let dot = path.lastIndex(of: "."), path[..<dot].count > 1 else { return false }
        let stem = String(path[..<dot])
        return read.contains(stem)
    }

    static func parent(_ path: String) -> String { String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) }

    static func baseName(_ path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}
