import KanshiCore
import KanshiSystem

/// Payload layout of `memoryPage` records: one page of a guest process, stored by the memory
/// sensor when it first saw it or when its content changed.
/// ```
///  0 4 guest pid (thread-group id)
///  4 4 page flags (bit 0 writable, 1 user, 2 executable, 3 accessed, 4 dirty)
///  8 8 virtual address
/// 16 8 guest-physical address
/// 24 4 size in bytes (4 KiB, 2 MiB or 1 GiB)
/// 28 4 normalized entropy of the data (Float32; 0 when gone)
/// 32 8 64-bit hash of the data (0 when gone)
/// 40 … the data (`size` bytes), unless the record's flags say the page is gone
/// ```
public enum MemoryRecords {
    public static let prefixLength = 40
    /// Record flag: the page is no longer mapped (or the process ended); no data follows.
    public static let flagGone: UInt8 = 1

    /// A decoded memory record.
    public struct Page {
        public var sequence: UInt64
        public var timeNs: UInt64
        public var pid: Int32
        public var flags: UInt32
        public var virtual: UInt64
        public var physical: UInt64
        public var size: UInt32
        public var entropy: Float
        public var hash: UInt64
        public var gone: Bool
        /// The page's bytes (empty when gone); valid while the record is.
        public var data: UnsafeRawBufferPointer
    }

    /// The fixed part of a record for a page (the data follows it as its own part).
    public static func prefix(pid: Int32, flags: UInt32, virtual: UInt64, physical: UInt64, size: UInt32,
                              entropy: Float, hash: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: prefixLength)
        w.append(UInt32(bitPattern: pid))
        w.append(flags)
        w.append(virtual)
        w.append(physical)
        w.append(size)
        w.append(entropy)
        w.append(hash)
        return w.bytes
    }

    /// The page a `memoryPage` record holds (nil for other kinds).
    public static func decode(_ r: JournalRecord) throws -> Page? {
        guard r.kind == .memoryPage else { return nil }
        let location = JournalLocation(segmentPath: JournalFormat.segmentName(r.segment), offset: r.offset, sequence: r.sequence)
        var b = ByteReader(r.payload)
        guard b.remaining >= prefixLength else {
            throw JournalError.corrupt(location: location, reason: "memory record payload is \(b.remaining) bytes, shorter than its \(prefixLength)-byte prefix")
        }
        let pid = Int32(bitPattern: b.u32()), flags = b.u32(), virtual = b.u64(), physical = b.u64(), size = b.u32()
        let entropy = b.f32(), hash = b.u64()
        let gone = r.flags & flagGone != 0
        let data = b.rest()
        guard gone ? data.isEmpty : data.count == Int(size) else {
            throw JournalError.corrupt(location: location, reason: "memory record says \(gone ? "a gone page" : "\(size) bytes") but carries \(data.count)")
        }
        return Page(sequence: r.sequence, timeNs: r.timeNs, pid: pid, flags: flags, virtual: virtual, physical: physical, size: size,
                    entropy: entropy, hash: hash, gone: gone, data: data)
    }
}

/// Writes a journal's memory records (the memory sensor's page time series) as CSV, and
/// optionally each stored page's bytes as a file.
///
/// `memory.csv` has a header line, then one row per record:
/// `seconds,nanoseconds,sequence,pid,virtual,physical,size,permissions,entropy,hash,state`
/// (addresses and hash in hex; state `stored` or `gone`). Page files are named
/// `<pid>-<virtual>-<sequence>.page`.
public enum MemoryExport {
    public struct Summary: Sendable, Equatable {
        public var rows = 0
        public var pages = 0
        public var bytes: UInt64 = 0
    }

    public static func export(journal: JournalReader, csv: String, pagesDirectory: String? = nil) throws -> Summary {
        if let pagesDirectory { try wrap { try FileSystem.createDirectory(pagesDirectory) } }
        let out = try CSVSink(path: csv)
        out.append("seconds,nanoseconds,sequence,pid,virtual,physical,size,permissions,entropy,hash,state\n")
        var summary = Summary()
        try journal.forEachRecord { r in
            guard let p = try MemoryRecords.decode(r) else { return }
            let perms = "r" + (p.flags & 1 != 0 ? "w" : "-") + (p.flags & 4 != 0 ? "x" : "-")
            out.append("\(p.timeNs / 1_000_000_000),\(p.timeNs % 1_000_000_000),\(p.sequence),\(p.pid),0x\(String(p.virtual, radix: 16)),"
                + "0x\(String(p.physical, radix: 16)),\(p.size),\(perms),\(p.entropy),\(String(p.hash, radix: 16)),\(p.gone ? "gone" : "stored")\n")
            summary.rows += 1
            if let pagesDirectory, !p.gone {
                let path = pagesDirectory + "/\(p.pid)-\(String(p.virtual, radix: 16))-\(p.sequence).page"
                let f = try wrap { try SystemFile(path: path, mode: [.readWrite, .create, .truncate]) }
                try wrap { try f.write(p.data, at: 0) }
                summary.pages += 1
                summary.bytes += UInt64(p.data.count)
            }
            try out.flushIfLarge()
        }
        try out.close()
        return summary
    }
}
