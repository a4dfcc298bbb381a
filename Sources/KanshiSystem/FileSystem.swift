#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Directory and path operations the journal needs.
public enum FileSystem {
    public static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    /// `path` made absolute against the current directory (not resolving links).
    public static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + path
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates the directory and any missing parents.
    public static func createDirectory(_ path: String) throws(SystemError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            if mkdir(prefix, 0o755) != 0 && Glibc.errno != EEXIST {
                throw SystemError(call: "mkdir", subject: prefix, errno: Glibc.errno)
            }
            prefix += "/"
        }
        guard isDirectory(path) else { throw SystemError(call: "mkdir", subject: path, errno: ENOTDIR) }
    }

    /// Names of the entries of a directory (without "." and "..").
    public static func list(_ path: String) throws(SystemError) -> [String] {
        guard let dir = opendir(path) else {
            throw SystemError(call: "opendir", subject: path, errno: Glibc.errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Makes a directory's entries durable (after creating or renaming files in it).
    public static func syncDirectory(_ path: String) throws(SystemError) {
        let f = try SystemFile(path: path, mode: .readOnly)
        try f.sync()
    }

    public static func remove(_ path: String) throws(SystemError) {
        try syscall("unlink", path) { unlink(path) }
    }

    public static func rename(_ from: String, _ to: String) throws(SystemError) {
        try syscall("rename", from) { Glibc.rename(from, to) }
    }

    /// Nanoseconds since the Unix epoch, from the real-time clock.
    public static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Nanoseconds from a monotonic clock, for measuring durations.
    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
