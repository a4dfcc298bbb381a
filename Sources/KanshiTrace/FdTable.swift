/// What a descriptor of a traced process refers to.
struct FdInfo: Sendable {
    enum Kind: String, Sendable { case file, pipe, socket, other }
    var kind: Kind
    /// File path, or "pipe:[ino]", "socket:[ino]", "anon_inode:..." as /proc shows it.
    var name: String
    /// Inode of a pipe or socket.
    var inode: UInt64 = 0
    /// Socket address family and peer once known (connect/accept).
    var peer: String? = nil

    /// Classifies a /proc/PID/fd link target.
    init(link: String) {
        name = link
        if link.hasPrefix("/") { kind = .file }
        else if link.hasPrefix("pipe:[") { kind = .pipe; inode = FdInfo.inode(link) }
        else if link.hasPrefix("socket:[") { kind = .socket; inode = FdInfo.inode(link) }
        else { kind = .other }
    }

    static func inode(_ link: String) -> UInt64 {
        guard let open = link.firstIndex(of: "["), let close = link.lastIndex(of: "]"), open < close else { return 0 }
        return UInt64(link[link.index(after: open)..<close]) ?? 0
    }
}

/// Descriptor table of one process (shared by its threads), filled from the
/// calls the tracer sees and, for descriptors it has not seen, from /proc.
final class FdTable {
    private var fds: [Int32: FdInfo] = [:]
    let pid: Int32

    init(pid: Int32, copying other: FdTable? = nil) {
        self.pid = pid
        if let other { fds = other.fds }
    }

    func lookup(_ fd: Int32) -> FdInfo? {
        guard fd >= 0 else { return nil }
        if let f = fds[fd] { return f }
        guard let link = Ptrace.link("/proc/\(pid)/fd/\(fd)") else { return nil }
        let f = FdInfo(link: link)
        fds[fd] = f
        return f
    }

    /// Re-reads a descriptor from /proc (after open, pipe, accept ...).
    @discardableResult
    func refresh(_ fd: Int32) -> FdInfo? {
        fds[fd] = nil
        return lookup(fd)
    }

    func set(_ fd: Int32, _ info: FdInfo) { fds[fd] = info }
    func remove(_ fd: Int32) { fds[fd] = nil }
    /// Forgets everything (exec closes CLOEXEC descriptors; the rest is re-read lazily).
    func reset() { fds.removeAll() }
    func name(_ fd: Int32) -> String? { lookup(fd)?.name }
}
