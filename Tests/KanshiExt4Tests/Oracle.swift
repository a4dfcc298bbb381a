import Foundation
@testable import KanshiExt4

/// Parsers for debugfs output.
enum Oracle {
    /// `blocks PATH`: every block of the file, data and mapping blocks.
    static func blocks(_ image: String, _ path: String) throws -> Set<UInt64> {
        Set(try debugfs(image, "blocks \(path)").split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { UInt64($0) })
    }

    struct Stat { var inode: UInt32; var size: UInt64; var links: UInt16; var mode: UInt16; var flags: UInt32 }

    /// `stat PATH`: a few fields.
    static func stat(_ image: String, _ path: String) throws -> Stat {
        let text = try debugfs(image, "stat \(path)")
        func field(_ name: String, radix: Int = 10) -> UInt64? {
            guard let r = text.range(of: name) else { return nil }
            let rest = text[r.upperBound...].drop { $0 == " " || $0 == "\t" }
            let digits = rest.prefix { $0.isHexDigit || $0 == "x" }
            let s = digits.hasPrefix("0x") ? String(digits.dropFirst(2)) : String(digits)
            return UInt64(s, radix: digits.hasPrefix("0x") ? 16 : radix)
        }
        return Stat(inode: UInt32(field("Inode:") ?? 0), size: field("Size:") ?? .max, links: UInt16(field("Links:") ?? 0),
                    mode: UInt16(field("Mode:", radix: 8) ?? 0), flags: UInt32(field("Flags:") ?? 0))
    }

    /// `icheck B...`: block -> inode (nil for "<block not found>").
    static func icheck(_ image: String, _ blocks: [UInt64]) throws -> [UInt64: UInt32?] {
        var out: [UInt64: UInt32?] = [:]
        for chunk in stride(from: 0, to: blocks.count, by: 500) {
            let part = blocks[chunk..<min(blocks.count, chunk + 500)]
            let text = try debugfs(image, "icheck " + part.map(String.init).joined(separator: " "))
            for line in text.split(separator: "\n").dropFirst() {
                let cols = line.split(separator: "\t")
                guard cols.count == 2, let b = UInt64(cols[0]) else { continue }
                out[b] = UInt32(cols[1])
            }
        }
        return out
    }

    /// `ncheck I...`: inode -> paths.
    static func ncheck(_ image: String, _ inodes: [UInt32]) throws -> [UInt32: Set<String>] {
        let text = try debugfs(image, "ncheck " + inodes.map(String.init).joined(separator: " "))
        var out: [UInt32: Set<String>] = [:]
        for line in text.split(separator: "\n").dropFirst() {
            let cols = line.split(separator: "\t", maxSplits: 1)
            guard cols.count == 2, let i = UInt32(cols[0]) else { continue }
            // debugfs 1.47 prints "//name" for entries of the root.
            var path = String(cols[1])
            while path.hasPrefix("//") { path.removeFirst() }
            out[i, default: []].insert(path)
        }
        return out
    }
}
