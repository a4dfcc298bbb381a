/// Structure layout queries: where a member lies in a struct, how big a struct is.
extension BTF {
    /// Where a member lies: byte offset from the start of the outer struct,
    /// size in bytes, and for a bitfield its bit offset and width.
    public struct MemberLayout: Sendable, Equatable {
        public let offset: Int
        public let size: Int
        /// Bit offset from the start of the outer struct (offset * 8 unless a bitfield).
        public let bitOffset: Int
        /// Width of a bitfield, or 0 for a whole member.
        public let bitfieldSize: Int
        /// Type id of the member (before typedefs are stripped).
        public let type: UInt32
    }

    /// The layout of `path` ("pid", "f_path.dentry", "d_name.name") in the
    /// struct or union `structName`, looking through anonymous structs and
    /// unions and through typedefs and qualifiers of named members.
    public func layout(_ structName: String, _ path: String) throws(GuestKernelError) -> MemberLayout {
        guard let root = aggregate(named: structName) else { throw .missingType(structName) }
        var current = root
        var bits = 0
        var result: MemberLayout?
        for part in path.split(separator: ".", omittingEmptySubsequences: false).map(String.init) {
            let container = resolve(current)
            let kind = types[Int(container)].kind
            guard !part.isEmpty, kind == .structure || kind == .union,
                  let found = find(part, in: container)
            else { throw .missingMember(type: structName, member: path, at: part) }
            bits += found.bits
            current = found.member.type
            result = MemberLayout(offset: bits / 8, size: size(of: current), bitOffset: bits,
                                  bitfieldSize: found.bitfieldSize, type: current)
        }
        guard let result else { throw .missingMember(type: structName, member: path, at: path) }
        return result
    }

    /// Byte offset of `path` in `structName` (see `layout`).
    public func offset(_ structName: String, _ path: String) throws(GuestKernelError) -> Int {
        try layout(structName, path).offset
    }

    /// Size in bytes of the struct or union `structName`.
    public func size(ofStruct structName: String) throws(GuestKernelError) -> Int {
        guard let id = aggregate(named: structName) else { throw .missingType(structName) }
        return Int(types[Int(id)].sizeOrType)
    }

    /// The byte offset of variable `name` in the data section `section`
    /// (e.g. a per-cpu variable in ".data..percpu"), or nil.
    public func variableOffset(_ name: String, inSection section: String) -> Int? {
        guard let id = aggregates[section], types[Int(id)].kind == .dataSection else { return nil }
        for entry in members(of: id) {
            guard Int(entry.type) < types.count else { continue }
            let variable = types[Int(entry.type)]
            if variable.kind == .variable, self.name(at: variable.nameOffset) == name { return Int(entry.offset) }
        }
        return nil
    }

    /// A member called `name` directly in `container` or inside one of its
    /// anonymous struct/union members: its record, bit offset from `container`
    /// and bitfield width.
    private func find(_ name: String, in container: UInt32, depth: Int = 0) -> (member: Member, bits: Int, bitfieldSize: Int)? {
        guard depth < 16 else { return nil }
        let bitfields = types[Int(container)].kindFlag
        var anonymous: [(Member, Int)] = []
        for m in members(of: container) {
            let bitOffset = bitfields ? Int(m.offset & 0xff_ffff) : Int(m.offset)
            let width = bitfields ? Int(m.offset >> 24) : 0
            if m.nameOffset == 0 {
                anonymous.append((m, bitOffset))
            } else if self.name(at: m.nameOffset) == name {
                return (m, bitOffset, width)
            }
        }
        for (m, bitOffset) in anonymous {
            let inner = resolve(m.type)
            let kind = types[Int(inner)].kind
            guard kind == .structure || kind == .union else { continue }
            if let found = find(name, in: inner, depth: depth + 1) {
                return (found.member, bitOffset + found.bits, found.bitfieldSize)
            }
        }
        return nil
    }
}
