/// The kernel's own symbol table (CONFIG_KALLSYMS), found in the image's
/// read-only data by its structure and decoded as kernel/kallsyms.c does.
/// Gives link-time addresses of functions and (with CONFIG_KALLSYMS_ALL)
/// data, including per-cpu variables as their offsets in the per-cpu area.
public struct Kallsyms: Sendable {
    /// One symbol: name, link-time address (a per-cpu offset for per-cpu
    /// variables) and nm-style type letter ('T', 't', 'D', 'b', ...).
    public struct Symbol: Sendable, Equatable {
        public let name: String
        public let address: UInt64
        public let type: Character
    }

    /// Where the tables are: file offsets in the vmlinux, for diagnostics.
    public struct Tables: Sendable, Equatable {
        public var offsets: Int
        /// kallsyms_relative_base's value, or nil for absolute kallsyms_addresses.
        public var relativeBase: UInt64?
        /// CONFIG_KALLSYMS_ABSOLUTE_PERCPU (x86_64 SMP): non-negative offsets are
        /// absolute per-cpu values, negative ones relative_base - 1 - offset.
        /// Without it every offset is an unsigned distance from relative_base.
        public var absolutePercpu: Bool
        public var numSyms: Int
        public var names: Int
        public var markers: Int
        /// Bytes per marker (4 since 4.20's .long markers; 8 before).
        public var markerWidth: Int
        /// kallsyms_seqs_of_names (6.2+, and some 6.1 stable kernels), or nil.
        public var seqsOfNames: Int?
        public var tokenTable: Int
        public var tokenIndex: Int
    }

    /// Every symbol, in table order (ascending address).
    public let symbols: [Symbol]
    /// Where the tables were found.
    public let tables: Tables
    private let byName: [String: Int]

    init(symbols: [Symbol], tables: Tables) {
        self.symbols = symbols
        self.tables = tables
        var byName: [String: Int] = [:]
        byName.reserveCapacity(symbols.count)
        for (i, s) in symbols.enumerated() where byName[s.name] == nil { byName[s.name] = i }
        self.byName = byName
    }

    /// The first symbol called `name`, or nil. (Static functions may share a
    /// name; `symbols` holds them all.)
    public func symbol(named name: String) -> Symbol? {
        byName[name].map { symbols[$0] }
    }

    /// The link-time address of the first symbol called `name`, or nil.
    public func address(of name: String) -> UInt64? {
        symbol(named: name)?.address
    }

    /// Finds and decodes the kallsyms tables in `elf`, searching its `.rodata`
    /// (or the whole file when there is no such section).
    public init(elf: ELFImage) throws(GuestKernelError) {
        let bytes = elf.bytes
        let region: Range<Int>
        if let rodata = elf.section(named: ".rodata"), case let data = elf.contents(of: rodata), !data.isEmpty {
            region = data.indices
        } else {
            region = 0..<bytes.count
        }
        let finder = KallsymsFinder(bytes: bytes, region: region)
        let token = try finder.tokenTables()
        let tables = try finder.tables(tokenTable: token.table, tokenIndex: token.index)
        self.init(symbols: try finder.decode(tables, tokens: token.tokens), tables: tables)
    }
}

/// Locates the tables by the invariants scripts/kallsyms.c writes them with:
/// each 8-byte aligned; the token table is 256 NUL-terminated strings followed
/// by 256 u16 offsets into it; names are length-prefixed token strings whose
/// every 256th start is listed in the markers.
struct KallsymsFinder {
    let bytes: [UInt8]
    let region: Range<Int>

    /// The token table and index, and the 256 tokens.
    func tokenTables() throws(GuestKernelError) -> (table: Int, index: Int, tokens: [[UInt8]]) {
        var p = alignUp(region.lowerBound, 8)
        let end = region.upperBound - 512
        while p <= end {
            defer { p += 8 }
            // Quick rejects: index[0] == 0, the first token is 1+ bytes.
            guard bytes[p] == 0, bytes[p + 1] == 0 else { continue }
            guard let second = bytes.u16(p + 2), second >= 2, second < 256 else { continue }
            guard let start = tokenTableStart(index: p) else { continue }
            var tokens: [[UInt8]] = []
            tokens.reserveCapacity(256)
            for i in 0..<256 {
                let a = start + Int(bytes.u16(p + 2 * i)!)
                guard let nul = bytes[a..<p].firstIndex(of: 0) else { break }
                tokens.append(Array(bytes[a..<nul]))
            }
            if tokens.count == 256 { return (start, p, tokens) }
        }
        throw .kallsymsNotFound(detail: "no kallsyms_token_table/kallsyms_token_index pair in file bytes \(region)")
    }

