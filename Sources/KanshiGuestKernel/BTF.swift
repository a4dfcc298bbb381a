/// The kernel's BPF Type Format (the `.BTF` section of a vmlinux built with
/// CONFIG_DEBUG_INFO_BTF): every type, with structure layouts. See the
/// kernel's Documentation/bpf/btf.rst and include/uapi/linux/btf.h.
public struct BTF: Sendable {
    /// A BTF type kind (BTF_KIND_*).
    public enum Kind: UInt8, Sendable {
        case void = 0, int, pointer, array, structure, union, enumeration, forward, typedef
        case volatile, const, restrict, function, functionPrototype, variable, dataSection
        case float, declarationTag, typeTag, enumeration64
    }

    /// One type record. `sizeOrType` is the size for INT/STRUCT/UNION/ENUM/
    /// ENUM64/FLOAT/DATASEC and the referenced type id for the others.
    public struct TypeRecord: Sendable {
        public let kind: Kind
        public let nameOffset: UInt32
        public let vlen: Int
        public let kindFlag: Bool
        public let sizeOrType: UInt32
        /// Index of this type's first entry in `members` (STRUCT, UNION, DATASEC), its array
        /// record, its first entry in `enumerators` (ENUM, ENUM64), or an INT's encoding word.
        let extra: Int32
    }

    /// A STRUCT/UNION member or a DATASEC variable entry (nameOffset 0: the VAR type is named).
    public struct Member: Sendable {
        public let nameOffset: UInt32
        public let type: UInt32
        /// Bit offset for members (the low 24 bits when the struct's kind_flag is set);
        /// the byte offset for DATASEC entries.
        public let offset: UInt32
    }

    /// One constant of an ENUM or ENUM64. An unsigned ENUM64 constant above
    /// Int64.max keeps its bit pattern (see `BTF.enumerators(of:)`).
    public struct Enumerator: Sendable {
        public let nameOffset: UInt32
        public let value: Int64
    }

    /// An INT's encoding (BTF_INT_SIGNED, BTF_INT_CHAR, BTF_INT_BOOL), bit offset and width.
    public struct IntEncoding: Sendable, Equatable {
        public let signed: Bool
        public let char: Bool
        public let bool: Bool
        public let bitOffset: Int
        public let bits: Int
    }

    /// Records by type id; index 0 is void.
    public let types: [TypeRecord]
    /// Members of every STRUCT/UNION and entries of every DATASEC, in order.
    let members: [Member]
    /// (element type, nelems) of every ARRAY, indexed by TypeRecord.extra.
    let arrays: [(UInt32, UInt32)]
    /// The constants of every ENUM and ENUM64, in order.
    let enumerators: [Enumerator]
    let strings: [UInt8]
    /// Named STRUCT/UNION/DATASEC type ids by name (the first complete one wins).
    let aggregates: [String: UInt32]

    static let magic: UInt16 = 0xeb9f

