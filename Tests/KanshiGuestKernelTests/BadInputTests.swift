import Foundation
import KanshiGuestKernel
import Testing

/// Damaged, truncated and foreign files give the right GuestKernelError, never a trap.
struct BadInputTests {
    static func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "kanshi-gk-\(getpid())-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A minimal bzImage: setup header fields and `payload` after one setup sector.
    static func bzImage(payload: [UInt8], version: String = "9.9.9-test (x) #1") -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 1024)
        b[0x1f1] = 1                                      // setup_sects: code at (1+1)*512
        b.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        b[0x206] = 0x0f; b[0x207] = 0x02                  // protocol 2.15
        let versionAt = 0x300
        b[0x20e] = UInt8((versionAt - 0x200) & 0xff); b[0x20f] = UInt8((versionAt - 0x200) >> 8)
        b.replaceSubrange(versionAt..<versionAt + version.utf8.count, with: Array(version.utf8))
        let po = UInt32(0), pl = UInt32(payload.count)
        b.replaceSubrange(0x248..<0x24c, with: withUnsafeBytes(of: po.littleEndian, Array.init))
        b.replaceSubrange(0x24c..<0x250, with: withUnsafeBytes(of: pl.littleEndian, Array.init))
        return b + payload
    }

    @Test func emptyAndGarbage() throws {
        #expect(throws: GuestKernelError.notAKernelImage(path: "empty", firstBytes: [])) {
            try GuestKernel(bytes: [], path: "empty")
        }
        var rng = SystemRandomNumberGenerator()
        for size in [1, 100, 600, 4096, 100_000] {
            let garbage = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(throws: GuestKernelError.self) { try GuestKernel(bytes: garbage, path: "garbage") }
        }
        #expect(throws: GuestKernelError.self) { try GuestKernel(path: "/nonexistent/vmlinuz") }
        let message = GuestKernelError.notAKernelImage(path: "x", firstBytes: [0xde, 0xad]).description
        #expect(message.contains("de ad") && message.contains("HdrS"))
    }

    @Test func flippedMagics() throws {
        let good = Self.bzImage(payload: [0x02, 0x21, 0x4c, 0x18] + [UInt8](repeating: 0, count: 12))
        var noHdrS = good
        noHdrS[0x203] ^= 0x20
        #expect(throws: GuestKernelError.notAKernelImage(path: "k", firstBytes: Array(noHdrS.prefix(16)))) {
            try GuestKernel(bytes: noHdrS, path: "k")
        }
        var unknown = good
        unknown[1024] = 0x42; unknown[1025] = 0x5a; unknown[1026] = 0x68  // "BZh": bzip2
        #expect(throws: GuestKernelError.unknownCompression(path: "k", payloadOffset: 1024, magic: [0x42, 0x5a, 0x68, 0x18, 0, 0, 0, 0])) {
            try GuestKernel(bytes: unknown, path: "k")
        }
        #expect(GuestKernelError.unknownCompression(path: "k", payloadOffset: 1024, magic: [0x42, 0x5a]).description.contains("magic 42 5a"))
    }

    @Test func truncatedHeadersAndPayloads() throws {
        let payload = [0x02, 0x21, 0x4c, 0x18, 100, 0, 0, 0] + [UInt8](repeating: 0, count: 40)
        let image = Self.bzImage(payload: payload)
        #expect(throws: GuestKernelError.self) { try GuestKernel(bytes: Array(image.prefix(0x240)), path: "k") }
        #expect {
            try GuestKernel(bytes: Array(image.prefix(1030)), path: "k")
        } throws: { error in
            guard case GuestKernelError.badSetupHeader(_, let detail) = error else { return false }
            return detail.contains("outside")
        }
        // A block longer than what is left: named as truncation with its offset.
        #expect {
            try GuestKernel(bytes: image, path: "k")
        } throws: { error in
            guard case GuestKernelError.decompressionFailed(let format, let offset, let detail) = error else { return false }
            return format == "LZ4 legacy" && offset == 1028 && detail.contains("truncated")
        }
    }

    @Test func elfDamage() throws {
        var elf = [UInt8](repeating: 0, count: 64)
        elf[0] = 0x7f; elf[1] = 0x45; elf[2] = 0x4c; elf[3] = 0x46; elf[4] = 2; elf[5] = 1; elf[18] = 62
        elf[60] = 5; elf[58] = 64; elf[40] = 0x40  // 5 section headers at 0x40, past the end
        #expect {
            try GuestKernel(bytes: elf, path: "vmlinux")
        } throws: { error in
            guard case GuestKernelError.badELF(let detail) = error else { return false }
            return detail.contains("section headers")
        }
        elf[60] = 0
        let kernel = try GuestKernel(bytes: elf, path: "vmlinux")
        #expect(throws: GuestKernelError.noBTF) { try kernel.btf() }
        #expect(GuestKernelError.noBTF.description.contains("CONFIG_DEBUG_INFO_BTF"))
        #expect { try kernel.kallsyms() } throws: { error in
            guard case GuestKernelError.kallsymsNotFound = error else { return false }
            return true
        }
        var arm = elf
        arm[18] = 183
        #expect(throws: GuestKernelError.self) { try GuestKernel(bytes: arm, path: "vmlinux") }
    }

    /// A small ELF (one PT_LOAD, three sections) with random header fields: errors or a
    /// readable ELF, never a trap, and address lookups stay inside the file.
    @Test func elfHeaderFuzz() throws {
        var elf = [UInt8](repeating: 0, count: 512)
        func put(_ v: UInt64, _ at: Int, _ n: Int) { for i in 0..<n { elf[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
        elf.replaceSubrange(0..<4, with: [0x7f, 0x45, 0x4c, 0x46]); elf[4] = 2; elf[5] = 1; put(62, 18, 2)
        put(64, 32, 8); put(56, 54, 2); put(1, 56, 2)             // one program header at 64
        put(1, 64, 4); put(0, 72, 8); put(0xffff_ffff_8100_0000, 80, 8); put(512, 96, 8); put(512, 104, 8)
        put(128, 40, 8); put(64, 58, 2); put(3, 60, 2); put(2, 62, 2) // three section headers at 128, names in #2
        put(1, 192, 4); put(1, 196, 4); put(0xffff_ffff_8100_0000, 208, 8); put(320, 216, 8); put(16, 224, 8)
        put(7, 256, 4); put(3, 260, 4); put(336, 280, 8); put(16, 288, 8)
        elf.replaceSubrange(336..<352, with: Array("\0.BTF\0.shstrtab\0".utf8).prefix(16))
        let good = try ELFImage(bytes: elf)
        #expect(good.section(named: ".BTF")?.offset == 320)
        #expect(good.fileOffset(ofVirtualAddress: 0xffff_ffff_8100_0010) == 16)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            var mutated = elf
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                mutated[Int.random(in: 16..<300, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            guard let image = try? ELFImage(bytes: mutated) else { continue }
            for address: UInt64 in [0, 0xffff_ffff_8100_0000, 0xffff_ffff_8100_01ff, .max] {
                if let o = image.fileOffset(ofVirtualAddress: address) { #expect(o >= 0 && o < mutated.count) }
                _ = image.read(virtualAddress: address, count: 16)
            }
            _ = image.virtualAddress(ofFileOffset: 100)
            if let s = image.section(named: ".BTF") { _ = image.contents(of: s) }
        }
    }

    @Test func incompleteProfileNamesEverything() throws {
        let partial = GuestKernelProfile(release: "x", symbols: ["_text": 1], offsets: ["task_struct.pid": 2], sizes: [:])
        #expect {
            try partial.validate()
        } throws: { error in
            guard case GuestKernelError.profileIncomplete(let missing) = error else { return false }
            return missing.contains("symbol current_task") && missing.contains("offset task_struct.comm")
                && missing.contains("size qstr") && !missing.contains("symbol _text")
                && missing.count == GuestKernelProfile.requiredSymbols.count - 1 + GuestKernelProfile.requiredOffsets.count - 1
                    + GuestKernelProfile.requiredSizes.count
        }
        let path = try Self.write(Array("{\"release\": 1}".utf8), "profile.json")
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect { try GuestKernelProfile.load(from: path) } throws: { error in
            guard case GuestKernelError.profileFile(let p, _) = error else { return false }
            return p == path
        }
    }
}
