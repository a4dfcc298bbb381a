#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKanshiShims

/// What `lstat` says about a path, without following a symbolic link.
public struct FileStatus: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, directory, symbolicLink, other
    }

    public var kind: Kind
    public var size: UInt64
    /// Hard links to the file (more than one: the same data has another name).
    public var linkCount: UInt64
    /// The file system the entry lives on.
    public var device: UInt64
}

extension FileSystem {
    /// The entry at `path` as `lstat` sees it (a link is reported, not followed);
    /// nil if nothing is there.
    public static func status(_ path: String) throws(SystemError) -> FileStatus? {
        var st = stat()
        if lstat(path, &st) != 0 {
            let e = Glibc.errno
            if e == ENOENT || e == ENOTDIR { return nil }
            throw SystemError(call: "lstat", subject: path, errno: e)
        }
        let kind: FileStatus.Kind
        switch st.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        return FileStatus(kind: kind, size: UInt64(st.st_size), linkCount: UInt64(st.st_nlink), device: UInt64(st.st_dev))
    }

    /// The canonical absolute path: every symbolic link, `.` and `..` resolved.
    public static func realPath(_ path: String) throws(SystemError) -> String {
        guard let p = realpath(path, nil) else {
            throw SystemError(call: "realpath", subject: path, errno: Glibc.errno)
        }
        defer { free(p) }
        return String(cString: p)
    }

    /// Writes back everything of the file system that holds `path` (syncfs):
    /// one call instead of an fsync per file after writing many files.
    public static func syncFileSystem(containing path: String) throws(SystemError) {
        let f = try SystemFile(path: path, mode: .readOnly)
        let e = ckanshi_syncfs(f.fd)
        if e != 0 { throw SystemError(call: "syncfs", subject: path, errno: e) }
    }

    /// Blocks the calling thread for about `nanoseconds`.
    public static func sleep(nanoseconds: UInt64) {
        var req = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var rem = timespec()
        while nanosleep(&req, &rem) != 0 && Glibc.errno == EINTR { req = rem }
    }
}

extension SystemFile {
    /// The whole file from offset 0.
    public func readAll() throws(SystemError) -> [UInt8] {
        let n = Int(try size())
        var bytes = [UInt8](repeating: 0, count: n)
        let got = try bytes.withUnsafeMutableBufferPointer { p throws(SystemError) in try read(into: UnsafeMutableRawBufferPointer(p), at: 0) }
        if got < n { bytes.removeLast(n - got) }
        return bytes
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(SystemError) {
        try bytes.withUnsafeBufferPointer { p throws(SystemError) in try write(UnsafeRawBufferPointer(p), at: offset) }
    }
}
