import KanshiHistory

/// A read-only view of a disk as it was at a past moment, to serve over NBD
/// (`kanshi disk serve --at`): a VM or qemu-io looks at the past without a
/// restored copy. Nothing is journaled: the view has no journal of its own.
public final class PastDisk: BlockBackend {
    public let past: PastImage
    public var size: UInt64 { past.size }
    public var isReadOnly: Bool { true }

    public init(past: PastImage) { self.past = past }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, connection: UInt32) throws {
        try past.read(into: buffer, at: offset)
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool, connection: UInt32) throws {
        throw BlockError.readOnly
    }

    public func flush(connection: UInt32) throws {}
    public func sync() throws {}
    public func trim(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws { throw BlockError.readOnly }
    public func writeZeroes(offset: UInt64, length: UInt32, fua: Bool, connection: UInt32) throws { throw BlockError.readOnly }
    public func note(_ json: String) {}
}
