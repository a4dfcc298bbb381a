import Foundation

/// `bpftool btf dump ... format raw` read back as an oracle: structs with their
/// members, and the type-id chains of typedefs and qualifiers. The member-path
/// walk here is deliberately the plain text-driven one.
struct BpftoolRaw {
    struct Member { var name: String; var type: Int; var bitOffset: Int }
    struct Aggregate { var name: String; var size: Int; var members: [Member] }

    var kinds: [Int: String] = [:]
    var refs: [Int: Int] = [:]
    var aggregates: [Int: Aggregate] = [:]
    var structs: [String: Aggregate] = [:]
    var typeCount = 0

    init(_ text: String) {
        var current: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("[") {
                // [5] STRUCT 'list_head' size=16 vlen=2
                let fields = line.split(separator: " ")
                guard let id = Int(fields[0].dropFirst().dropLast()) else { continue }
                typeCount = max(typeCount, id)
                let kind = String(fields[1])
                kinds[id] = kind
                let name = Self.quoted(line)
                let values = Self.values(line)
                if let t = values["type_id"] { refs[id] = t }
                if kind == "STRUCT" || kind == "UNION" {
                    aggregates[id] = Aggregate(name: name, size: values["size"] ?? 0, members: [])
                    current = id
                } else {
                    current = nil
                }
            } else if line.hasPrefix("\t'"), let id = current {
                let values = Self.values(line)
                aggregates[id]!.members.append(Member(name: Self.quoted(line), type: values["type_id"] ?? 0, bitOffset: values["bits_offset"] ?? 0))
            } else if !line.hasPrefix("\t") {
                current = nil
            }
        }
        for (_, a) in aggregates where a.name != "(anon)" && (structs[a.name]?.members.isEmpty ?? true) {
            structs[a.name] = a
        }
    }

    static func quoted(_ line: Substring) -> String {
        guard let a = line.firstIndex(of: "'") else { return "" }
        let rest = line[line.index(after: a)...]
        guard let b = rest.firstIndex(of: "'") else { return "" }
        return String(rest[..<b])
    }

    static func values(_ line: Substring) -> [String: Int] {
        var out: [String: Int] = [:]
        for field in line.split(separator: " ") {
            let kv = field.split(separator: "=", maxSplits: 1)
            if kv.count == 2, let v = Int(kv[1]) { out[String(kv[0]).trimmingCharacters(in: .whitespaces)] = v }
        }
        return out
    }

    func strip(_ id: Int) -> Int {
        var id = id
        while let k = kinds[id], ["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"].contains(k), let next = refs[id] { id = next }
        return id
    }

    /// Bit offset of `name` in aggregate `id`, searching anonymous members.
    func find(_ name: String, in id: Int) -> (Int, Int)? {
        guard let a = aggregates[id] else { return nil }
        if let m = a.members.first(where: { $0.name == name }) { return (m.bitOffset, m.type) }
        for m in a.members where m.name == "(anon)" {
            if let (bits, type) = find(name, in: strip(m.type)) { return (m.bitOffset + bits, type) }
        }
        return nil
    }

    /// Byte offset of the dotted `path` in struct `name`.
    func offset(_ name: String, _ path: String) -> Int? {
        guard var id = aggregates.first(where: { $0.value.name == name && !$0.value.members.isEmpty })?.key else { return nil }
        var bits = 0
        for part in path.split(separator: ".") {
            guard let (b, type) = find(String(part), in: strip(id)) else { return nil }
            bits += b
            id = type
        }
        return bits / 8
    }
}