    /// Parses a `.BTF` section's bytes.
    public init(section: ArraySlice<UInt8>) throws(GuestKernelError) {
        let data = Array(section)
        guard data.u16(0) == Self.magic else { throw .badBTF(offset: 0, detail: "no BTF magic 0xeb9f (found \(data.prefix(from: 0, 2)))") }
        guard data.u8(2) == 1 else { throw .badBTF(offset: 2, detail: "BTF version \(data.u8(2) ?? 0), expected 1") }
        guard let hdrLen = data.u32(4), hdrLen >= 24, let typeOff = data.u32(8), let typeLen = data.u32(12),
              let strOff = data.u32(16), let strLen = data.u32(20)
        else { throw .badBTF(offset: 4, detail: "truncated header (\(data.count) bytes)") }
        let typeStart = Int(hdrLen) + Int(typeOff), typeEnd = typeStart + Int(typeLen)
        let strStart = Int(hdrLen) + Int(strOff), strEnd = strStart + Int(strLen)
        guard typeEnd <= data.count, strEnd <= data.count else {
            throw .badBTF(offset: 8, detail: "type (\(typeStart)..<\(typeEnd)) or string (\(strStart)..<\(strEnd)) section beyond the \(data.count)-byte blob (truncated?)")
        }
        strings = Array(data[strStart..<strEnd])

        var types: [TypeRecord] = [TypeRecord(kind: .void, nameOffset: 0, vlen: 0, kindFlag: false, sizeOrType: 0, extra: -1)]
        var members: [Member] = []
        var arrays: [(UInt32, UInt32)] = []
        var enumerators: [Enumerator] = []
        types.reserveCapacity(Int(typeLen) / 20)
        members.reserveCapacity(Int(typeLen) / 16)
        var pos = typeStart
        // SAFETY: every read is checked against typeEnd, which lies inside `data`.
        let failure: GuestKernelError? = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> GuestKernelError? in
            @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
            while pos < typeEnd {
                guard pos + 12 <= typeEnd else { return .badBTF(offset: pos, detail: "type record cut off at the end of the type section") }
                let nameOffset = u32(pos), info = u32(pos + 4), sizeOrType = u32(pos + 8)
                let vlen = Int(info & 0xffff)
                guard let kind = Kind(rawValue: UInt8((info >> 24) & 0x1f)), kind != .void else {
                    return .badBTF(offset: pos, detail: "unknown kind \((info >> 24) & 0x1f) for type id \(types.count)")
                }
                let body = pos + 12
                var extra: Int32 = -1
                let bodyLength: Int
                switch kind {
                case .int, .variable, .declarationTag: bodyLength = 4
                case .array: bodyLength = 12
                case .structure, .union, .dataSection, .enumeration64: bodyLength = vlen * 12
                case .enumeration, .functionPrototype: bodyLength = vlen * 8
                default: bodyLength = 0
                }
                guard body + bodyLength <= typeEnd else {
                    return .badBTF(offset: pos, detail: "type id \(types.count) (\(kind)) with \(vlen) entries runs past the type section")
                }
                switch kind {
                case .structure, .union, .dataSection:
                    extra = Int32(members.count)
                    for i in 0..<vlen {
                        let m = body + i * 12
                        if kind == .dataSection {  // btf_var_secinfo: type, offset, size
                            members.append(Member(nameOffset: 0, type: u32(m), offset: u32(m + 4)))
                        } else {  // btf_member: name_off, type, offset
                            members.append(Member(nameOffset: u32(m), type: u32(m + 4), offset: u32(m + 8)))
                        }
                    }
                case .array:
                    extra = Int32(arrays.count)
                    arrays.append((u32(body), u32(body + 8)))
                case .int:
                    extra = Int32(bitPattern: u32(body))
                case .enumeration:  // btf_enum: name_off, val (signed when kind_flag is set)
                    extra = Int32(enumerators.count)
                    let signed = info >> 31 != 0
                    for i in 0..<vlen {
                        let raw = u32(body + i * 8 + 4)
                        enumerators.append(Enumerator(nameOffset: u32(body + i * 8),
                                                      value: signed ? Int64(Int32(bitPattern: raw)) : Int64(raw)))
                    }
                case .enumeration64:  // btf_enum64: name_off, val_lo32, val_hi32
                    extra = Int32(enumerators.count)
                    for i in 0..<vlen {
                        let e = body + i * 12
                        enumerators.append(Enumerator(nameOffset: u32(e),
                                                      value: Int64(bitPattern: UInt64(u32(e + 4)) | UInt64(u32(e + 8)) << 32)))
                    }
                default: break
                }
                types.append(TypeRecord(kind: kind, nameOffset: nameOffset, vlen: vlen, kindFlag: info >> 31 != 0,
                                        sizeOrType: sizeOrType, extra: extra))
                pos = body + bodyLength
            }
            return nil
        }
        if let failure { throw failure }
        self.types = types
        self.members = members
        self.arrays = arrays
        self.enumerators = enumerators
        var aggregates: [String: UInt32] = [:]
        for (id, t) in types.enumerated() where (t.kind == .structure || t.kind == .union || t.kind == .dataSection) && t.nameOffset != 0 {
            let name = Self.string(strings, t.nameOffset)
            if let old = aggregates[name], types[Int(old)].vlen > 0 { continue }
            aggregates[name] = UInt32(id)
        }
        self.aggregates = aggregates
    }

    /// Number of types (without void).
    public var count: Int { types.count - 1 }

    /// The name at `offset` in the string section ("" when out of range).
    public func name(at offset: UInt32) -> String { Self.string(strings, offset) }

    static func string(_ strings: [UInt8], _ offset: UInt32) -> String {
        let o = Int(offset)
        guard o < strings.count else { return "" }
        var end = o
        while end < strings.count && strings[end] != 0 { end += 1 }
        return String(decoding: strings[o..<end], as: UTF8.self)
    }

    /// The type id of the struct or union called `name`, or nil.
    public func aggregate(named name: String) -> UInt32? {
        guard let id = aggregates[name], types[Int(id)].kind != .dataSection else { return nil }
        return id
    }

    /// `id` with typedefs and const/volatile/restrict/type tags stripped.
    public func resolve(_ id: UInt32) -> UInt32 {
        var id = id
        for _ in 0..<64 {
            guard Int(id) < types.count else { return 0 }
            switch types[Int(id)].kind {
            case .typedef, .volatile, .const, .restrict, .typeTag: id = types[Int(id)].sizeOrType
            default: return id
            }
        }
        return 0
    }

    /// Size in bytes of type `id` (0 for void, functions and unknown ids).
    public func size(of id: UInt32) -> Int {
        size(of: id, depth: 0)
    }

    private func size(of id: UInt32, depth: Int) -> Int {
        let id = resolve(id)
        guard depth < 32 else { return 0 }  // arrays of arrays; a malformed cycle ends here
        guard id != 0, Int(id) < types.count else { return 0 }
        let t = types[Int(id)]
        switch t.kind {
        case .int, .structure, .union, .enumeration, .enumeration64, .float, .dataSection: return Int(t.sizeOrType)
        case .pointer: return 8
        case .array:
            let (element, count) = arrays[Int(t.extra)]
            return Int(count) * size(of: element, depth: depth + 1)
        default: return 0
        }
    }

    /// The encoding of the INT `id`, or nil when `id` is not an INT.
    public func intEncoding(of id: UInt32) -> IntEncoding? {
        guard Int(id) < types.count, types[Int(id)].kind == .int else { return nil }
        let word = UInt32(bitPattern: types[Int(id)].extra)
        let encoding = (word >> 24) & 0x0f
        return IntEncoding(signed: encoding & 1 != 0, char: encoding & 2 != 0, bool: encoding & 4 != 0,
                           bitOffset: Int((word >> 16) & 0xff), bits: Int(word & 0xff))
    }

    /// The constants of the ENUM or ENUM64 `id` (empty for other kinds). An ENUM64
    /// without kind_flag is unsigned: read `value` as `UInt64(bitPattern:)` then.
    public func enumerators(of id: UInt32) -> ArraySlice<Enumerator> {
        guard Int(id) < types.count else { return [] }
        let t = types[Int(id)]
        guard t.extra >= 0, t.kind == .enumeration || t.kind == .enumeration64 else { return [] }
        return enumerators[Int(t.extra)..<Int(t.extra) + t.vlen]
    }

    /// The element type and element count of the ARRAY `id`, or nil.
    public func array(_ id: UInt32) -> (element: UInt32, count: Int)? {
        guard Int(id) < types.count, types[Int(id)].kind == .array else { return nil }
        let (element, count) = arrays[Int(types[Int(id)].extra)]
        return (element, Int(count))
    }

    /// The members of the STRUCT/UNION (or entries of the DATASEC) `id`.
    public func members(of id: UInt32) -> ArraySlice<Member> {
        guard Int(id) < types.count else { return [] }
        let t = types[Int(id)]
        guard t.extra >= 0, t.kind == .structure || t.kind == .union || t.kind == .dataSection else { return [] }
        return members[Int(t.extra)..<Int(t.extra) + t.vlen]
    }
}
