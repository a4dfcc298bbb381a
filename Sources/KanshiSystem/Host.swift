#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKanshiShims

/// Facts about the host and the calling process.
public enum Host {
    /// Whether the process runs with an effective user id of 0.
    public static var isRoot: Bool { geteuid() == 0 }

    /// The process id.
    public static var processID: Int32 { getpid() }

    /// Whether process `pid` exists (signal 0; EPERM: it exists, owned by someone else).
    public static func processExists(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }
}

extension FileSystem {
    /// Whether `path` names a character device (e.g. /dev/fuse).
    public static func isCharacterDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR
    }

    /// Whether `path` names a block device (e.g. /dev/loop0).
    public static func isBlockDevice(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFBLK
    }

    /// The canonical absolute path (symbolic links, "." and ".." resolved),
    /// or nil if it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Creates one directory with the given permissions (its parent must exist).
    public static func createDirectory(_ path: String, permissions: UInt32) throws(SystemError) {
        try syscall("mkdir", path) { mkdir(path, mode_t(permissions)) }
    }

    /// Removes an empty directory.
    public static func removeDirectory(_ path: String) throws(SystemError) {
        try syscall("rmdir", path) { rmdir(path) }
    }
}

/// A readers–writer lock (pthread_rwlock): many readers or one writer.
public final class ReadWriteLock: @unchecked Sendable {
    // SAFETY: the lock lives in its own allocation that never moves; pthread
    // serialises every access to it.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` holding the lock shared (with other readers).
    public func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Runs `body` holding the lock exclusively.
    public func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

extension FileSystem {
    /// Unmounts the file system mounted at `path` (umount2); with `detach`,
    /// lazily (MNT_DETACH).
    public static func unmount(_ path: String, detach: Bool = false) throws(SystemError) {
        let e = ckanshi_unmount(path, detach ? 1 : 0)
        if e != 0 { throw SystemError(call: "umount", subject: path, errno: e) }
    }
}

extension Host {
    /// Sets the nice value of the calling thread alone (best effort).
    public static func setCurrentThreadNice(_ nice: Int32) {
        _ = ckanshi_set_thread_nice(nice)
    }
}

extension Host {
    /// Ends a process at once (SIGKILL); false if it was already gone.
    @discardableResult
    public static func killProcess(_ pid: Int32) -> Bool {
        Glibc.kill(pid, SIGKILL) == 0
    }
}

/// The system log (syslog(3), facility user).
public enum SystemLog {
    /// Levels of syslog(3), most serious first.
    public enum Level: Int32, Sendable {
        case emergency = 0, alert, critical, error, warning, notice, informational, debug
    }

    /// Sends `message` tagged `ident` at `level`.
    public static func send(_ message: String, level: Level, ident: String = "kanshi") {
        ckanshi_syslog(ident, level.rawValue, message)
    }
}

extension Host {
    /// The calling process's resident memory (bytes), from /proc/self/statm; nil if unreadable.
    public static var residentBytes: UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = UInt64(fields[1]) else { return nil }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }
}

extension Host {
    /// CPU time (user + system) used so far by this process and by its
    /// children that have been waited for, in seconds.
    public static func cpuSeconds() -> (own: Double, children: Double) {
        func seconds(_ who: __rusage_who_t) -> Double {
            var u = rusage()
            guard getrusage(who, &u) == 0 else { return 0 }
            return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
        }
        return (seconds(RUSAGE_SELF.rawValue), seconds(RUSAGE_CHILDREN.rawValue))
    }
}
