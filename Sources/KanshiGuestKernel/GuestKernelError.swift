/// Everything that can go wrong reading a guest kernel image. Each message
/// says what was expected, where (file and byte offset), and what to do.
public enum GuestKernelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file could not be read (the system call's message).
    case unreadable(path: String, reason: String)
    /// The file is neither a bzImage (no "HdrS" at 0x202) nor an ELF vmlinux.
    case notAKernelImage(path: String, firstBytes: [UInt8])
    /// The setup header points outside the file or is inconsistent.
    case badSetupHeader(path: String, detail: String)
    /// The payload starts with bytes no supported decompressor knows.
    case unknownCompression(path: String, payloadOffset: Int, magic: [UInt8])
    /// A decompressor failed (name, where in the payload, the library's message).
    case decompressionFailed(format: String, payloadOffset: Int, detail: String)
    /// The (decompressed) image is not a well-formed ELF64 x86_64 file.
    case badELF(detail: String)
    /// The ELF has no `.BTF` section.
    case noBTF
    /// The `.BTF` section is malformed at `offset` (bytes into the section).
    case badBTF(offset: Int, detail: String)
    /// A structure or member named in a query is not in the BTF.
    case missingType(String)
    /// `member` (a dotted path) is not a member of `type`; `at` is the part that was not found.
    case missingMember(type: String, member: String, at: String)
    /// The kallsyms tables were not found in the image's data.
    case kallsymsNotFound(detail: String)
    /// The kallsyms tables were found but decode to nonsense at `offset` (file offset).
    case badKallsyms(offset: Int, detail: String)
    /// A profile lacks required symbols, offsets or sizes (all of them, named).
    case profileIncomplete(missing: [String])
    /// A saved profile could not be read or written.
    case profileFile(path: String, reason: String)
    /// The kernel's `linux_banner` ("Linux version ...") could not be read.
    case bannerNotFound(detail: String)
    /// A Volatility symbol table could not be written.
    case symbolTableFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read kernel image \(path): \(reason)"
        case .notAKernelImage(let path, let first):
            return "\(path) is not a bzImage (no \"HdrS\" at offset 0x202) nor an ELF vmlinux (first bytes \(hex(first))); give the guest's /boot/vmlinuz-* or an uncompressed vmlinux"
        case .badSetupHeader(let path, let detail):
            return "\(path): bad bzImage setup header: \(detail); the file may be truncated or not an x86 boot image"
        case .unknownCompression(let path, let offset, let magic):
            return "\(path): unknown kernel payload compression at file offset 0x\(String(offset, radix: 16)) (magic \(hex(magic))); supported: LZ4 legacy, gzip, zstd, xz — decompress it yourself (scripts/extract-vmlinux) and pass the vmlinux"
        case .decompressionFailed(let format, let offset, let detail):
            return "\(format) payload at file offset 0x\(String(offset, radix: 16)) does not decompress: \(detail); the image is truncated or damaged"
        case .badELF(let detail):
            return "the kernel is not a usable ELF64 x86_64 vmlinux: \(detail)"
        case .noBTF:
            return "the vmlinux has no .BTF section: the kernel was built without CONFIG_DEBUG_INFO_BTF; structure offsets need a BTF-enabled kernel (Debian's 5.x+ kernels have it) or a profile made elsewhere"
        case .badBTF(let offset, let detail):
            return "malformed .BTF section at byte 0x\(String(offset, radix: 16)) of the section: \(detail)"
        case .missingType(let name):
            return "the kernel's BTF has no struct or union named \"\(name)\"; check the name (e.g. task_struct) or the kernel version"
        case .missingMember(let type, let member, let at):
            return "struct \(type) has no member path \"\(member)\" (no \"\(at)\" there); the kernel's layout differs: check the member name for this version"
        case .kallsymsNotFound(let detail):
            return "kallsyms tables not found in the image (\(detail)); the kernel needs CONFIG_KALLSYMS (and CONFIG_KALLSYMS_ALL for data symbols)"
        case .badKallsyms(let offset, let detail):
            return "kallsyms tables at file offset 0x\(String(offset, radix: 16)) do not decode: \(detail)"
        case .profileIncomplete(let missing):
            return "the guest kernel profile lacks \(missing.count) required item(s): \(missing.joined(separator: ", ")); this kernel's layout or config differs from what the plugin supports"
        case .profileFile(let path, let reason):
            return "guest kernel profile \(path): \(reason)"
        case .bannerNotFound(let detail):
            return "the kernel's linux_banner was not found: \(detail); Volatility identifies a kernel by its banner, so no symbol table can be made"
        case .symbolTableFile(let path, let reason):
            return "Volatility symbol table \(path): \(reason)"
        }
    }
}

private func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return bytes.isEmpty
        ? "(none: empty)"
        : bytes.map { String([digits[Int($0 >> 4)], digits[Int($0 & 15)]]) }.joined(separator: " ")
}
