/// User code seen running, sampled by the VM sensor's plugin: the user instruction a guest timer
/// interrupt stopped (every Nth such interrupt of a vCPU, `exec=N`), as a profiler samples. Per
/// window of time: how many samples, how many distinct code pages (by address space and virtual
/// page) and address spaces they fell in. A memory-access feature beside the pages written
/// (RanSMAP's executed pages), from the plugin, not from page tables.
public struct ExecutionSamples: Sendable, Equatable {
    public struct Window: Sendable, Equatable {
        /// Start of the window (ns since the epoch, a multiple of `windowNs`).
        public var startNs: UInt64
        public var samples: Int
        /// Distinct (address space, 4 KiB page) pairs sampled.
        public var pages: Int
        /// Distinct address spaces (processes).
        public var spaces: Int
    }

    public let windowNs: UInt64
    /// Closed windows, oldest first (a window without samples is left out).
    public private(set) var windows: [Window] = []
    public private(set) var total = 0
    private var current: UInt64?
    private var samples = 0
    private var pages: Set<PageKey> = []
    private var spaces: Set<UInt64> = []

    struct PageKey: Hashable { var space: UInt64; var page: UInt64 }

    static let pageShift: UInt64 = 12

    public init(windowNs: UInt64 = 1_000_000_000) {
        precondition(windowNs > 0)
        self.windowNs = windowNs
    }

    /// One sample. Samples come in ring order: one a vCPU took a little earlier than the window
    /// open now (another vCPU moved it on) counts in the open window.
    public mutating func add(timeNs: UInt64, pageTable: UInt64, ip: UInt64) {
        let start = timeNs - timeNs % windowNs
        if let c = current, start > c { close() }
        if current == nil { current = start }
        samples += 1
        total += 1
        pages.insert(PageKey(space: pageTable, page: ip >> Self.pageShift))
        spaces.insert(pageTable)
    }

    private mutating func close() {
        guard let c = current else { return }
        windows.append(Window(startNs: c, samples: samples, pages: pages.count, spaces: spaces.count))
        current = nil
        samples = 0
        pages.removeAll(keepingCapacity: true)
        spaces.removeAll(keepingCapacity: true)
    }

    /// Every window, the open one closed too.
    public var allWindows: [Window] {
        var copy = self
        copy.close()
        return copy.windows
    }

    public static let csvHeader = "window_start_ns,exec_samples,exec_pages,exec_spaces"

    /// The windows as CSV (`csvHeader`, a row per window).
    public var csv: String {
        var out = Self.csvHeader + "\n"
        for w in allWindows { out += "\(w.startNs),\(w.samples),\(w.pages),\(w.spaces)\n" }
        return out
    }
}
