/// A little-endian ELF64 x86_64 file (a vmlinux): its sections by name and
/// reads at kernel virtual addresses through its program headers.
public struct ELFImage: Sendable {
    /// One section header.
    public struct Section: Sendable, Equatable {
        public let name: String
        public let type: UInt32
        public let address: UInt64
        public let offset: Int
        public let size: Int
    }

    /// One program header (PT_LOAD and others).
    public struct Segment: Sendable, Equatable {
        public let type: UInt32
        public let offset: Int
        public let virtualAddress: UInt64
        public let fileSize: Int
        public let memorySize: Int
    }

    /// The whole file.
    public let bytes: [UInt8]
    public let sections: [Section]
    public let segments: [Segment]
    /// The entry point (e_entry).
    public let entry: UInt64

    static let sectionNoBits: UInt32 = 8
    static let loadSegment: UInt32 = 1

    /// True when `bytes` starts with the ELF magic.
    public static func isELF(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7f && bytes[1] == 0x45 && bytes[2] == 0x4c && bytes[3] == 0x46
    }

    /// Parses the ELF headers of `bytes`.
    public init(bytes: [UInt8]) throws(GuestKernelError) {
        guard Self.isELF(bytes) else { throw .badELF(detail: "no ELF magic (first bytes \(bytes.prefix(from: 0, 4)))") }
        guard bytes.count >= 64 else { throw .badELF(detail: "file of \(bytes.count) bytes is shorter than an ELF64 header") }
        guard bytes[4] == 2, bytes[5] == 1 else {
            throw .badELF(detail: "class \(bytes[4]) / data \(bytes[5]): not ELF64 little-endian")
        }
        guard bytes.u16(18) == 62 else { throw .badELF(detail: "machine \(bytes.u16(18) ?? 0) is not x86_64 (62)") }
        self.bytes = bytes
        entry = bytes.u64(24) ?? 0
        // Offsets and sizes are taken as they come (huge ones turn negative) and then range-checked.
        let phoff = Int(truncatingIfNeeded: bytes.u64(32) ?? 0), shoff = Int(truncatingIfNeeded: bytes.u64(40) ?? 0)
        let phentsize = Int(bytes.u16(54) ?? 0), phnum = Int(bytes.u16(56) ?? 0)
        let shentsize = Int(bytes.u16(58) ?? 0), shnum = Int(bytes.u16(60) ?? 0)
        let shstrndx = Int(bytes.u16(62) ?? 0)

        var segments: [Segment] = []
        if phnum > 0 {
            guard phentsize >= 56, phoff > 0, phoff <= bytes.count - phnum * phentsize else {
                throw .badELF(detail: "\(phnum) program headers at 0x\(String(phoff, radix: 16)) lie outside the \(bytes.count)-byte file")
            }
            for i in 0..<phnum {
                let h = phoff + i * phentsize
                segments.append(Segment(
                    type: bytes.u32(h) ?? 0, offset: Int(truncatingIfNeeded: bytes.u64(h + 8) ?? 0),
                    virtualAddress: bytes.u64(h + 16) ?? 0,
                    fileSize: Int(truncatingIfNeeded: bytes.u64(h + 32) ?? 0),
                    memorySize: Int(truncatingIfNeeded: bytes.u64(h + 40) ?? 0)))
            }
        }
        self.segments = segments

        var sections: [Section] = []
        if shnum > 0 {
            guard shentsize >= 64, shoff > 0, shoff <= bytes.count - shnum * shentsize, shstrndx < shnum else {
                throw .badELF(detail: "\(shnum) section headers at 0x\(String(shoff, radix: 16)) lie outside the \(bytes.count)-byte file")
            }
            let strtab = shoff + shstrndx * shentsize
            let namesAt = Int(truncatingIfNeeded: bytes.u64(strtab + 24) ?? 0)
            for i in 0..<shnum {
                let h = shoff + i * shentsize
                let nameOffset = Int(bytes.u32(h) ?? 0)
                let type = bytes.u32(h + 4) ?? 0
                let offset = Int(truncatingIfNeeded: bytes.u64(h + 24) ?? 0)
                let size = Int(truncatingIfNeeded: bytes.u64(h + 32) ?? 0)
                let name = bytes.cString(namesAt &+ nameOffset, limit: 256) ?? ""
                if type != Self.sectionNoBits, size > 0 {
                    guard offset >= 0, size >= 0, offset <= bytes.count - size else {
                        throw .badELF(detail: "section \(name.isEmpty ? "#\(i)" : name) (0x\(String(offset, radix: 16)) + \(size)) lies outside the \(bytes.count)-byte file (truncated?)")
                    }
                }
                sections.append(Section(name: name, type: type, address: bytes.u64(h + 16) ?? 0, offset: offset, size: size))
            }
        }
        self.sections = sections
    }

    /// The first section called `name`, or nil.
    public func section(named name: String) -> Section? {
        sections.first { $0.name == name }
    }

    /// The file bytes of `section` (empty for SHT_NOBITS or a range outside the file).
    public func contents(of section: Section) -> ArraySlice<UInt8> {
        guard section.type != Self.sectionNoBits, section.size > 0, section.offset >= 0,
              section.offset <= bytes.count - section.size
        else { return [] }
        return bytes[section.offset..<section.offset + section.size]
    }

    /// The file offset holding kernel virtual address `address`, through the
    /// PT_LOAD segments (then the sections), or nil if no file byte maps there.
    public func fileOffset(ofVirtualAddress address: UInt64) -> Int? {
        for s in segments where s.type == Self.loadSegment && s.fileSize > 0 && s.offset >= 0 {
            if address >= s.virtualAddress, address - s.virtualAddress < UInt64(s.fileSize) {
                let offset = s.offset &+ Int(address - s.virtualAddress)
                return offset >= 0 && offset < bytes.count ? offset : nil
            }
        }
        // Sections were range-checked when read.
        for s in sections where s.type != Self.sectionNoBits && s.address != 0 && s.size > 0 {
            if address >= s.address, address - s.address < UInt64(s.size) {
                return s.offset + Int(address - s.address)
            }
        }
        return nil
    }

    /// `count` bytes at kernel virtual address `address`, or nil if they are not all in the file.
    public func read(virtualAddress address: UInt64, count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, let start = fileOffset(ofVirtualAddress: address), start <= bytes.count - count else { return nil }
        if count > 0, let last = fileOffset(ofVirtualAddress: address &+ UInt64(count - 1)), last != start + count - 1 { return nil }
        return bytes[start..<start + count]
    }

    /// The virtual address of file offset `offset`, through the PT_LOAD segments, or nil.
    public func virtualAddress(ofFileOffset offset: Int) -> UInt64? {
        for s in segments where s.type == Self.loadSegment && s.fileSize > 0 && offset >= s.offset && offset - s.offset < s.fileSize {
            return s.virtualAddress &+ UInt64(offset - s.offset)
        }
        return nil
    }
}