    /// If `index` is a kallsyms_token_index, where its token table starts.
    private func tokenTableStart(index p: Int) -> Int? {
        var previous = 0
        var offsets = [Int](repeating: 0, count: 256)
        for i in 0..<256 {
            let v = Int(bytes.u16(p + 2 * i)!)
            if i > 0 && (v < previous + 2 || v > previous + 128) { return nil }
            offsets[i] = v
            previous = v
        }
        // The last token ends with its NUL, then zero padding up to 8 bytes, then `p`.
        var e = p - 1
        while e > p - 9, e > region.lowerBound, bytes[e] == 0 { e -= 1 }
        guard bytes[e] != 0 else { return nil }
        var lastStart = e
        while lastStart > region.lowerBound, bytes[lastStart - 1] != 0 { lastStart -= 1 }
        let start = lastStart - offsets[255]
        guard start >= region.lowerBound else { return nil }
        // Every token is nonempty, NUL-terminated, and ends where the next begins.
        for i in 0..<256 {
            let a = start + offsets[i]
            let b = i < 255 ? start + offsets[i + 1] - 1 : e + 1
            guard bytes[a] != 0, bytes[b] == 0, !bytes[a..<b].contains(0) else { return nil }
        }
        return start
    }

    /// The other tables, worked backwards from the token table: markers (and
    /// seqs_of_names) just before it, names before those, num_syms before the
    /// names; the offsets either before num_syms (up to 6.3) or after the
    /// token index (6.4+).
    func tables(tokenTable: Int, tokenIndex: Int) throws(GuestKernelError) -> Kallsyms.Tables {
        var q = tokenTable - 8
        while q >= region.lowerBound {
            defer { q -= 8 }
            guard let n32 = bytes.u32(q), n32 >= 16, n32 <= 4_000_000, bytes.u32(q + 4) == 0 else { continue }
            let n = Int(n32)
            let markerCount = (n + 255) / 256
            for seqs in [true, false] {
                let seqsStart = seqs ? tokenTable - alignUp(3 * n, 8) : tokenTable
                for width in [4, 8] {
                    let markers = seqsStart - alignUp(markerCount * width, 8)
                    guard markers > q + 8, bytes.u32(markers) == 0, validNames(at: q + 8, count: n, markers: markers, width: width)
                    else { continue }
                    var t = Kallsyms.Tables(offsets: 0, relativeBase: nil, absolutePercpu: false, numSyms: q, names: q + 8, markers: markers,
                                            markerWidth: width, seqsOfNames: seqs ? seqsStart : nil,
                                            tokenTable: tokenTable, tokenIndex: tokenIndex)
                    if let found = addressTables(t, count: n) {
                        (t.offsets, t.relativeBase) = found
                        // The kernel's text lies below relative_base - 1 - offset only as negative offsets.
                        t.absolutePercpu = found.1 != nil
                            && (0..<n).contains { bytes.u32(found.0 + 4 * $0)! >> 31 == 1 }
                        return t
                    }
                    throw .badKallsyms(offset: q, detail: "names and markers of \(n) symbols found, but no kallsyms_offsets/relative_base before them or after the token index")
                }
            }
        }
        throw .kallsymsNotFound(detail: "token table at file offset 0x\(String(tokenTable, radix: 16)) but no kallsyms_num_syms/names/markers before it")
    }

    /// True when `count` length-prefixed names start at `names`, end (padded
    /// to 8) at `markers`, and every 256th starts where its marker says.
    private func validNames(at names: Int, count: Int, markers: Int, width: Int) -> Bool {
        var pos = names
        for i in 0..<count {
            if i & 255 == 0 {
                let m = markers + (i >> 8) * width
                let expected = width == 4 ? bytes.u32(m).map(UInt64.init) : bytes.u64(m)
                guard expected == UInt64(pos - names) else { return false }
            }
            guard pos < markers else { return false }
            var length = Int(bytes[pos])
            pos += 1
            if length & 0x80 != 0 {  // "big" symbols (6.1+): two-byte ULEB128 length
                length = (length & 0x7f) | Int(bytes[pos]) << 7
                pos += 1
            }
            guard length > 0 else { return false }
            pos += length
        }
        return pos <= markers && alignUp(pos, 8) == markers
    }

