import CFuse3
import Foundation
import KanshiBlock
import KanshiSystem
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A FUSE file system (libfuse3, high-level API) whose root directory holds
/// one file, `disk.img`: the journaled disk. Mounted on a private directory;
/// a loop device opens the file.
///
/// Every open is direct I/O (no page cache), so reads and writes reach the
/// journal as issued; writes arrive in pieces of up to 1 MiB (`max_write`).
/// `fsync` records a flush and makes the journal and the image durable;
/// `fallocate` with PUNCH_HOLE is a trim, with ZERO_RANGE a write-zeroes.
/// The file's size is fixed: truncating it to another size is refused (EPERM).
public final class FuseDisk: @unchecked Sendable {
    // SAFETY: `fuse` and `args` are set in init and touched again only by
    // stop()/deinit, which run once, after the loop thread has finished; the
    // callbacks only read `file`, `logger` and `startTime`, which never change.
    public static let fileName = "disk.img"
    public let file: DiskFile
    /// The directory the FUSE file system is mounted on.
    public let directory: String
    /// The path of the disk file (`directory/disk.img`).
    public var path: String { directory + "/" + Self.fileName }
    let logger: Logger
    let startTime = timespec(tv_sec: time(nil), tv_nsec: 0)
    private var fuse: OpaquePointer?
    private var args = fuse_args()
    private var argStrings: [UnsafeMutablePointer<CChar>?] = []
    private let finished = DispatchSemaphore(value: 0)
    private var running = false
    private var stopped = false

    /// Creates the FUSE file system and mounts it on `directory` (which must
    /// exist and be empty). Call `start()` to serve it.
    public init(file: DiskFile, directory: String, logger: Logger) throws(MountError) {
        self.file = file
        self.directory = directory
        self.logger = logger
        let argv: [String] = ["kanshi", "-o", "fsname=kanshi,subtype=kanshi"]
        argStrings = argv.map { strdup($0) } + [nil]
        args.argc = Int32(argStrings.count - 1)
        args.argv = UnsafeMutablePointer.allocate(capacity: argStrings.count)
        args.argv.initialize(from: argStrings, count: argStrings.count)
        args.allocated = 0
        var ops = Self.operations()
        // SAFETY: self outlives the FUSE handle: stop()/deinit destroy it first.
        guard let f = cfuse3_new(&args, &ops, Unmanaged.passUnretained(self).toOpaque()) else {
            freeArgs()
            throw .fuse("fuse_new failed (see the message above)")
        }
        guard fuse_mount(f, directory) == 0 else {
            fuse_destroy(f)
            freeArgs()
            throw .fuse("cannot mount FUSE on \(directory) (see the message above; is the fuse module loaded?)")
        }
        fuse = f
    }

    deinit {
        if !stopped { stop() }
        freeArgs()
    }

    private func freeArgs() {
        fuse_opt_free_args(&args)
        if args.allocated == 0, let argv = args.argv { argv.deallocate() }
        args.argv = nil
        for s in argStrings { free(s) }
        argStrings = []
    }

    /// Serves requests on a thread of its own (libfuse's multi-threaded
    /// loop, up to 4 workers) until `stop()`.
    public func start() {
        guard let fuse, !running else { return }
        running = true
        let done = finished
        nonisolated(unsafe) let f = fuse
        let t = Thread {
            let r = cfuse3_loop_mt(f, 4, 2)
            if r != 0 { FileHandle.standardError.write(Data("kanshi: FUSE loop ended with \(r)\n".utf8)) }
            done.signal()
        }
        t.name = "kanshi-fuse"
        t.start()
    }

    /// Unmounts the FUSE file system, waits for the loop to end and frees
    /// libfuse's handle. Call it only once nothing (no loop device) holds
    /// the file open. Returns false if the loop did not end within
    /// `timeout` seconds (the file was still in use).
    @discardableResult
    public func stop(timeout: Double = 10) -> Bool {
        guard !stopped, let fuse else { return true }
        stopped = true
        var clean = true
        if running {
            // Unmounting aborts the connection: every worker's read of
            // /dev/fuse fails with ENODEV and the loop returns.
            do {
                try FileSystem.unmount(directory)
            } catch {
                logger.warning("FUSE unmount failed, detaching lazily", metadata: ["error": "\(error)"])
                try? FileSystem.unmount(directory, detach: true)
            }
            if finished.wait(timeout: .now() + timeout) == .timedOut {
                logger.error("the FUSE loop did not end; is the disk file still open?")
                fuse_exit(fuse)
                clean = false
                // The loop thread still uses the handle: leave it to the process's end.
                return clean
            }
        }
        fuse_unmount(fuse)
        fuse_destroy(fuse)
        self.fuse = nil
        return clean
    }

    /// The FuseDisk of the current callback (libfuse's private data).
    fileprivate static var current: FuseDisk? {
        guard let p = cfuse3_private_data() else { return nil }
        return Unmanaged<FuseDisk>.fromOpaque(p).takeUnretainedValue()
    }

    fileprivate func errno(of error: any Error, _ what: String) -> Int32 {
        switch error {
        case BlockError.readOnly: return EROFS
        case MountError.noSpace: return ENOSPC
        case BlockError.system(let e):
            logger.error("\(what) failed", metadata: ["error": "\(e)"])
            return e.errno
        default:
            logger.error("\(what) failed", metadata: ["error": "\(error)"])
            return EIO
        }
    }
}

private func isRoot(_ path: UnsafePointer<CChar>?) -> Bool {
    guard let path else { return false }
    return strcmp(path, "/") == 0
}

