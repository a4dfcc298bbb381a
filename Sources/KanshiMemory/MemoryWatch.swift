import CXXHash
import Foundation
import KanshiCore
import KanshiJournal
import KanshiSystem

/// The memory sensor's time series: at each interval, the watched guest processes' resident
/// pages are read through their page tables (the guest runs on: nothing pauses it) and a page
/// goes into the journal as a `memoryPage` record when it is new or its content changed (by
/// its XXH3 hash), and as a gone record when it is no longer mapped. Each scan leaves a note.
public final class MemoryWatch: @unchecked Sendable {
    // SAFETY: `scanOnce` runs on one thread at a time (the watch thread, or a caller when no
    // thread runs); `stats` and `stopping` are shared under `lock`.

    /// Which processes to watch.
    public enum Target: Sendable, Equatable, CustomStringConvertible {
        case pid(Int32)
        /// Every process whose name (the kernel's comm, 15 characters at most) is this.
        case name(String)

        /// Digits: a pid; anything else: a name.
        public init(_ text: String) {
            if let pid = Int32(text), pid > 0 { self = .pid(pid) } else { self = .name(String(text.prefix(MemoryKernelFacts.commLength - 1))) }
        }

        public var description: String {
            switch self {
            case .pid(let p): "pid \(p)"
            case .name(let n): "\"\(n)\""
            }
        }

        func matches(_ p: GuestKernelView.Process) -> Bool {
            switch self {
            case .pid(let pid): p.pid == pid
            case .name(let n): p.name == n
            }
        }
    }

    /// What the watch did.
    public struct Stats: Sendable, Equatable {
        public var scans = 0
        /// Scans before the guest kernel could be found in RAM (still booting).
        public var scansBeforeKernel = 0
        /// Resident pages looked at, over all scans.
        public var pagesSeen = 0
        /// Pages stored because they were new or changed; pages recorded as gone.
        public var pagesStored = 0
        public var pagesGone = 0
        public var bytesStored: UInt64 = 0
        /// Swapped-out or PROT_NONE pages met (not readable; counted).
        public var pagesNotResident = 0
        /// Every process watched (pid), in the order first seen.
        public var processes: [Int32] = []
        /// What could not be read, counted (a task that changed under the reader, a table outside RAM).
        public var gaps = 0
        public var lastGap: String?
        /// Journal appends that failed (a full disk): the watch stops at the first.
        public var failure: String?
        public var scanSecondsTotal = 0.0
        public var scanSecondsMax = 0.0
    }

    let memory: PhysicalMemory
    let facts: MemoryKernelFacts
    let targets: [Target]
    let journal: JournalWriter
    public let intervalMs: Int
    private var view: GuestKernelView?
    /// Per process (pid and task address, so a reused pid is a new process): page -> (physical, hash).
    private var known: [ProcessKey: [UInt64: PageState]] = [:]
    private let lock = NSLock()
    private var stats = Stats()
    private var stopping = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    struct ProcessKey: Hashable { var pid: Int32; var task: UInt64 }
    struct PageState: Equatable { var physical: UInt64; var hash: UInt64; var size: UInt64 }

    /// Bytes of page data handed to the journal in one append (group commit).
    static let batchBytes = 8 << 20

    public init(memory: PhysicalMemory, facts: MemoryKernelFacts, targets: [Target], journal: JournalWriter, intervalMs: Int = 1000) {
        self.memory = memory
        self.facts = facts
        self.targets = targets
        self.journal = journal
        self.intervalMs = max(1, intervalMs)
    }

    public var currentStats: Stats { lock.withLock { stats } }

    /// Scans every `intervalMs` on a thread of its own until `stop`.
    public func start() {
        let t = Thread { [self] in
            while !lock.withLock({ stopping || stats.failure != nil }) {
                let start = FileSystem.monotonicNs()
                scanOnce()
                let spent = Int((FileSystem.monotonicNs() - start) / 1_000_000)
                var left = intervalMs - spent
                while left > 0 && !lock.withLock({ stopping }) {
                    usleep(useconds_t(min(left, 50) * 1000))
                    left -= 50
                }
            }
            done.signal()
        }
        t.name = "kanshi-memory-watch"
        thread = t
        t.start()
    }

    /// Ends the thread (after its scan in progress) and returns what the watch did.
    @discardableResult
    public func stop() -> Stats {
        lock.withLock { stopping = true }
        if thread != nil {
            done.wait()
            thread = nil
        }
        return currentStats
    }

    private func gap(_ why: String) {
        lock.withLock {
            stats.gaps += 1
            stats.lastGap = why
        }
    }

