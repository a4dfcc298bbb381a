import KanshiGuestKernel

/// What the memory sensor needs to know about a guest kernel, read from its
/// image alone (kallsyms addresses at link time, BTF offsets): how to find
/// the kernel in physical memory and how to walk its task list.
public struct MemoryKernelFacts: Codable, Sendable, Equatable {
    public var release: String
    /// `linux_banner` as in the image ("Linux version ..."), without its NUL: found in RAM,
    /// it gives where the kernel was loaded.
    public var banner: [UInt8]
    public var bannerAddress: UInt64
    /// The kernel's own top-level page table (`init_top_pgt`, alias swapper_pg_dir).
    public var topPageTable: UInt64
    public var initTask: UInt64
    /// `__pgtable_l5_enabled` (non-zero: 5-level paging), when the kernel can use it.
    public var fiveLevelFlag: UInt64?
    public var task: TaskLayout
    /// `mm_struct.pgd`.
    public var mmPageTable: Int
    /// `cred.uid`.
    public var credUID: Int?

    /// Offsets in `task_struct`.
    public struct TaskLayout: Codable, Sendable, Equatable {
        public var tasks: Int, pid: Int, tgid: Int, comm: Int, realParent: Int, mm: Int, flags: Int
        public var startTime: Int?, cred: Int?
        /// `thread_info.flags` and `pending.signal`: where a signal is marked pending (kill from outside).
        public var threadFlags: Int?, pendingSignal: Int?
    }

    /// Where the x86-64 kernel image is linked (its physical address 0 when not relocated).
    public static let startKernelMap: UInt64 = 0xffff_ffff_8000_0000
    /// `task_struct.comm`'s length.
    public static let commLength = 16
    /// PF_KTHREAD in `task_struct.flags`.
    public static let kernelThreadFlag: UInt32 = 0x0020_0000
    /// PF_EXITING in `task_struct.flags`: the task is in do_exit (its memory may be gone already).
    public static let exitingFlag: UInt32 = 0x0000_0004
    static let bannerLimit = 512

    public init(kernel: GuestKernel) throws(MemoryError) {
        let symbols: Kallsyms, btf: BTF
        do { symbols = try kernel.kallsyms(); btf = try kernel.btf() } catch { throw .kernelFacts("\(kernel.path): \(error)") }
        var missing: [String] = []
        func address(_ names: String...) -> UInt64 {
            if let a = names.lazy.compactMap({ symbols.address(of: $0) }).first { return a }
            missing.append("symbol \(names.joined(separator: " or "))")
            return 0
        }
        func offset(_ type: String, _ path: String, required: Bool = true) -> Int? {
            do { return try btf.offset(type, path) } catch {
                if required { missing.append("\(type).\(path)") }
                return nil
            }
        }
        bannerAddress = address("linux_banner")
        topPageTable = address("init_top_pgt", "swapper_pg_dir")
        initTask = address("init_task")
        fiveLevelFlag = symbols.address(of: "__pgtable_l5_enabled")
        let t = TaskLayout(tasks: offset("task_struct", "tasks") ?? 0, pid: offset("task_struct", "pid") ?? 0,
                           tgid: offset("task_struct", "tgid") ?? 0, comm: offset("task_struct", "comm") ?? 0,
                           realParent: offset("task_struct", "real_parent") ?? 0, mm: offset("task_struct", "mm") ?? 0,
                           flags: offset("task_struct", "flags") ?? 0,
                           startTime: offset("task_struct", "start_time", required: false),
                           cred: offset("task_struct", "cred", required: false),
                           threadFlags: offset("task_struct", "thread_info.flags", required: false),
                           pendingSignal: offset("task_struct", "pending.signal", required: false))
        task = t
        mmPageTable = offset("mm_struct", "pgd") ?? 0
        credUID = offset("cred", "uid", required: false)
        var banner: [UInt8] = []
        if bannerAddress != 0 {
            if let b = kernel.elf.read(virtualAddress: bannerAddress, count: Self.bannerLimit) ?? kernel.elf.read(virtualAddress: bannerAddress, count: 64) {
                banner = Array(b.prefix { $0 != 0 })
            }
            if !banner.starts(with: Array("Linux version ".utf8)) { missing.append("the linux_banner string in the image") }
        }
        self.banner = banner
        guard missing.isEmpty else { throw .kernelFacts("\(kernel.path) lacks \(missing.joined(separator: ", "))") }
        release = kernel.release.isEmpty ? (kernel.bannerRelease(symbols) ?? "") : kernel.release
    }

    /// The facts of `vmlinuz`, kept in `guestDirectory/memory-kernel.json`.
    public static func cached(guestDirectory: String, vmlinuz: String) throws -> MemoryKernelFacts {
        try KernelFactsCache.cached("memory-kernel.json", guestDirectory: guestDirectory, vmlinuz: vmlinuz, format: 2) {
            let kernel: GuestKernel
            do { kernel = try GuestKernel(path: vmlinuz) } catch { throw MemoryError.kernelFacts("\(error)") }
            return try MemoryKernelFacts(kernel: kernel)
        }
    }
}
