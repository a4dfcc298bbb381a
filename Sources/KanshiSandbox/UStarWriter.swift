import Foundation
/// A POSIX ustar archive of regular files (and their parent directories), as
/// busybox tar in the guest extracts it. Names up to 255 bytes (prefix + name).
struct UStarWriter {
    private(set) var bytes: [UInt8] = []
    private var directories: Set<String> = []

    mutating func add(path: String, data: [UInt8], mode: Int) throws {
        let rel = String(path.drop { $0 == "/" })
        var parent = ""
        for part in rel.split(separator: "/").dropLast() {
            parent += part + "/"
            if directories.insert(parent).inserted { try entry(name: parent, size: 0, mode: 0o755, type: UInt8(ascii: "5")) }
        }
        try entry(name: rel, size: data.count, mode: mode, type: UInt8(ascii: "0"))
        bytes += data
        bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    /// The archive with its two zero end blocks.
    func finish() -> [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }

    private mutating func entry(name: String, size: Int, mode: Int, type: UInt8) throws {
        var h = [UInt8](repeating: 0, count: 512)
        let n = Array(name.utf8)
        var prefix: [UInt8] = [], short = n
        if n.count > 100 {
            // Split at a "/" so that the name part fits 100 bytes and the prefix 155.
            guard let cut = n.indices.last(where: { n[$0] == UInt8(ascii: "/") && n.count - $0 - 1 <= 100 && $0 <= 155 }) else {
                throw SandboxError.badAdd(name, "the guest path is too long for the archive (at most 255 bytes, parts of 100)")
            }
            prefix = Array(n[..<cut]); short = Array(n[(cut + 1)...])
        }
        func put(_ field: [UInt8], at offset: Int) { for (i, b) in field.enumerated() { h[offset + i] = b } }
        func octal(_ v: Int, width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - s.count)) + s).utf8) + [0]
        }
        put(short, at: 0)
        put(octal(mode, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)  // uid
        put(octal(0, width: 8), at: 116)  // gid
        put(octal(size, width: 12), at: 124)
        put(octal(0, width: 12), at: 136)  // mtime
        put(Array(repeating: UInt8(ascii: " "), count: 8), at: 148)
        h[156] = type
        put(Array("ustar".utf8) + [0], at: 257)
        put(Array("00".utf8), at: 263)
        put(prefix, at: 345)
        let sum = h.reduce(0) { $0 + Int($1) }
        put(Array(String(format: "%06o", sum).utf8) + [0, UInt8(ascii: " ")], at: 148)
        bytes += h
    }
}
