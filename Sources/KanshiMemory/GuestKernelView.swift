/// A guest's Linux kernel seen in its physical memory, with no helper inside
/// the guest: where the kernel was loaded (its banner, found in RAM), its own
/// page tables, its task list, and each process's address space.
public final class GuestKernelView: @unchecked Sendable {
    // SAFETY: immutable after init; reads of a running guest's memory are racy
    // by nature and every one is checked (a torn read is a counted gap).
    public let memory: PhysicalMemory
    public let facts: MemoryKernelFacts
    public let walker: PageWalker
    /// Physical address of the kernel's top-level page table.
    public let kernelRoot: UInt64
    /// Physical address of `linux_banner`: where the kernel image was loaded.
    public let bannerPhysical: UInt64
    /// The kernel's virtual slide (KASLR): runtime address = link-time address + slide.
    public let slide: UInt64

    /// The kernel image's virtual slide is a multiple of this, below `slideLimit`.
    static let slideAlign: UInt64 = 2 << 20
    static let slideLimit: UInt64 = 1 << 30
    /// The most tasks a task-list walk follows (a guard against a corrupt list).
    public static let taskLimit = 1 << 16
    static let pageSize: UInt64 = 4096

    /// Finds the kernel described by `facts` in `memory`.
    public init(memory: PhysicalMemory, facts: MemoryKernelFacts) throws(MemoryError) {
        self.memory = memory
        self.facts = facts
        let hits = memory.find(facts.banner, limit: 16)
        guard !hits.isEmpty else {
            throw .kernelNotFound("its banner \"\(String(decoding: facts.banner.prefix(60), as: UTF8.self))...\" is nowhere in \(memory.totalBytes >> 20) MiB of RAM (another kernel, or the guest has not booted)")
        }
        var tried: [String] = []
        for hit in hits {
            func physical(_ symbol: UInt64) -> UInt64? {
                let (p, overflow) = hit.addingReportingOverflow(symbol &- facts.bannerAddress)
                return overflow ? nil : p
            }
            guard let root = physical(facts.topPageTable), memory.bytes(at: root, count: Int(Self.pageSize)) != nil else {
                tried.append("0x\(String(hit, radix: 16)): its page table would be outside RAM"); continue
            }
            var levels = 4
            if let flag = facts.fiveLevelFlag, let at = physical(flag), let b = memory.bytes(at: at, count: 4),
               b.loadUnaligned(as: UInt32.self) != 0 {
                levels = 5
            }
            let walker = PageWalker(memory: memory, levels: levels)
            var found: UInt64?
            var slide: UInt64 = 0
            while slide < Self.slideLimit {
                if case .mapped(let p, _, _) = walker.translate(facts.bannerAddress &+ slide, root: root), p == hit {
                    found = slide; break
                }
                slide += Self.slideAlign
            }
            guard let found else {
                tried.append("0x\(String(hit, radix: 16)): the kernel's page table does not map the banner there"); continue
            }
            self.walker = walker
            kernelRoot = root
            bannerPhysical = hit
            self.slide = found
            return
        }
        throw .kernelNotFound("the banner is in RAM but no copy is the kernel's own (\(tried.joined(separator: "; ")))")
    }

    // MARK: kernel memory

    /// The `count` bytes at kernel virtual address `address` (runtime, after the slide), or nil
    /// when a page of them is not mapped or not in RAM.
    public func readKernel(_ address: UInt64, count: Int) -> [UInt8]? {
        try? read(address, count: count, root: kernelRoot).get()
    }

    /// The guest-physical address of kernel virtual address `address`, or nil when it is not mapped.
    public func physical(ofKernel address: UInt64) -> UInt64? {
        guard case .mapped(let p, _, _) = walker.translate(address, root: kernelRoot) else { return nil }
        return p
    }

