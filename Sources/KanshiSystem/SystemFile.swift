#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKanshiShims

/// An open file descriptor that is closed when the value goes away.
///
/// All calls are positional (pread/pwrite) or append-only, so one handle can
/// be shared between threads as long as callers serialise appends.
public final class SystemFile: @unchecked Sendable {
    // SAFETY: `fd` is immutable after init; every call on it is a positional
    // system call that the kernel serialises, so sharing is safe.
    public let path: String
    let fd: Int32

    public struct OpenMode: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readOnly = OpenMode([])
        public static let readWrite = OpenMode(rawValue: 1)
        public static let create = OpenMode(rawValue: 2)
        public static let exclusive = OpenMode(rawValue: 4)
        public static let append = OpenMode(rawValue: 8)
        public static let truncate = OpenMode(rawValue: 16)
        /// Fail (ELOOP) rather than follow a symbolic link in the last component.
        public static let noFollow = OpenMode(rawValue: 32)
        /// Bypass the page cache (O_DIRECT): every transfer must be aligned
        /// to 4096 bytes in memory, offset and length.
        public static let direct = OpenMode(rawValue: 64)
    }

    public init(path: String, mode: OpenMode, permissions: UInt32 = 0o644) throws(SystemError) {
        var flags: Int32 = O_CLOEXEC
        flags |= mode.contains(.readWrite) ? O_RDWR : O_RDONLY
        if mode.contains(.create) { flags |= O_CREAT }
        if mode.contains(.exclusive) { flags |= O_EXCL }
        if mode.contains(.append) { flags |= O_APPEND }
        if mode.contains(.truncate) { flags |= O_TRUNC }
        if mode.contains(.noFollow) { flags |= O_NOFOLLOW }
        if mode.contains(.direct) { flags |= ckanshi_o_direct() }
        let f = flags
        self.fd = try syscall("open", path) { open(path, f, mode_t(permissions)) }
        self.path = path
    }

    deinit { close(fd) }

    /// Current size of the file in bytes.
    public func size() throws(SystemError) -> UInt64 {
        var st = stat()
        try syscall("fstat", path) { fstat(fd, &st) }
        return UInt64(st.st_size)
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or fewer only at end of file.
    /// Returns the number of bytes read.
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try syscall("pread", path) {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Writes all of `buffer` at `offset`.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let n = try syscall("pwrite", path) {
                pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            done += n
        }
    }

    /// Copies `length` bytes from `offset` in this file to the same offset
    /// in `target`, inside the kernel (copy_file_range; shares extents where
    /// the file system can). Returns the bytes copied (short at end of file).
    @discardableResult
    public func copy(to target: SystemFile, offset: UInt64, length: UInt64) throws(SystemError) -> UInt64 {
        try copy(to: target, from: offset, at: offset, length: length)
    }

    /// Copies `length` bytes at `source` in this file to `destination` in `target`, inside
    /// the kernel (copy_file_range). Returns the bytes copied (short at end of file).
    @discardableResult
    public func copy(to target: SystemFile, from source: UInt64, at destination: UInt64, length: UInt64) throws(SystemError) -> UInt64 {
        var done: UInt64 = 0
        while done < length {
            let from = Int64(source + done), to = Int64(destination + done)
            let n = try syscall("copy_file_range", path) {
                ckanshi_copy_file_range(fd, from, target.fd, to, Int(min(length - done, 1 << 30)))
            }
            if n == 0 { break }
            done += UInt64(n)
        }
        return done
    }

    /// Writes all of the given buffers, in order, at the current position
    /// (the end of file for append-mode handles), with as few calls as possible.
    public func writeGathered(_ buffers: [UnsafeRawBufferPointer]) throws(SystemError) {
        var iov = buffers.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
        }
        var first = 0
        while first < iov.count {
            let count = Int32(min(iov.count - first, 1024))
            let n = try iov.withUnsafeMutableBufferPointer { p throws(SystemError) in
                try syscall("writev", path) { writev(fd, p.baseAddress! + first, count) }
            }
            // Skip what was written; a short write leaves us inside one buffer.
            var left = n
            while left > 0 && first < iov.count {
                if left >= iov[first].iov_len {
                    left -= iov[first].iov_len
                    first += 1
                } else {
                    iov[first].iov_base += left
                    iov[first].iov_len -= left
                    left = 0
                }
            }
        }
    }

    /// Makes written data durable (fdatasync).
    public func syncData() throws(SystemError) {
        try syscall("fdatasync", path) { fdatasync(fd) }
    }

    /// Makes data and metadata durable (fsync).
    public func sync() throws(SystemError) {
        try syscall("fsync", path) { fsync(fd) }
    }

    public func truncate(to size: UInt64) throws(SystemError) {
        try syscall("ftruncate", path) { ftruncate(fd, off_t(size)) }
    }

    /// Deallocates a byte range so that it reads back as zeros; falls back to
    /// writing zeros where the file system cannot punch holes.
    public func zeroRange(offset: UInt64, length: UInt64) throws(SystemError) {
        let e = ckanshi_punch_hole(fd, Int64(offset), Int64(length))
        if e == 0 { return }
        guard e == EOPNOTSUPP || e == ENOSYS || e == EINVAL else {
            throw SystemError(call: "fallocate", subject: path, errno: e)
        }
        let chunkSize = 1 << 20
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(chunkSize), length - done))
            try write(UnsafeRawBufferPointer(rebasing: zeros[0..<n]), at: offset + done)
            done += UInt64(n)
        }
    }

    /// Reserves storage for a byte range without changing the file's size,
    /// so later writes there need no allocation. Returns false where the
    /// file system cannot (the writes then allocate as they go).
    @discardableResult
    public func preallocate(offset: UInt64, length: UInt64) throws(SystemError) -> Bool {
        let e = ckanshi_preallocate(fd, Int64(offset), Int64(length))
        if e == 0 { return true }
        if e == EOPNOTSUPP || e == ENOSYS || e == EINVAL { return false }
        throw SystemError(call: "fallocate", subject: path, errno: e)
    }

    /// Writes a range back to storage and drops it from the page cache, so a
    /// long append-only file does not pin memory (it is read back from disk
    /// if needed). Not a durability barrier: use `syncData()` for that.
    public func writeBackAndDrop(offset: UInt64, length: UInt64) throws(SystemError) {
        let e = ckanshi_writeback_and_drop(fd, Int64(offset), Int64(length))
        if e != 0 { throw SystemError(call: "sync_file_range", subject: path, errno: e) }
    }

    /// Takes an exclusive advisory lock without waiting; false if another
    /// process holds it.
    public func tryLockExclusive() throws(SystemError) -> Bool {
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
        let e = Glibc.errno
        if e == EWOULDBLOCK { return false }
        throw SystemError(call: "flock", subject: path, errno: e)
    }

    /// Releases a lock taken with `tryLockExclusive`, also for any copy of
    /// this descriptor a child process inherited before its exec.
    public func unlock() throws(SystemError) {
        try syscall("flock", path) { flock(fd, LOCK_UN) }
    }
}

extension SystemFile {
    /// Sets the permission bits (fchmod).
    public func setPermissions(_ mode: UInt32) throws(SystemError) {
        try syscall("fchmod", path) { fchmod(fd, mode_t(mode & 0o7777)) }
    }

    /// Sets the owner (fchown).
    public func setOwner(uid: UInt32, gid: UInt32) throws(SystemError) {
        try syscall("fchown", path) { fchown(fd, uid_t(uid), gid_t(gid)) }
    }

    /// Sets the access and modification times (futimens), seconds and nanoseconds since the epoch.
    public func setTimes(accessed: (seconds: Int64, nanoseconds: UInt32), modified: (seconds: Int64, nanoseconds: UInt32)) throws(SystemError) {
        var times = [timespec(tv_sec: Int(accessed.seconds), tv_nsec: Int(accessed.nanoseconds)),
                     timespec(tv_sec: Int(modified.seconds), tv_nsec: Int(modified.nanoseconds))]
        try syscall("futimens", path) { futimens(fd, &times) }
    }
}
