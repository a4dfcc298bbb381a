import KanshiTrace

/// What a guest descriptor refers to, learnt from the calls that made it.
struct GuestFile: Sendable {
    enum Kind: Sendable { case file, pipe, socket }
    var kind: Kind
    /// Absolute path, or `pipe:[vm:N]` / `socket:[vm:N]`.
    var name: String
    /// Opened for reading (files).
    var readable = true
    /// Socket domain (1 unix, 2 inet, 10 inet6), type and protocol (socket's arguments).
    var domain: UInt64 = 0
    var type: UInt64 = 0
    var protocolNumber: UInt64 = 0
    /// The peer once connect was called, as text and as frames carry it.
    var peer: String? = nil
    var peerKey: FlowKey? = nil
    /// Bytes written through this descriptor (files), and the byte entropy of what was written,
    /// weighted by the bytes of each write (the plugin samples each buffer's start).
    var written: Int64 = 0
    var entropyWeighted: Double = 0
    var entropyBytes: Int64 = 0

    /// The IP protocol of the frames this socket sends (nil: not an Internet socket).
    var wireProtocol: UInt8? {
        guard kind == .socket, domain == 2 || domain == 10 else { return nil }
        switch type & 0xf {
        case 1: return 6
        case 2: return protocolNumber == 1 || protocolNumber == 58 ? UInt8(protocolNumber) : 17
        case 3: return UInt8(truncatingIfNeeded: protocolNumber)
        default: return nil
        }
    }
}

/// A process's descriptor table (shared by its threads, and by CLONE_FILES children).
final class GuestFdTable {
    var fds: [Int32: GuestFile] = [:]
    init() {}
    init(copying other: GuestFdTable) { fds = other.fds }
}

/// One guest process (thread group) as the VM sensor knows it.
final class GuestProcess {
    let pid: Int32
    var ppid: Int32
    var argv: [String]
    var comm: String
    /// Working directory, when known (inherited from the parent, changed by chdir).
    var cwd: String?
    var fds: GuestFdTable
    var managed: ManagedReason?
    var alive = true
    /// Its spawn event was logged (by the parent's fork return, or when first seen).
    var announced = false

    init(pid: Int32, ppid: Int32, comm: String, argv: [String], cwd: String?, fds: GuestFdTable) {
        self.pid = pid; self.ppid = ppid; self.comm = comm; self.argv = argv; self.cwd = cwd; self.fds = fds
    }

    var exe: String { argv.first ?? comm }

    /// `raw` made absolute against the directory descriptor (or the cwd for AT_FDCWD), normalized.
    /// Left as given when the base is not known.
    func resolve(_ raw: String?, dirfd: Int32 = GuestProcess.atFdCwd) -> String? {
        guard let raw, !raw.isEmpty else { return raw }
        if raw.hasPrefix("/") { return ManagedSet.normalize(raw, cwd: "/") }
        let base = dirfd == GuestProcess.atFdCwd ? cwd : fds.fds[dirfd]?.name
        guard let base, base.hasPrefix("/") else { return raw }
        return ManagedSet.normalize(raw, cwd: base)
    }

    static let atFdCwd: Int32 = -100
}

/// Open flags and clone flags the model reads (x86_64 values, shared with i386).
enum GuestFlags {
    static let accessMode: UInt64 = 3, writeOnly: UInt64 = 1, readWrite: UInt64 = 2
    static let create: UInt64 = 0o100, truncate: UInt64 = 0o1000, path: UInt64 = 0o10000000
    static let cloneThread: UInt64 = 0x10000, cloneFiles: UInt64 = 0x400
    static let fcntlDupFd: UInt64 = 0, fcntlDupFdCloexec: UInt64 = 1030
    static let mapShared: UInt64 = 1, protWrite: UInt64 = 2
}
