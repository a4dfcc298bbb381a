import Foundation
import KanshiGuestKernel
import Testing

/// Each payload format against its CLI (gzip, zstd, xz, lz4 -l), with the
/// kernel's 4-byte size trailer appended as the kernel's build does.
struct DecompressionTests {
    static let sample: [UInt8] = {
        var out: [UInt8] = []
        var x: UInt32 = 12345
        for i in 0..<3_000_000 {  // compressible but not trivial (the real kernel covers many LZ4 blocks)
            x = x &* 1_103_515_245 &+ 12345
            out.append(i % 7 == 0 ? UInt8(truncatingIfNeeded: x >> 16) : UInt8(truncatingIfNeeded: i / 4096))
        }
        return out
    }()

    static func compress(_ tool: [String], _ input: [UInt8]) throws -> [UInt8] {
        let r = KernelFixture.run(tool, stdin: Data(input))
        try #require(r.status == 0, "\(tool.joined(separator: " ")): \(r.stderr)")
        let size = UInt32(input.count)
        return Array(r.stdout) + withUnsafeBytes(of: size.littleEndian, Array.init)
    }

    static let tools: [(KernelCompression, [String], String)] = [
        (.gzip, ["gzip", "-c", "-6"], "gzip"),
        (.zstd, ["zstd", "-q", "-c", "-3"], "zstd"),
        (.xz, ["xz", "-c", "-1", "--check=crc32"], "xz-utils"),
        (.lz4Legacy, ["lz4", "-l", "-c", "-1"], "lz4"),
    ]

    static let missingTools: String? = {
        let missing = tools.compactMap { KernelFixture.missingTool($0.1[0], package: $0.2) }
        return missing.isEmpty ? nil : missing.joined(separator: "; ")
    }()

    @Test(.enabled(if: missingTools == nil, "\(missingTools ?? "")"), arguments: tools.map(\.0))
    func roundTripThroughCLI(_ format: KernelCompression) throws {
        let tool = Self.tools.first { $0.0 == format }!.1
        let payload = try Self.compress(tool, Self.sample)
        #expect(KernelCompression.detect(payload[...]) == format)
        let image = BadInputTests.bzImage(payload: payload)
        let header = try BzImage(bytes: image, path: "synthetic")
        #expect(header.compression == format && header.release == "9.9.9-test")
        #expect(try header.decompress(image) == Self.sample)

        // Truncated streams fail with the format named; a flipped byte mid-stream never traps.
        #expect {
            try KernelDecompressor.decompress(payload[..<(payload.count / 2)], as: format)
        } throws: { error in
            guard case GuestKernelError.decompressionFailed = error else { return false }
            return true
        }
        var flipped = payload
        flipped[payload.count / 3] ^= 0x55
        _ = try? KernelDecompressor.decompress(flipped[...], as: format)
    }

    /// The real vmlinux repacked as gzip reads back to the same kernel.
    @Test(.enabled(if: KernelFixture.unavailable == nil, "\(KernelFixture.unavailable ?? "")"))
    func realKernelRepackedAsGzip() throws {
        let kernel = try KernelFixture.kernel.get()
        let payload = try Self.compress(["gzip", "-c", "-1"], kernel.elf.bytes)
        let repacked = try GuestKernel(bytes: BadInputTests.bzImage(payload: payload), path: "repacked")
        #expect(repacked.bzImage?.compression == .gzip)
        #expect(repacked.elf.bytes == kernel.elf.bytes)
    }

    /// Damage to the real image: each kind gets its own error.
    @Test(.enabled(if: KernelFixture.unavailable == nil, "\(KernelFixture.unavailable ?? "")"))
    func realKernelDamaged() throws {
        let kernel = try KernelFixture.kernel.get()  // fetches the kernel first on a fresh machine
        let file = Array(try Data(contentsOf: URL(fileURLWithPath: KernelFixture.vmlinuz)))
        let header = try #require(kernel.bzImage)
        // Cut in the payload: the setup header no longer fits the file.
        #expect { try GuestKernel(bytes: Array(file.prefix(header.payloadOffset + 1000)), path: "cut") } throws: { error in
            guard case GuestKernelError.badSetupHeader = error else { return false }
            return true
        }
        // A corrupt LZ4 block.
        var corrupt = file
        for i in stride(from: header.payloadOffset + 64, to: header.payloadOffset + 4096, by: 1) { corrupt[i] = 0xff }
        #expect { try GuestKernel(bytes: corrupt, path: "corrupt") } throws: { error in
            guard case GuestKernelError.decompressionFailed(let format, _, _) = error else { return false }
            return format == "LZ4 legacy"
        }
        // No .BTF: rename the section in the section-name table.
        var elf = kernel.elf.bytes
        let names = try #require(kernel.elf.sections.last { $0.name == ".shstrtab" })
        let region = elf[names.offset..<names.offset + names.size]
        let at = try #require(region.indices.first { elf[$0..<$0 + 5].elementsEqual(Array(".BTF\0".utf8)) })
        elf[at + 1] = UInt8(ascii: "X")
        let noBTF = try GuestKernel(bytes: elf, path: "vmlinux")
        #expect(throws: GuestKernelError.noBTF) { try noBTF.btf() }
        #expect(throws: GuestKernelError.noBTF) { try GuestKernelProfile(kernel: noBTF) }
        // No kallsyms: wipe the token index.
        var noSymbols = kernel.elf.bytes
        let tokens = try kernel.kallsyms().tables.tokenIndex
        noSymbols.replaceSubrange(tokens..<tokens + 512, with: repeatElement(0, count: 512))
        #expect { try GuestKernel(bytes: noSymbols, path: "vmlinux").kallsyms() } throws: { error in
            guard case GuestKernelError.kallsymsNotFound = error else { return false }
            return true
        }
    }
}