    /// One scan: the watched processes' pages now, into the journal where they changed.
    public func scanOnce(nowNs: UInt64 = FileSystem.nowNs()) {
        let start = FileSystem.monotonicNs()
        defer {
            let s = Double(FileSystem.monotonicNs() - start) / 1e9
            lock.withLock {
                stats.scans += 1
                stats.scanSecondsTotal += s
                stats.scanSecondsMax = max(stats.scanSecondsMax, s)
            }
        }
        if view == nil {
            view = try? GuestKernelView(memory: memory, facts: facts)
            if view == nil { lock.withLock { stats.scansBeforeKernel += 1 }; return }
        }
        guard let view else { return }
        let list = view.processes()
        if let g = list.gaps.first { gap(g) }
        let watched = list.processes.filter { p in !p.kernelThread && p.pageTable != nil && targets.contains { $0.matches(p) } }
        var alive: Set<ProcessKey> = []
        var pending = Batch()
        var counts = (seen: 0, stored: 0, gone: 0, notResident: 0)
        for p in watched {
            guard let root = p.pageTable else { continue }
            let key = ProcessKey(pid: p.pid, task: p.task)
            alive.insert(key)
            lock.withLock { if !stats.processes.contains(p.pid) { stats.processes.append(p.pid) } }
            let before = known[key] ?? [:]
            var now: [UInt64: PageState] = [:]
            now.reserveCapacity(before.count)
            view.walker.pages(root: root, in: view.walker.userSpace) { page in
                switch page.state {
                case .mapped(let physical, let size, let flags):
                    guard let live = memory.bytes(at: physical, count: Int(size)) else { return }
                    counts.seen += 1
                    guard Int(size) + MemoryRecords.prefixLength + JournalFormat.recordHeaderLength <= JournalFormat.maxRecordLength else {
                        gap("pid \(p.pid): the \(size >> 20) MiB page at 0x\(String(page.virtual, radix: 16)) is larger than a journal record")
                        return
                    }
                    // Unchanged pages cost one hash of the live bytes. A changed one is copied (the
                    // guest runs on; the journal's checksum must cover what it stores) and the copy hashed.
                    let seen = XXH3_64bits(live.baseAddress, live.count)
                    if let old = before[page.virtual], old == PageState(physical: physical, hash: seen, size: size) {
                        now[page.virtual] = old
                        return
                    }
                    let at = pending.data.count
                    pending.data.append(contentsOf: live)
                    let (hash, entropy) = pending.data.withUnsafeBytes { all in
                        let copy = UnsafeRawBufferPointer(rebasing: all[at...])
                        return (XXH3_64bits(copy.baseAddress, copy.count), Float(Entropy.normalized(copy)))
                    }
                    let state = PageState(physical: physical, hash: hash, size: size)
                    now[page.virtual] = state
                    guard before[page.virtual] != state else {
                        pending.data.removeSubrange(at...)
                        return
                    }
                    counts.stored += 1
                    pending.add(MemoryRecords.prefix(pid: p.pid, flags: UInt32(flags.rawValue), virtual: page.virtual, physical: physical,
                                                     size: UInt32(size), entropy: entropy, hash: hash), dataAt: at, gone: false)
                case .swapped, .protNone:
                    counts.notResident += 1
                case .outsideRAM(let physical, let level):
                    gap("pid \(p.pid): a level-\(level) page table or page at 0x\(String(physical, radix: 16)) is outside the guest's RAM")
                case .notMapped:
                    break
                }
                if pending.bytes >= Self.batchBytes { flush(&pending, nowNs: nowNs) }
            }
            for (virtual, state) in before where now[virtual] == nil {
                counts.gone += 1
                pending.add(MemoryRecords.prefix(pid: p.pid, flags: 0, virtual: virtual, physical: state.physical,
                                                 size: UInt32(state.size), entropy: 0, hash: 0), dataAt: pending.data.count, gone: true)
            }
            known[key] = now
        }
        flush(&pending, nowNs: nowNs)
        let ended = known.keys.filter { !alive.contains($0) }
        for k in ended { known[k] = nil }
        let note = "{\"event\":\"memory-scan\",\"pids\":[\(watched.map { String($0.pid) }.joined(separator: ","))],"
            + "\"pages\":\(counts.seen),\"stored\":\(counts.stored),\"gone\":\(counts.gone)"
            + (ended.isEmpty ? "" : ",\"ended\":[\(ended.map { String($0.pid) }.joined(separator: ","))]") + "}"
        append { _ = try journal.appendNote(note, timeNs: nowNs) }
        lock.withLock {
            stats.pagesSeen += counts.seen
            stats.pagesStored += counts.stored
            stats.pagesGone += counts.gone
            stats.pagesNotResident += counts.notResident
        }
    }

    /// Records waiting for one append: their prefixes, and their pages' bytes back to back.
    struct Batch {
        var prefixes: [UInt8] = []
        var data: [UInt8] = []
        /// Per record: where its data starts in `data` (it ends where the next one's starts) and whether the page is gone.
        var entries: [(dataAt: Int, gone: Bool)] = []
        var bytes: Int { prefixes.count + data.count }
        mutating func add(_ prefix: [UInt8], dataAt: Int, gone: Bool) {
            prefixes.append(contentsOf: prefix)
            entries.append((dataAt, gone))
        }
    }

    private func flush(_ batch: inout Batch, nowNs: UInt64) {
        guard !batch.entries.isEmpty else { return }
        let b = batch
        batch = Batch()
        let n = MemoryRecords.prefixLength
        append {
            try b.prefixes.withUnsafeBytes { prefixes in
                try b.data.withUnsafeBytes { data in
                    let records = b.entries.indices.map { i in
                        let end = i + 1 < b.entries.count ? b.entries[i + 1].dataAt : data.count
                        return JournalWriter.PendingRecord(
                            kind: .memoryPage, flags: b.entries[i].gone ? MemoryRecords.flagGone : 0, timeNs: nowNs,
                            parts: [UnsafeRawBufferPointer(rebasing: prefixes[i * n..<(i + 1) * n]),
                                    UnsafeRawBufferPointer(rebasing: data[b.entries[i].dataAt..<end])])
                    }
                    _ = try journal.append(records)
                }
            }
        }
        lock.withLock { stats.bytesStored += UInt64(b.data.count) }
    }

    /// Runs a journal append; the first failure (a full disk) stops the watch and is reported.
    private func append(_ body: () throws -> Void) {
        guard lock.withLock({ stats.failure == nil }) else { return }
        do { try body() } catch {
            lock.withLock { if stats.failure == nil { stats.failure = "\(error)" } }
        }
    }
}
