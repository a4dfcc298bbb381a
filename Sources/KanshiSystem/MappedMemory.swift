#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Memory mapped from a file and shared with it (what is stored is in the
/// file at once, so it outlives the process that stored it), or anonymous
/// memory. Unmapped when the value goes away. Page-aligned.
public final class MappedMemory: @unchecked Sendable {
    // SAFETY: the mapping is immutable after init; what callers store in it
    // is theirs to synchronise.
    public let bytes: UnsafeMutableRawBufferPointer
    /// The file behind the mapping; nil for anonymous memory.
    public let path: String?

    /// Maps `size` bytes of the file at `path`, creating it (and sizing it)
    /// when `create` is set; an existing file must hold at least `size` bytes.
    public init(path: String, size: Int, create: Bool) throws(SystemError) {
        let file = try SystemFile(path: path, mode: create ? [.readWrite, .create, .exclusive] : .readWrite,
                                  permissions: 0o600)
        if create {
            try file.truncate(to: UInt64(size))
            // Reserve the memory now: a file system out of room then fails
            // here, not with SIGBUS on some later store into the mapping.
            if !(try file.preallocate(offset: 0, length: UInt64(size))) {
                throw SystemError(call: "fallocate", subject: path, errno: EOPNOTSUPP)
            }
        } else if try file.size() < UInt64(size) {
            throw SystemError(call: "mmap", subject: path, errno: EINVAL)
        }
        let fd = file.fd
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw SystemError(call: "mmap", subject: path, errno: errno) }
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
        self.path = path
    }

    /// Maps the whole file at `path` for reading only, shared: what another process
    /// stores into the file shows here at once.
    public init(readOnlyPath path: String) throws(SystemError) {
        let file = try SystemFile(path: path, mode: .readOnly)
        let size = Int(try file.size())
        guard size > 0 else { throw SystemError(call: "mmap", subject: path + " (an empty file)", errno: EINVAL) }
        let p = mmap(nil, size, PROT_READ, MAP_SHARED, file.fd, 0)
        guard let p, p != MAP_FAILED else { throw SystemError(call: "mmap", subject: path, errno: errno) }
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
        self.path = path
    }

    /// `size` bytes of private zeroed memory.
    public init(anonymousSize size: Int) throws(SystemError) {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { throw SystemError(call: "mmap", subject: "anonymous memory", errno: errno) }
        bytes = UnsafeMutableRawBufferPointer(start: p, count: size)
        path = nil
    }

    deinit { munmap(bytes.baseAddress, bytes.count) }
}
