import KanshiSystem

/// A source of image bytes addressed by byte offset: a raw image file, a
/// partition inside one, or a past view of a disk reconstructed elsewhere.
///
/// Implementations must be safe to call from several threads.
public protocol ImageReader: Sendable {
    /// Size of the image in bytes.
    var size: UInt64 { get }
    /// Fills all of `buffer` with the bytes at `offset`. The file-system
    /// reader only asks for ranges inside `0..<size`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
}

/// An `ImageReader` over a file (or block device) opened read-only.
public struct FileImageReader: ImageReader {
    public let file: SystemFile
    public let size: UInt64

    /// Opens `path` read-only and records its size.
    public init(path: String) throws(SystemError) {
        let f = try SystemFile(path: path, mode: .readOnly)
        self.file = f
        self.size = try f.size()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let n = try file.read(into: buffer, at: offset)
        if n < buffer.count {
            // The file shrank under us: report it as a short read.
            throw SystemError(call: "pread", subject: file.path, errno: 5 /* EIO */)
        }
    }
}

/// A window `offset..<offset+size` of another reader, for a file system that
/// lives in a partition of a whole-disk image.
public struct SliceImageReader: ImageReader {
    public let base: any ImageReader
    public let offset: UInt64
    public let size: UInt64

    public init(base: any ImageReader, offset: UInt64, size: UInt64) {
        self.base = base
        self.offset = offset
        self.size = base.size > offset ? min(size, base.size - offset) : 0
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try base.read(into: buffer, at: self.offset + offset)
    }
}

/// An `ImageReader` over bytes in memory (tests, small fixtures).
public struct MemoryImageReader: ImageReader {
    public let bytes: [UInt8]
    public var size: UInt64 { UInt64(bytes.count) }

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let start = Int(offset)
        bytes.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[start..<start + buffer.count]))
        }
    }
}
