/// How a bzImage's payload is compressed, told by its first bytes.
public enum KernelCompression: String, Sendable, Codable, CaseIterable {
    /// LZ4 legacy frame (magic 02 21 4c 18); Debian's 6.1 kernels use it.
    case lz4Legacy = "lz4"
    case gzip
    case zstd
    case xz

    /// The compression whose magic starts `bytes`, or nil.
    public static func detect(_ bytes: ArraySlice<UInt8>) -> KernelCompression? {
        let head = Array(bytes.prefix(6))
        if head.starts(with: [0x02, 0x21, 0x4c, 0x18]) { return .lz4Legacy }
        if head.starts(with: [0x1f, 0x8b]) { return .gzip }
        if head.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) { return .zstd }
        if head.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) { return .xz }
        return nil
    }
}

/// The x86 boot protocol's setup header of a bzImage (`vmlinuz`): where the
/// compressed kernel is and which release it is. See the kernel's
/// Documentation/arch/x86/boot.rst.
public struct BzImage: Sendable {
    /// Setup sectors (512 bytes each) after the boot sector; 0 means 4.
    public let setupSectors: Int
    /// File offset of the protected-mode code, (setup_sects + 1) * 512.
    public let protectedModeOffset: Int
    /// File offset of the compressed payload.
    public let payloadOffset: Int
    /// Length of the compressed payload in bytes.
    public let payloadLength: Int
    /// Boot protocol version, e.g. 0x020f.
    public let protocolVersion: UInt16
    /// The kernel version string from the setup code ("6.1.0-57-cloud-amd64 (debian-kernel@...) #1 SMP ...").
    public let versionString: String
    /// The payload's compression.
    public let compression: KernelCompression

    /// The release, i.e. the version string up to its first space ("6.1.0-57-cloud-amd64").
    public var release: String {
        String(versionString.prefix { $0 != " " })
    }

    /// True when `bytes` carries the "HdrS" setup header signature.
    public static func isBzImage(_ bytes: [UInt8]) -> Bool {
        bytes.u32(0x202) == 0x5372_6448
    }

    /// Reads the setup header of the bzImage `bytes` (named `path` in errors).
    public init(bytes: [UInt8], path: String) throws(GuestKernelError) {
        guard Self.isBzImage(bytes) else {
            throw .notAKernelImage(path: path, firstBytes: bytes.prefix(from: 0, 16))
        }
        guard let sects = bytes.u8(0x1f1), let version = bytes.u16(0x206),
              let payloadOffset = bytes.u32(0x248), let payloadLength = bytes.u32(0x24c)
        else { throw .badSetupHeader(path: path, detail: "the file ends inside the header (\(bytes.count) bytes)") }
        guard version >= 0x0208 else {
            throw .badSetupHeader(path: path, detail: "boot protocol \(version >> 8).\(version & 0xff) predates payload_offset (2.08)")
        }
        setupSectors = sects == 0 ? 4 : Int(sects)
        protectedModeOffset = (setupSectors + 1) * 512
        protocolVersion = version
        self.payloadOffset = protectedModeOffset + Int(payloadOffset)
        self.payloadLength = Int(payloadLength)
        guard payloadLength >= 8, self.payloadOffset + self.payloadLength <= bytes.count else {
            throw .badSetupHeader(
                path: path,
                detail: "payload 0x\(String(self.payloadOffset, radix: 16)) + \(payloadLength) bytes lies outside the \(bytes.count)-byte file")
        }
        // kernel_version (0x20e) points at a string, 0x200 bytes into the file less one sector.
        if let pointer = bytes.u16(0x20e), pointer != 0, let text = bytes.cString(Int(pointer) + 0x200, limit: 512) {
            versionString = text
        } else {
            versionString = ""
        }
        let payload = bytes[self.payloadOffset..<self.payloadOffset + self.payloadLength]
        guard let compression = KernelCompression.detect(payload) else {
            throw .unknownCompression(path: path, payloadOffset: self.payloadOffset, magic: Array(payload.prefix(8)))
        }
        self.compression = compression
    }

    /// The compressed payload within `bytes` (the same bytes this header was read from).
    public func payload(in bytes: [UInt8]) -> ArraySlice<UInt8> {
        bytes[payloadOffset..<payloadOffset + payloadLength]
    }

    /// The uncompressed vmlinux: the payload through its decompressor.
    public func decompress(_ bytes: [UInt8]) throws(GuestKernelError) -> [UInt8] {
        try KernelDecompressor.decompress(payload(in: bytes), as: compression, fileOffset: payloadOffset)
    }
}
