import KanshiBlock
import KanshiSystem

/// The one file the FUSE file system shows: a journaled disk, addressed by
/// byte, with the disk's fixed size.
///
/// The loop device sends whole, aligned sectors. Anyone else who opens the
/// file may read or write any byte range; such a request is widened to the
/// 512-byte sectors that hold it, so the journal keeps recording whole
/// sectors at their LBA, as `disk serve` does:
/// - an unaligned read reads (and journals) the enclosing sectors and hands
///   back the part asked for;
/// - an unaligned write reads the partial first and last sectors from the
///   image (not journaled: an internal read), lays the new bytes over them
///   and writes (and journals) the enclosing sectors. It holds a lock that
///   keeps every other write, trim and zeroing out meanwhile, so no
///   concurrent write to the same sectors is lost.
///
/// Thread-safe: FUSE calls it from several worker threads at once.
public final class DiskFile: Sendable {
    public let disk: JournaledDisk
    /// The connection number recorded in the journal for this file's requests.
    public let connection: UInt32
    private let lock = ReadWriteLock()

    public init(disk: JournaledDisk, connection: UInt32 = 1) {
        self.disk = disk
        self.connection = connection
    }

    public var size: UInt64 { disk.size }
    public var isReadOnly: Bool { disk.isReadOnly }

    /// Reads up to `buffer.count` bytes at `offset`; fewer at the end of the
    /// disk, none past it. Returns how many.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let n = Int(min(UInt64(buffer.count), size - offset))
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
        if offset % 512 == 0 && n % 512 == 0 {
            try disk.read(into: target, at: offset, connection: connection)
            return n
        }
        let start = offset & ~511
        let end = Self.roundUp(offset + UInt64(n))
        let whole = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - start), alignment: 4096)
        defer { whole.deallocate() }
        try disk.read(into: whole, at: start, connection: connection)
        let from = Int(offset - start)
        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: whole[from..<from + n]))
        return n
    }

    /// Writes `data` at `offset`; a write that runs past the end of the disk
    /// writes what fits and returns that count; one that starts at or past
    /// the end throws `MountError.noSpace`.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws -> Int {
        guard data.count > 0 else { return 0 }
        guard !isReadOnly else { throw BlockError.readOnly }
        guard offset < size else { throw MountError.noSpace }
        let n = Int(min(UInt64(data.count), size - offset))
        let source = UnsafeRawBufferPointer(rebasing: data[0..<n])
        if offset % 512 == 0 && n % 512 == 0 {
            try lock.withReadLock { try writeChunks(source, at: offset) }
            return n
        }
        try lock.withWriteLock {
            let start = offset & ~511
            let end = Self.roundUp(offset + UInt64(n))
            let whole = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(end - start), alignment: 4096)
            defer { whole.deallocate() }
            // The partial first and last sectors, as the image holds them now.
            try readImage(into: UnsafeMutableRawBufferPointer(rebasing: whole[0..<512]), at: start)
            if end - 512 > start {
                try readImage(into: UnsafeMutableRawBufferPointer(rebasing: whole[(whole.count - 512)...]), at: end - 512)
            }
            let from = Int(offset - start)
            UnsafeMutableRawBufferPointer(rebasing: whole[from..<from + n]).copyMemory(from: source)
            try writeChunks(UnsafeRawBufferPointer(whole), at: start)
        }
        return n
    }

    /// Records a flush and makes every completed write durable (fsync).
    public func sync() throws {
        try disk.flush(connection: connection)
    }

    /// Deallocates a range (trim); partial sectors at its edges are written
    /// with zeros instead. Clamped to the disk.
    public func punchHole(offset: UInt64, length: UInt64) throws {
        try zeroOut(offset: offset, length: length) { o, l in
            try disk.trim(offset: o, length: l, fua: false, connection: connection)
        }
    }

    /// Zeroes a range (write-zeroes); partial sectors at its edges are
    /// written with zeros. Clamped to the disk.
    public func zeroRange(offset: UInt64, length: UInt64) throws {
        try zeroOut(offset: offset, length: length) { o, l in
            try disk.writeZeroes(offset: o, length: l, fua: false, connection: connection)
        }
    }

    private func zeroOut(offset: UInt64, length: UInt64, whole: (UInt64, UInt32) throws -> Void) throws {
        guard !isReadOnly else { throw BlockError.readOnly }
        guard offset < size, length > 0 else { return }
        let end = min(size, offset &+ length < offset ? size : offset + length)
        let first = Self.roundUp(offset)
        let last = end & ~511
        guard first < last else {
            try writeZeros(from: offset, to: end)
            return
        }
        if offset < first { try writeZeros(from: offset, to: first) }
        try lock.withReadLock {
            var o = first
            while o < last {
                let l = min(last - o, 1 << 30)
                try whole(o, UInt32(l))
                o += l
            }
        }
        if last < end { try writeZeros(from: last, to: end) }
    }

    private func writeZeros(from: UInt64, to: UInt64) throws {
        let zeros = [UInt8](repeating: 0, count: Int(to - from))
        _ = try zeros.withUnsafeBytes { try write($0, at: from) }
    }

    /// Writes in pieces of at most 32 MiB (the journal's largest record).
    private func writeChunks(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < data.count {
            let n = min(data.count - done, 32 << 20)
            try disk.write(UnsafeRawBufferPointer(rebasing: data[done..<done + n]), at: offset + UInt64(done),
                           fua: false, connection: connection)
            done += n
        }
    }

    private func readImage(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let got: Int
        do { got = try disk.image.read(into: buffer, at: offset) } catch { throw BlockError.system(error) }
        if got < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[got...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    private static func roundUp(_ x: UInt64) -> UInt64 { (x + 511) & ~511 }
}