    func kernelU64(_ address: UInt64) -> UInt64? {
        readKernel(address, count: 8).map { $0.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) } }
    }

    func kernelU32(_ address: UInt64) -> UInt32? {
        readKernel(address, count: 4).map { $0.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } }
    }

    /// Where a read through page tables stopped, and what the walk found there (`.mapped`: the
    /// page's bytes run past the end of RAM).
    struct Unreadable: Error {
        var address: UInt64
        var translation: PageWalker.Translation
    }

    /// Bytes under page table `root`, page by page: all of them, or where and why they end.
    func read(_ address: UInt64, count: Int, root: UInt64) -> Result<[UInt8], Unreadable> {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var at = address
        while out.count < count {
            let t = walker.translate(at, root: root)
            let n = min(count - out.count, Int(Self.pageSize - (at & (Self.pageSize - 1))))
            guard case .mapped(let p, _, _) = t, let b = memory.bytes(at: p, count: n) else {
                return .failure(Unreadable(address: at, translation: t))
            }
            out.append(contentsOf: b)
            at &+= UInt64(n)
        }
        return .success(out)
    }

    // MARK: processes

    /// A process from the guest kernel's task list.
    public struct Process: Sendable, Equatable, Codable {
        public var pid: Int32
        public var tgid: Int32
        public var ppid: Int32
        public var name: String
        public var uid: UInt32?
        /// A kernel thread (PF_KTHREAD, or no memory of its own without being in exit).
        public var kernelThread: Bool
        /// In do_exit (PF_EXITING): it has ended, its memory may already be released.
        public var exiting: Bool
        /// Nanoseconds since the guest booted.
        public var startNs: UInt64?
        /// Kernel address of its task_struct.
        public var task: UInt64
        /// Physical address of its top-level page table (its CR3 without PCID); nil for kernel threads.
        public var pageTable: UInt64?
    }

    /// The task list as read, and what could not be read of it.
    public struct ProcessList: Sendable {
        public var processes: [Process]
        /// Why the walk stopped early or skipped something (empty when it read the whole list).
        public var gaps: [String]
    }

    /// Walks `init_task.tasks`: every process (thread-group leader) but the idle task, pid 0.
    public func processes() -> ProcessList {
        let layout = facts.task
        let initTask = facts.initTask &+ slide
        let head = initTask &+ UInt64(layout.tasks)
        var list: [Process] = [], gaps: [String] = []
        var seen: Set<UInt64> = [head]
        guard var next = kernelU64(head) else {
            return ProcessList(processes: [], gaps: ["init_task at 0x\(String(initTask, radix: 16)) cannot be read"])
        }
        while next != head {
            guard seen.insert(next).inserted else { gaps.append("the task list loops at 0x\(String(next, radix: 16))"); break }
            guard seen.count <= Self.taskLimit else { gaps.append("more than \(Self.taskLimit) tasks: the walk stopped"); break }
            let task = next &- UInt64(layout.tasks)
            if let p = process(at: task) {
                list.append(p)
            } else {
                gaps.append("task at 0x\(String(task, radix: 16)) could not be read (it may have exited meanwhile)")
            }
            guard let n = kernelU64(next) else {
                gaps.append("the task list breaks after 0x\(String(task, radix: 16))"); break
            }
            next = n
        }
        return ProcessList(processes: list, gaps: gaps)
    }

    /// The process whose task_struct is at `task`, or nil when it cannot be read.
    public func process(at task: UInt64) -> Process? {
        let l = facts.task
        guard let pid = kernelU32(task &+ UInt64(l.pid)), let tgid = kernelU32(task &+ UInt64(l.tgid)),
              let comm = readKernel(task &+ UInt64(l.comm), count: MemoryKernelFacts.commLength),
              let flags = kernelU32(task &+ UInt64(l.flags)), let mm = kernelU64(task &+ UInt64(l.mm))
        else { return nil }
        var ppid: Int32 = 0
        if let parent = kernelU64(task &+ UInt64(l.realParent)), let p = kernelU32(parent &+ UInt64(l.tgid)) { ppid = Int32(bitPattern: p) }
        var uid: UInt32?
        if let credOffset = l.cred, let uidOffset = facts.credUID, let cred = kernelU64(task &+ UInt64(credOffset)) {
            uid = kernelU32(cred &+ UInt64(uidOffset))
        }
        var pageTable: UInt64?
        if mm != 0, let pgd = kernelU64(mm &+ UInt64(facts.mmPageTable)),
           case .mapped(let p, _, _) = walker.translate(pgd, root: kernelRoot) {
            pageTable = p
        }
        return Process(pid: Int32(bitPattern: pid), tgid: Int32(bitPattern: tgid), ppid: ppid,
                       name: String(decoding: comm.prefix { $0 != 0 }, as: UTF8.self), uid: uid,
                       kernelThread: flags & MemoryKernelFacts.kernelThreadFlag != 0 || (mm == 0 && flags & MemoryKernelFacts.exitingFlag == 0),
                       exiting: flags & MemoryKernelFacts.exitingFlag != 0,
                       startNs: l.startTime.flatMap { kernelU64(task &+ UInt64($0)) },
                       task: task, pageTable: pageTable)
    }

    /// The process `pid` (a thread-group leader), or `.noSuchProcess`.
    public func process(pid: Int32) throws(MemoryError) -> Process {
        guard let p = processes().processes.first(where: { $0.pid == pid }) else { throw .noSuchProcess(pid) }
        return p
    }

    /// `count` bytes at `address` in the process's address space.
    public func read(_ process: Process, at address: UInt64, count: Int) throws(MemoryError) -> [UInt8] {
        guard let root = process.pageTable else {
            throw .notMapped(pid: process.pid, address: address, why: "is in a kernel thread, which has no user memory")
        }
        switch read(address, count: count, root: root) {
        case .success(let bytes):
            return bytes
        case .failure(let stop):
            let why: String
            switch stop.translation {
            case .mapped(let p, _, _): why = "maps to 0x\(String(p, radix: 16)), outside the guest's RAM"
            case .swapped(let e): why = "is swapped out (entry 0x\(String(e, radix: 16)))"
            case .protNone: why = "is mapped with no access (PROT_NONE)"
            case .notMapped: why = "is not mapped (never touched, or not part of the process)"
            case .outsideRAM(let p, let level): why = "has a level-\(level) page table at 0x\(String(p, radix: 16)), outside the guest's RAM"
            }
            throw .notMapped(pid: process.pid, address: stop.address, why: why)
        }
    }

    /// One run of pages with the same state and permissions, contiguous in virtual memory.
    public struct MapRun: Sendable, Equatable, Codable {
        public enum State: String, Sendable, Codable { case resident, swapped, protNone = "prot-none", outsideRAM = "outside-ram" }
        public var start: UInt64
        public var end: UInt64
        public var state: State
        /// "rwx" style; "---" when not resident.
        public var permissions: String
        /// Bytes in huge pages (2 MiB or 1 GiB) of the run.
        public var hugeBytes: UInt64
    }

    /// The process's user address space, page by page from its page tables, as runs.
    public func memoryMap(_ process: Process) throws(MemoryError) -> [MapRun] {
        guard let root = process.pageTable else {
            throw .notMapped(pid: process.pid, address: 0, why: "is in a kernel thread, which has no user memory")
        }
        var runs: [MapRun] = []
        walker.pages(root: root, in: walker.userSpace) { page in
            let state: MapRun.State, permissions: String
            switch page.state {
            case .mapped(_, _, let f): state = .resident; permissions = f.permissions
            case .swapped: state = .swapped; permissions = "---"
            case .protNone: state = .protNone; permissions = "---"
            case .outsideRAM, .notMapped: state = .outsideRAM; permissions = "---"
            }
            let huge = page.size > Self.pageSize ? page.size : 0
            if var last = runs.last, last.end == page.virtual, last.state == state, last.permissions == permissions {
                last.end = page.virtual + page.size
                last.hugeBytes += huge
                runs[runs.count - 1] = last
            } else {
                runs.append(MapRun(start: page.virtual, end: page.virtual + page.size, state: state, permissions: permissions, hugeBytes: huge))
            }
        }
        return runs
    }

    /// Virtual addresses in the process where `needle` starts, in resident memory (up to `limit`;
    /// a match that spans two pages is found when both are resident and adjacent in the walk).
    public func find(_ needle: [UInt8], in process: Process, limit: Int = 64) throws(MemoryError) -> [UInt64] {
        guard let root = process.pageTable else {
            throw .notMapped(pid: process.pid, address: 0, why: "is in a kernel thread, which has no user memory")
        }
        guard !needle.isEmpty else { return [] }
        var hits: [UInt64] = []
        var tail: [UInt8] = [], tailEnd: UInt64 = 0
        walker.pages(root: root, in: walker.userSpace) { page in
            guard hits.count < limit, case .mapped(let p, let size, _) = page.state,
                  let bytes = memory.bytes(at: p, count: Int(size)) else { tail = []; return }
            // The end of the page before, when contiguous, so a match across the boundary is seen.
            let carry = tailEnd == page.virtual ? tail : []
            let window = carry + Array(bytes.prefix(needle.count - 1))
            window.withUnsafeBytes { w in
                needle.withUnsafeBytes { n in
                    var from = 0
                    while let at = LibC.find(n, in: w, from: from), at < carry.count {
                        hits.append(page.virtual - UInt64(carry.count) + UInt64(at)); from = at + 1
                    }
                }
            }
            needle.withUnsafeBytes { n in
                var from = 0
                while hits.count < limit, let at = LibC.find(n, in: bytes, from: from) {
                    hits.append(page.virtual + UInt64(at)); from = at + 1
                }
            }
            tail = Array(bytes.suffix(needle.count - 1))
            tailEnd = page.virtual + size
        }
        return hits
    }
}
