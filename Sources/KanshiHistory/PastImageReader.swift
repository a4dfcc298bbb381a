import KanshiExt4

/// A past image as the ext4 reader's byte source: the file system as it was at that moment.
public struct PastImageReader: ImageReader {
    public let past: PastImage
    public var size: UInt64 { past.size }
    public init(past: PastImage) { self.past = past }
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try past.read(into: buffer, at: offset)
    }
}
