import KanshiSystem

/// The RAM of a running QEMU guest, shared with Kanshi: a file under /dev/shm
/// that QEMU maps as the guest's memory (`memory-backend-file,share=on`), so
/// Kanshi reads guest-physical memory directly while the guest runs. Offset in
/// the file = guest-physical address (the pc machine keeps RAM in one piece
/// below its 3.5 GiB PCI hole; the legacy VGA/BIOS window is not RAM).
public final class GuestRAM: PhysicalMemory, @unchecked Sendable {
    // SAFETY: every stored property is immutable after init; the bytes behind
    // the mapping are the guest's, read without locks (a live read).
    /// The shared file.
    public let path: String
    /// Bytes of RAM the guest was given.
    public let size: UInt64
    public let ranges: [Range<UInt64>]
    let memory: MappedMemory
    let file: SystemFile
    /// The mapping can be written (the run that made the file; another process's view is read-only).
    public let writable: Bool

    /// The pc machine's legacy window (VGA memory, option and BIOS ROMs): in the backing
    /// file but not RAM the guest can see.
    public static let legacyWindow: Range<UInt64> = 0xA0000..<0x100000
    /// The pc machine splits RAM this large or larger around the 4 GiB hole; Kanshi shares one piece.
    public static let onePieceLimit: UInt64 = 3584 << 20
    /// The prefix of every shared RAM file's name.
    public static let namePrefix = "kanshi-ram-"

    /// Makes the file for a guest of `size` bytes under `directory` (reserved at once, so a
    /// full /dev/shm fails here and not with SIGBUS inside QEMU later).
    public init(creatingIn directory: String = "/dev/shm", size: UInt64) throws(MemoryError) {
        guard size > Self.legacyWindow.upperBound, size < Self.onePieceLimit, size % 4096 == 0 else {
            throw .badRAMSize(size)
        }
        let name = "\(Self.namePrefix)\(Host.processID)-\(UInt32.random(in: 0...UInt32.max))"
        path = directory + "/" + name
        self.size = size
        do {
            memory = try MappedMemory(path: path, size: Int(size), create: true)
            file = try SystemFile(path: path, mode: .readOnly)
            writable = true
        } catch {
            try? FileSystem.remove(path)
            throw .cannotShare(path: path, reason: "\(error)")
        }
        ranges = Self.ranges(size: size)
    }

    /// Opens the shared RAM of a guest that is running (made by another Kanshi process).
    public init(path: String) throws(MemoryError) {
        self.path = path
        do {
            memory = try MappedMemory(readOnlyPath: path)
            file = try SystemFile(path: path, mode: .readOnly)
            writable = false
        } catch {
            throw .cannotOpen(path: path, reason: "\(error)")
        }
        size = UInt64(memory.bytes.count)
        ranges = Self.ranges(size: size)
    }

    static func ranges(size: UInt64) -> [Range<UInt64>] {
        [0..<legacyWindow.lowerBound, legacyWindow.upperBound..<size]
    }

    /// QEMU arguments that make this file the guest's RAM (with `-m` of the same size).
    public var qemuArguments: [String] {
        ["-object", "memory-backend-file,id=kanshi-ram,size=\(size >> 20)M,mem-path=\(path),share=on",
         "-machine", "memory-backend=kanshi-ram"]
    }

    /// ORs `mask` into the 8 bytes at guest-physical `address` (aligned, in RAM) atomically and
    /// returns what they held before; nil when the mapping is read-only or the address is not RAM.
    public func setBits(_ mask: UInt64, at address: UInt64) -> UInt64? {
        guard writable, address % 8 == 0, Self.contains(ranges, address, 8), let base = memory.bytes.baseAddress else { return nil }
        return LibC.atomicOr(base + Int(address), mask)
    }

    public func bytes(at address: UInt64, count: Int) -> UnsafeRawBufferPointer? {
        guard count >= 0, Self.contains(ranges, address, count) else { return nil }
        return UnsafeRawBufferPointer(rebasing: memory.bytes[Int(address)..<Int(address) + count])
    }

    /// In the kernel, file to file, when the target is on the same file system (tmpfs); else
    /// written from the mapping.
    public func copy(_ range: Range<UInt64>, to target: SystemFile, at offset: UInt64) throws(SystemError) {
        let length = range.upperBound - range.lowerBound
        let done: UInt64
        do { done = try file.copy(to: target, from: range.lowerBound, at: offset, length: length) } catch {
            guard LibC.noInKernelCopy.contains(error.errno) else { throw error }
            return try copyThroughBuffer(range, to: target, at: offset)
        }
        if done != length { throw SystemError(call: "copy_file_range", subject: path, errno: LibC.truncated) }
    }

    /// Bytes per read and write when the kernel cannot copy file to file.
    static let copyChunk = 8 << 20

    /// Reads the file and writes the target, a chunk at a time (no page faults in Kanshi's mapping).
    func copyThroughBuffer(_ range: Range<UInt64>, to target: SystemFile, at offset: UInt64) throws(SystemError) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.copyChunk, alignment: 4096)
        defer { buffer.deallocate() }
        var at = range.lowerBound
        while at < range.upperBound {
            let want = Int(min(UInt64(Self.copyChunk), range.upperBound - at))
            let n = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: at)
            guard n > 0 else { throw SystemError(call: "read", subject: path, errno: LibC.truncated) }
            try target.write(UnsafeRawBufferPointer(rebasing: buffer[..<n]), at: offset + (at - range.lowerBound))
            at += UInt64(n)
        }
    }

    /// Removes the file's name (QEMU and Kanshi keep their mappings).
    public func removeFile() { try? FileSystem.remove(path) }

    static func contains(_ ranges: [Range<UInt64>], _ address: UInt64, _ count: Int) -> Bool {
        let (end, overflow) = address.addingReportingOverflow(UInt64(count))
        guard !overflow else { return false }
        return ranges.contains { $0.lowerBound <= address && end <= $0.upperBound }
    }
}
