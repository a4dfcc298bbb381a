import CKanshiShims

/// The C allocator's settings for a long-running process that handles large transient buffers.
public enum ProcessMemory {
    /// glibc raises its mmap threshold each time a large mmapped block is freed, so later blocks of
    /// that size come from per-thread arenas, which keep freed memory: a server receiving 4 MiB
    /// chunks on many threads grows by arenas × chunk size. A fixed threshold (which also stops the
    /// raising) sends such buffers straight back to the kernel when freed, and fewer arenas bound
    /// what the small allocations can strand.
    public static let mmapThreshold: Int32 = 1 << 20
    public static let arenas: Int32 = 4

    /// True when the allocator took both settings.
    @discardableResult
    public static func returnLargeBuffers() -> Bool {
        ckanshi_malloc_tune(mmapThreshold, arenas) == 1
    }
}
