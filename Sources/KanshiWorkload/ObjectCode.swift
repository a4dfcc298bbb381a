/// Object-file-like output for the `build` workload: an ELF header, "machine
/// code" made of common x86-64 instruction patterns (entropy like real code,
/// well below encrypted data), and a string table of the source's identifiers.
enum ObjectCode {
    static let patterns: [[UInt8]] = [
        [0x55], [0x48, 0x89, 0xE5], [0x48, 0x83, 0xEC, 0x20], [0x48, 0x89, 0x7D, 0xF8], [0x8B, 0x45, 0xFC],
        [0x89, 0x45, 0xF4], [0x48, 0x8B, 0x45, 0xF8], [0x83, 0xC0, 0x01], [0x39, 0xC2], [0x7E, 0x0A], [0x75, 0x05],
        [0xE8, 0x00, 0x00, 0x00, 0x00], [0xC9], [0xC3], [0x31, 0xC0], [0x0F, 0x1F, 0x44, 0x00, 0x00],
        [0x48, 0x8D, 0x3D, 0x00, 0x00, 0x00, 0x00], [0xB8, 0xFF, 0xFF, 0xFF, 0xFF], [0x85, 0xC0], [0x74, 0x07],
    ]

    static func object(for source: [UInt8], rng: inout SeededRandom) -> [UInt8] {
        var out: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]
        out.reserveCapacity(64 + source.count * 2)
        out += [UInt8](repeating: 0, count: 8)
        out.appendLE16(1)  // ET_REL
        out.appendLE16(0x3E)  // x86-64
        out.appendLE32(1)
        out += [UInt8](repeating: 0, count: 64 - out.count)
        // About one instruction pattern per 3 source bytes, with displacements varied.
        var random = rng.next()
        var i = 0
        while i < source.count {
            let p = patterns[Int(source[i] &+ UInt8(truncatingIfNeeded: i / 7)) % patterns.count]
            out.append(contentsOf: p)
            if p.count >= 4 {
                if random & 1 == 1 { out[out.count - 1] = UInt8(truncatingIfNeeded: random >> 8) }
                random = random >> 1 | random << 63
                if i % 64 == 0 { random ^= rng.next() }
            }
            i += 3
        }
        while out.count % 16 != 0 { out.append(0x90) }
        // .strtab: identifiers from the source.
        out.append(0)
        var start = -1
        for (k, b) in source.enumerated() {
            let letter = (b >= 0x61 && b <= 0x7A) || b == 0x5F || (b >= 0x41 && b <= 0x5A)
            if letter {
                if start < 0 { start = k }
            } else if start >= 0 {
                if k - start > 3 { out.append(contentsOf: source[start..<k]); out.append(0) }
                start = -1
            }
        }
        return out
    }

    static func link(_ objects: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]
        out += [UInt8](repeating: 0, count: 8)
        out.appendLE16(3)  // ET_DYN
        out.appendLE16(0x3E)
        out.appendLE32(1)
        out += [UInt8](repeating: 0, count: 4096 - out.count)
        for o in objects { out += o.dropFirst(64) }
        while out.count % 4096 != 0 { out.append(0) }
        return out
    }
}
