import KanshiSystem

/// A guest's kernel read from its image file alone: the vmlinux ELF, its
/// BTF (structure layouts) and its kallsyms (symbol addresses).
public struct GuestKernel: Sendable {
    /// The file it was read from.
    public let path: String
    /// The setup header, when the file was a bzImage (nil for a plain vmlinux).
    public let bzImage: BzImage?
    /// The uncompressed kernel.
    public let elf: ELFImage
    /// The release ("6.1.0-57-cloud-amd64"), from the setup header's version
    /// string or, for a plain vmlinux, from linux_banner; "" when neither is found.
    public let release: String

    /// Reads `path`: a bzImage (vmlinuz) whose payload is decompressed, or an
    /// uncompressed ELF vmlinux.
    public init(path: String) throws(GuestKernelError) {
        try self.init(bytes: try Self.readFile(path), path: path)
    }

    /// Reads a kernel image already in memory; `path` names it in errors.
    public init(bytes: [UInt8], path: String) throws(GuestKernelError) {
        self.path = path
        if BzImage.isBzImage(bytes) {
            let header = try BzImage(bytes: bytes, path: path)
            bzImage = header
            elf = try ELFImage(bytes: try header.decompress(bytes))
            release = header.release
        } else if ELFImage.isELF(bytes) {
            bzImage = nil
            elf = try ELFImage(bytes: bytes)
            release = ""
        } else {
            throw .notAKernelImage(path: path, firstBytes: bytes.prefix(from: 0, 16))
        }
    }

    /// The `.BTF` section, parsed (about 0.1 s for 95 k types in a release build).
    public func btf() throws(GuestKernelError) -> BTF {
        guard let section = elf.section(named: ".BTF") else { throw .noBTF }
        return try BTF(section: elf.contents(of: section))
    }

    /// The kallsyms tables, found and decoded.
    public func kallsyms() throws(GuestKernelError) -> Kallsyms {
        try Kallsyms(elf: elf)
    }

    /// The release from `linux_banner` ("Linux version 6.1.0-57-cloud-amd64 ..."), if the symbol is known.
    public func bannerRelease(_ symbols: Kallsyms) -> String? {
        guard let address = symbols.address(of: "linux_banner"),
              let offset = elf.fileOffset(ofVirtualAddress: address),
              let banner = elf.bytes.cString(offset, limit: 512),
              banner.hasPrefix("Linux version ")
        else { return nil }
        return String(banner.dropFirst("Linux version ".count).prefix { $0 != " " })
    }

    static func readFile(_ path: String) throws(GuestKernelError) -> [UInt8] {
        do {
            let file = try SystemFile(path: path, mode: .readOnly)
            let size = Int(try file.size())
            var bytes = [UInt8](repeating: 0, count: size)
            var done = 0
            while done < size {
                // SAFETY: the buffer covers done..<size of `bytes`, which outlives the call.
                let n = try bytes.withUnsafeMutableBytes { raw in
                    try file.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[done...]), at: UInt64(done))
                }
                if n == 0 { break }
                done += n
            }
            if done < size { bytes.removeSubrange(done...) }
            return bytes
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
    }
}