private func isDisk(_ path: UnsafePointer<CChar>?) -> Bool {
    guard let path else { return false }
    return strcmp(path, "/" + FuseDisk.fileName) == 0
}

extension FuseDisk {
    /// The operations table: C callbacks that find the FuseDisk through
    /// libfuse's private data.
    static func operations() -> fuse_operations {
        var ops = fuse_operations()
        ops.`init` = { conn, cfg in
            if let conn {
                // Whole loop-device requests in one FUSE write (the kernel
                // raises max_pages to match).
                conn.pointee.max_write = 1 << 20
                conn.pointee.max_readahead = 0
            }
            if let cfg {
                cfg.pointee.direct_io = 1
                cfg.pointee.kernel_cache = 0
                cfg.pointee.use_ino = 0
            }
            // The value returned here becomes the private data: keep ours.
            return cfuse3_private_data()
        }
        ops.getattr = { path, st, _ in
            guard let st, let fs = FuseDisk.current else { return -EIO }
            memset(st, 0, MemoryLayout<stat>.size)
            st.pointee.st_uid = getuid()
            st.pointee.st_gid = getgid()
            st.pointee.st_mtim = fs.startTime
            st.pointee.st_ctim = fs.startTime
            st.pointee.st_atim = fs.startTime
            if isRoot(path) {
                st.pointee.st_mode = S_IFDIR | 0o700
                st.pointee.st_nlink = 2
                return 0
            }
            guard isDisk(path) else { return -ENOENT }
            st.pointee.st_mode = S_IFREG | (fs.file.isReadOnly ? 0o400 : 0o600)
            st.pointee.st_nlink = 1
            st.pointee.st_size = off_t(fs.file.size)
            st.pointee.st_blksize = 4096
            st.pointee.st_blocks = blkcnt_t(fs.file.size / 512)
            return 0
        }
        ops.readdir = { path, buf, filler, _, _, _ in
            guard isRoot(path), let filler else { return -ENOENT }
            _ = filler(buf, ".", nil, 0, fuse_fill_dir_flags(0))
            _ = filler(buf, "..", nil, 0, fuse_fill_dir_flags(0))
            _ = filler(buf, FuseDisk.fileName, nil, 0, fuse_fill_dir_flags(0))
            return 0
        }
        ops.open = { path, fi in
            guard isDisk(path) else { return isRoot(path) ? -EISDIR : -ENOENT }
            guard let fi, let fs = FuseDisk.current else { return -EIO }
            if cfuse3_access_mode(fi) != O_RDONLY && fs.file.isReadOnly { return -EROFS }
            cfuse3_set_direct_io(fi)
            return 0
        }
        ops.read = { path, buf, size, offset, _ in
            guard isDisk(path) else { return -ENOENT }
            guard let buf, let fs = FuseDisk.current else { return -EIO }
            guard offset >= 0 else { return -EINVAL }
            do {
                return Int32(try fs.file.read(into: UnsafeMutableRawBufferPointer(start: buf, count: size), at: UInt64(offset)))
            } catch {
                return -fs.errno(of: error, "read")
            }
        }
        ops.write = { path, buf, size, offset, _ in
            guard isDisk(path) else { return -ENOENT }
            guard let buf, let fs = FuseDisk.current else { return -EIO }
            guard offset >= 0 else { return -EINVAL }
            do {
                return Int32(try fs.file.write(UnsafeRawBufferPointer(start: buf, count: size), at: UInt64(offset)))
            } catch {
                return -fs.errno(of: error, "write")
            }
        }
        ops.fsync = { path, _, _ in
            guard isDisk(path) else { return 0 }
            guard let fs = FuseDisk.current else { return -EIO }
            do { try fs.file.sync(); return 0 } catch { return -fs.errno(of: error, "fsync") }
        }
        ops.flush = { _, _ in 0 }
        ops.release = { _, _ in 0 }
        ops.truncate = { path, size, _ in
            guard isDisk(path), let fs = FuseDisk.current else { return -EINVAL }
            // The disk's size is fixed; "truncating" to it is a no-op (O_TRUNC is not).
            return size == off_t(fs.file.size) ? 0 : -EPERM
        }
        ops.fallocate = { path, mode, offset, length, _ in
            guard isDisk(path) else { return -ENOENT }
            guard let fs = FuseDisk.current else { return -EIO }
            guard offset >= 0, length > 0 else { return -EINVAL }
            let o = UInt64(offset), l = UInt64(length)
            do {
                if mode & FALLOC_FL_PUNCH_HOLE != 0 {
                    guard mode & FALLOC_FL_KEEP_SIZE != 0 else { return -EOPNOTSUPP }
                    try fs.file.punchHole(offset: o, length: l)
                } else if mode & FALLOC_FL_ZERO_RANGE != 0 {
                    try fs.file.zeroRange(offset: o, length: l)
                } else if mode & ~FALLOC_FL_KEEP_SIZE == 0 {
                    // Plain allocation: the disk is all there already; it cannot grow.
                    if o + l > fs.file.size && mode & FALLOC_FL_KEEP_SIZE == 0 { return -EFBIG }
                } else {
                    return -EOPNOTSUPP
                }
                return 0
            } catch {
                return -fs.errno(of: error, "fallocate")
            }
        }
        ops.statfs = { _, st in
            guard let st, let fs = FuseDisk.current else { return -EIO }
            memset(st, 0, MemoryLayout<statvfs>.size)
            st.pointee.f_bsize = 4096
            st.pointee.f_frsize = 4096
            st.pointee.f_blocks = fsblkcnt_t(fs.file.size / 4096)
            st.pointee.f_files = 1
            st.pointee.f_namemax = 255
            return 0
        }
        return ops
    }
}
