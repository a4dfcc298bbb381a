/// What happened to a block device, in the units of the project's
/// conventions: time in ns since the Unix epoch, addresses in 512-byte
/// sectors (LBA), sizes in bytes.
public struct BlockEvent: Sendable, Equatable {
    public enum Operation: UInt8, Sendable, CaseIterable {
        case read = 1
        case write = 2
        case trim = 3
        case writeZeroes = 4
        case flush = 5
    }

    public var operation: Operation
    public var timeNs: UInt64
    /// First sector, in 512-byte units.
    public var lba: UInt64
    /// Length in bytes.
    public var length: UInt32
    /// Which client connection issued it (0 when not known).
    public var connection: UInt32
    /// Whether the request asked for forced unit access (durable before reply).
    public var fua: Bool
    /// Normalised entropy of each 4 KiB piece of written data (writes only).
    public var entropies: [Float]

    public init(operation: Operation, timeNs: UInt64, lba: UInt64, length: UInt32,
                connection: UInt32 = 0, fua: Bool = false, entropies: [Float] = []) {
        self.operation = operation
        self.timeNs = timeNs
        self.lba = lba
        self.length = length
        self.connection = connection
        self.fua = fua
        self.entropies = entropies
    }

    public static let sectorSize: UInt64 = 512

    /// The mean entropy of the written data in bits per byte (0-8), nil when none was measured.
    public var meanEntropyBits: Double? {
        entropies.isEmpty ? nil : Double(entropies.reduce(0, +)) / Double(entropies.count) * 8
    }
}