    /// The offsets table and relative base whose addresses ascend, trying the
    /// pre-6.4 place (before num_syms) then the 6.4+ one (after the token index).
    private func addressTables(_ t: Kallsyms.Tables, count n: Int) -> (Int, UInt64?)? {
        let before = t.numSyms - 8 - alignUp(4 * n, 8)
        if let base = bytes.u64(t.numSyms - 8), ascending(offsets: before, count: n, base: base) { return (before, base) }
        let after = alignUp(t.tokenIndex + 512, 8)
        if let base = bytes.u64(after + alignUp(4 * n, 8)), ascending(offsets: after, count: n, base: base) { return (after, base) }
        // Without CONFIG_KALLSYMS_BASE_RELATIVE: absolute 8-byte kallsyms_addresses before num_syms.
        let absolute = t.numSyms - 8 * n
        if ascending(addresses: absolute, count: n) { return (absolute, nil) }
        return nil
    }

    /// The address of entry `i` with CONFIG_KALLSYMS_ABSOLUTE_PERCPU: non-negative
    /// offsets are absolute (per-cpu), negative ones are relative_base - 1 - offset.
    @inline(__always)
    static func address(_ raw: Int32, base: UInt64, absolutePercpu: Bool = true) -> UInt64 {
        guard absolutePercpu else { return base &+ UInt64(UInt32(bitPattern: raw)) }
        return raw >= 0 ? UInt64(raw) : base &- 1 &- UInt64(bitPattern: Int64(raw))
    }

    private func ascending(offsets: Int, count: Int, base: UInt64) -> Bool {
        guard offsets >= 0, offsets + 4 * count <= bytes.count, base >> 63 == 1 else { return false }
        var previous: UInt64 = 0, descents = 0
        for i in 0..<count {
            let a = Self.address(Int32(bitPattern: bytes.u32(offsets + 4 * i)!), base: base)
            if a < previous { descents += 1 }
            previous = a
        }
        return descents <= count / 1000
    }

    private func ascending(addresses: Int, count: Int) -> Bool {
        guard addresses >= 0, addresses + 8 * count <= bytes.count else { return false }
        var previous: UInt64 = 0, descents = 0
        for i in 0..<count {
            let a = bytes.u64(addresses + 8 * i)!
            if a < previous { descents += 1 }
            previous = a
        }
        return descents <= count / 1000
    }

    /// Every symbol's name (expanded through the tokens), type and address.
    func decode(_ t: Kallsyms.Tables, tokens: [[UInt8]]) throws(GuestKernelError) -> [Kallsyms.Symbol] {
        let n = Int(bytes.u32(t.numSyms) ?? 0)
        var symbols: [Kallsyms.Symbol] = []
        symbols.reserveCapacity(n)
        var pos = t.names
        var expanded: [UInt8] = []
        expanded.reserveCapacity(512)
        // SAFETY: validNames walked exactly these n names inside the buffer, and
        // addressTables checked the address table's range.
        bytes.withUnsafeBufferPointer { b in
            for i in 0..<n {
                var length = Int(b[pos]); pos += 1
                if length & 0x80 != 0 { length = (length & 0x7f) | Int(b[pos]) << 7; pos += 1 }
                expanded.removeAll(keepingCapacity: true)
                for j in pos..<pos + length { expanded.append(contentsOf: tokens[Int(b[j])]) }
                pos += length
                let address: UInt64
                if let base = t.relativeBase {
                    let o = t.offsets + 4 * i
                    let raw = UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
                    address = Self.address(Int32(bitPattern: raw), base: base, absolutePercpu: t.absolutePercpu)
                } else {
                    address = bytes.u64(t.offsets + 8 * i) ?? 0
                }
                let type = expanded.first.map { Character(Unicode.Scalar($0)) } ?? "?"
                symbols.append(Kallsyms.Symbol(name: String(decoding: expanded.dropFirst(), as: UTF8.self), address: address, type: type))
            }
        }
        guard symbols.count == n else { throw .badKallsyms(offset: t.names, detail: "decoded \(symbols.count) of \(n) names") }
        return symbols
    }
}
