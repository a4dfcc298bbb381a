/// Walks x86-64 page tables (4-level, or 5-level with LA57) kept in guest
/// physical memory: 4 KiB pages, 2 MiB and 1 GiB huge pages, and Linux's
/// non-present entries (swapped out, PROT_NONE).
public struct PageWalker: Sendable {
    public let memory: PhysicalMemory
    /// 4 or 5.
    public let levels: Int

    /// Bits of a page-table entry, as the hardware and Linux use them.
    public struct Entry {
        public static let present: UInt64 = 1 << 0
        public static let writable: UInt64 = 1 << 1
        public static let user: UInt64 = 1 << 2
        public static let accessed: UInt64 = 1 << 5
        public static let dirty: UInt64 = 1 << 6
        /// PS: a huge page at the PDPT (1 GiB) or page-directory (2 MiB) level.
        public static let hugePage: UInt64 = 1 << 7
        /// Linux's _PAGE_PROTNONE (the global bit, on a non-present entry).
        public static let protNone: UInt64 = 1 << 8
        public static let noExecute: UInt64 = 1 << 63
        /// Bits 12-51: the next table's or the page's physical address.
        public static let address: UInt64 = 0x000f_ffff_ffff_f000
    }

    /// A mapped page's permissions and state.
    public struct Flags: OptionSet, Sendable, Hashable, Codable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        public static let writable = Flags(rawValue: 1)
        public static let user = Flags(rawValue: 2)
        public static let executable = Flags(rawValue: 4)
        public static let accessed = Flags(rawValue: 8)
        public static let dirty = Flags(rawValue: 16)

        /// "rwx" style, e.g. "rw-", "r-x".
        public var permissions: String {
            "r" + (contains(.writable) ? "w" : "-") + (contains(.executable) ? "x" : "-")
        }
    }

    /// What a virtual address is.
    public enum Translation: Sendable, Equatable {
        case mapped(physical: UInt64, pageSize: UInt64, flags: Flags)
        /// Not in RAM: swapped out (the entry holds the swap type and offset).
        case swapped(entry: UInt64)
        /// Mapped with no access at all (mprotect PROT_NONE; NUMA hinting).
        case protNone(entry: UInt64)
        case notMapped(level: Int)
        /// A table or page the walk reached is not in the guest's RAM (a corrupt or stale table).
        case outsideRAM(physical: UInt64, level: Int)
    }

    /// One page found by `pages`.
    public struct Page: Sendable, Equatable {
        public var virtual: UInt64
        public var size: UInt64
        public var state: Translation
    }

    public init(memory: PhysicalMemory, levels: Int) {
        self.memory = memory
        self.levels = levels == 5 ? 5 : 4
    }

    /// The address-space half user processes own: below 128 TiB (256 PiB with 5 levels).
    public var userSpace: Range<UInt64> { 0..<(levels == 5 ? 1 << 56 : 1 << 47) }

    static func flags(_ e: UInt64) -> Flags {
        var f: Flags = []
        if e & Entry.writable != 0 { f.insert(.writable) }
        if e & Entry.user != 0 { f.insert(.user) }
        if e & Entry.noExecute == 0 { f.insert(.executable) }
        if e & Entry.accessed != 0 { f.insert(.accessed) }
        if e & Entry.dirty != 0 { f.insert(.dirty) }
        return f
    }

    /// A leaf entry's flags, less what a table above it took away.
    static func flags(_ e: UInt64, writable: Bool, user: Bool, executable: Bool) -> Flags {
        var f = flags(e)
        if !writable { f.remove(.writable) }
        if !user { f.remove(.user) }
        if !executable { f.remove(.executable) }
        return f
    }

    func shift(level: Int) -> UInt64 { 12 + 9 * UInt64(level - 1) }

    /// Translates `virtual` under the top-level table at physical `root` (a CR3 value; its
    /// low bits, the PCID, are ignored).
    public func translate(_ virtual: UInt64, root: UInt64) -> Translation {
        var table = root & Entry.address
        var writable = true, user = true, executable = true
        for level in stride(from: levels, through: 1, by: -1) {
            let s = shift(level: level)
            let slot = table + ((virtual >> s) & 511) * 8
            guard let e = memory.u64(at: slot) else { return .outsideRAM(physical: slot, level: level) }
            if e & Entry.present == 0 {
                guard level == 1, e != 0 else { return .notMapped(level: level) }
                return e & Entry.protNone != 0 ? .protNone(entry: e) : .swapped(entry: e)
            }
            writable = writable && e & Entry.writable != 0
            user = user && e & Entry.user != 0
            executable = executable && e & Entry.noExecute == 0
            if level == 1 || (level <= 3 && e & Entry.hugePage != 0) {
                let size: UInt64 = 1 << s
                let physical = (e & Entry.address & ~(size - 1)) | (virtual & (size - 1))
                let f = Self.flags(e, writable: writable, user: user, executable: executable)
                guard memory.bytes(at: physical & ~(size - 1), count: 1) != nil else { return .outsideRAM(physical: physical, level: level) }
                return .mapped(physical: physical, pageSize: size, flags: f)
            }
            table = e & Entry.address
        }
        return .notMapped(level: 0)
    }

    /// Every page that is mapped, swapped out or PROT_NONE in `range` under `root`, in
    /// address order; tables outside RAM are reported as such (and not followed).
    public func pages(root: UInt64, in range: Range<UInt64>, _ body: (Page) -> Void) {
        walk(table: root & Entry.address, level: levels, base: 0, range: range, writable: true, user: true, executable: true, body)
    }

    private func walk(table: UInt64, level: Int, base: UInt64, range: Range<UInt64>,
                      writable: Bool, user: Bool, executable: Bool, _ body: (Page) -> Void) {
        let s = shift(level: level)
        let size: UInt64 = 1 << s
        guard let entries = memory.bytes(at: table, count: 4096) else {
            body(Page(virtual: base, size: size << 9, state: .outsideRAM(physical: table, level: level)))
            return
        }
        for i in 0..<512 {
            let start = base | (UInt64(i) << s)
            guard start < range.upperBound else { return }
            guard start &+ size > range.lowerBound else { continue }
            let e = UInt64(littleEndian: entries.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
            if e == 0 { continue }
            if e & Entry.present == 0 {
                if level == 1 { body(Page(virtual: start, size: size, state: e & Entry.protNone != 0 ? .protNone(entry: e) : .swapped(entry: e))) }
                continue
            }
            let w = writable && e & Entry.writable != 0, u = user && e & Entry.user != 0, x = executable && e & Entry.noExecute == 0
            if level == 1 || (level <= 3 && e & Entry.hugePage != 0) {
                let f = Self.flags(e, writable: w, user: u, executable: x)
                let physical = e & Entry.address & ~(size - 1)
                let state: Translation = memory.bytes(at: physical, count: 1) == nil
                    ? .outsideRAM(physical: physical, level: level) : .mapped(physical: physical, pageSize: size, flags: f)
                body(Page(virtual: start, size: size, state: state))
            } else {
                walk(table: e & Entry.address, level: level - 1, base: start, range: range, writable: w, user: u, executable: x, body)
            }
        }
    }
}
