#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKanshiShims

/// This module's door to libc.
enum LibC {
    /// The errno for an address that is not in the memory read.
    static let badAddress = EFAULT
    /// The errno for a file that already exists.
    static let exists = EEXIST
    /// The errno for a read that found less than it needed.
    static let truncated = EIO
    /// copy_file_range's errno values for "not between these files": another file system
    /// (before Linux 5.19 and for tmpfs), or one that cannot.
    static let noInKernelCopy: Set<Int32> = [EXDEV, EINVAL, EOPNOTSUPP, ENOSYS]

    /// ORs `mask` into the aligned 8 bytes at `p` atomically; the value before.
    static func atomicOr(_ p: UnsafeMutableRawPointer, _ mask: UInt64) -> UInt64 {
        ckanshi_atomic_or64(p, mask)
    }

    /// The offset of `needle` in `haystack` at or after `from` (memmem), or nil.
    static func find(_ needle: UnsafeRawBufferPointer, in haystack: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard let base = haystack.baseAddress, let n = needle.baseAddress, from < haystack.count else { return nil }
        guard let p = ckanshi_memmem(base + from, haystack.count - from, n, needle.count) else { return nil }
        return p - UnsafeRawPointer(base)
    }
}
