import CKanshiVMIRing
import KanshiSystem

/// The consumer's end of the ring the VM sensor's QEMU plugin writes: a file
/// under /dev/shm that kanshi makes and QEMU maps. Records are decoded in
/// place; the tail is published after each batch.
public final class VMIRing: @unchecked Sendable {
    // SAFETY: used by one consumer thread; the header words shared with the
    // producer are read and written through the C helpers' atomics.
    public let path: String
    let memory: MappedMemory
    let header: UnsafeMutablePointer<kvmi_ring_header>
    let data: UnsafeRawBufferPointer
    let capacity: UInt64
    private var removed = false

    /// What the plugin counted.
    public struct Stats: Sendable, Equatable {
        public var calls: UInt64 = 0
        public var returns: UInt64 = 0
        /// Records lost to a full ring while kanshi was not reading (it waits otherwise).
        public var dropped: UInt64 = 0
        /// Times the guest was held because the ring was full, and for how long in total.
        public var waits: UInt64 = 0
        public var waitedNs: UInt64 = 0
        public var unreadable: UInt64 = 0
        public var evicted: UInt64 = 0
        public var calibrated = false
        public var slide: UInt64 = 0
        /// 0 not loaded, 1 running, 2 ended cleanly.
        public var state: UInt64 = 0
        /// Page-table isolation seen at returns: nil unknown.
        public var pageTableIsolation: Bool?
        public var vcpus: UInt64 = 0
        /// Entries the plugin wrote (the calls the model needs, or every call with --all-calls).
        public var recorded: UInt64 = 0
        /// How the plugin read guest memory.
        public var guestMemory: GuestMemoryAccess = .qemu
        /// Whether a call's pt_regs address came from the per-cpu top of stack (in memory) rather
        /// than a register; nil: never tried; false: tried and it disagreed with the register.
        public var stackTopUsed: Bool?
        public var error: String?
    }

    /// How the plugin reads guest memory (kvmi_ring_header.guest_ram).
    public enum GuestMemoryAccess: String, Sendable, Equatable {
        /// Through QEMU's debug reads only (the RAM's size was not given).
        case qemu
        /// The RAM's mapping was not found in QEMU: through QEMU.
        case notFound = "not-found"
        /// Page tables walked and memory read in the RAM mapping.
        case direct
        /// A direct read differed from QEMU's: turned off, through QEMU.
        case disagreed
    }

    /// Makes a ring of `capacity` bytes (a power of two) in `directory`.
    public init(directory: String = "/dev/shm", name: String, capacity: Int = 32 << 20) throws(SystemError) {
        precondition(capacity > 0 && capacity & (capacity - 1) == 0, "ring capacity must be a power of two")
        path = directory + "/" + name
        memory = try MappedMemory(path: path, size: Int(KVMI_RING_HEADER_SIZE) + capacity, create: true)
        // SAFETY: the mapping is page-aligned and holds the 4096-byte header first.
        header = memory.bytes.baseAddress!.bindMemory(to: kvmi_ring_header.self, capacity: 1)
        data = UnsafeRawBufferPointer(rebasing: memory.bytes[Int(KVMI_RING_HEADER_SIZE)...])
        self.capacity = UInt64(capacity)
        header.pointee.version = UInt32(KVMI_RING_VERSION)
        header.pointee.header_size = UInt32(KVMI_RING_HEADER_SIZE)
        header.pointee.capacity = UInt64(capacity)
        // The magic last: the plugin refuses a ring whose header is not complete.
        header.pointee.magic = KVMI_RING_MAGIC
    }

    deinit { removeFile() }

    /// Removes the file (the mappings stay): once QEMU has mapped it, nothing needs the name.
    public func removeFile() {
        guard !removed else { return }
        removed = true
        try? FileSystem.remove(path)
    }

    /// Tells the plugin whether kanshi reads the ring: while it does, a full ring holds the
    /// guest until there is room; before and after, a full ring drops (and counts) records.
    public func setReading(_ reading: Bool) {
        kvmi_ring_set_consumer(header, reading ? 1 : 0)
    }

    /// The room freed at once while a batch is read, so a producer waiting for room goes on early.
    static let releaseEvery: UInt64 = 1 << 20

    /// Decodes every record published so far, in order, then frees their room.
    /// Returns how many records were read.
    @discardableResult
    public func poll(_ body: (GuestRecord) throws -> Void) throws -> Int {
        let head = kvmi_ring_head(header)
        var tail = header.pointee.tail
        var count = 0
        defer { kvmi_ring_set_tail(header, tail) }
        while tail < head {
            let pos = Int(tail % capacity)
            let room = min(Int(capacity) - pos, Int(head - tail))
            let (record, size) = try GuestRecord.decode(UnsafeRawBufferPointer(rebasing: data[pos..<(pos + room)]), at: tail)
            tail += UInt64(size)
            if tail & (Self.releaseEvery - 1) < UInt64(size) { kvmi_ring_set_tail(header, tail) }
            if case .pad = record { continue }
            try body(record)
            count += 1
        }
        return count
    }

    public var stats: Stats {
        var s = Stats()
        kvmi_ring_totals(header, &s.calls, &s.recorded, &s.returns)
        s.dropped = kvmi_ring_load(&header.pointee.dropped)
        s.waits = kvmi_ring_load(&header.pointee.waits)
        s.waitedNs = kvmi_ring_load(&header.pointee.waited_ns)
        s.unreadable = kvmi_ring_load(&header.pointee.unreadable)
        s.evicted = kvmi_ring_load(&header.pointee.evicted)
        s.calibrated = kvmi_ring_load(&header.pointee.calibrated) != 0
        s.slide = kvmi_ring_load(&header.pointee.slide)
        s.state = kvmi_ring_load(&header.pointee.state)
        let pti = kvmi_ring_load(&header.pointee.pti)
        s.pageTableIsolation = pti == 0 ? nil : pti == 2
        s.vcpus = kvmi_ring_load(&header.pointee.vcpus)
        switch kvmi_ring_load(&header.pointee.guest_ram) {
        case UInt64(KVMI_GUEST_RAM_NOT_FOUND): s.guestMemory = .notFound
        case UInt64(KVMI_GUEST_RAM_DIRECT): s.guestMemory = .direct
        case UInt64(KVMI_GUEST_RAM_DISAGREED): s.guestMemory = .disagreed
        default: s.guestMemory = .qemu
        }
        let top = kvmi_ring_load(&header.pointee.stack_top)
        s.stackTopUsed = top == 0 ? nil : top == 1
        let err = withUnsafeBytes(of: header.pointee.error) { b in String(decoding: b.prefix { $0 != 0 }, as: UTF8.self) }
        s.error = err.isEmpty ? nil : err
        return s
    }
}
