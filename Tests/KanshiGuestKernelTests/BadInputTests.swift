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
