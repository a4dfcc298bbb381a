/// A zip archive written member by member to a sink (no zip64: members and
/// the archive stay under 4 GiB). Members are deflated unless that would not
/// make them smaller; timestamps are fixed so output is reproducible.
public struct ZipWriter {
    private var sink: (_ bytes: [UInt8]) throws(WorkloadError) -> Void
    private var central: [UInt8] = []
    private var offset: UInt32 = 0
    private var count: UInt16 = 0
    private let dosTime: UInt16
    private let dosDate: UInt16
    /// Bytes given to `add` so far.
    public private(set) var uncompressedBytes: UInt64 = 0

    /// `year`..`second` become the members' DOS timestamp.
    public init(year: Int = 2024, month: Int = 3, day: Int = 14, hour: Int = 9, minute: Int = 26, second: Int = 52,
                sink: @escaping (_ bytes: [UInt8]) throws(WorkloadError) -> Void) {
        self.sink = sink
        dosTime = UInt16(hour << 11 | minute << 5 | second / 2)
        dosDate = UInt16((year - 1980) << 9 | month << 5 | day)
    }

    /// Appends one file member.
    public mutating func add(name: String, data: [UInt8], level: Int32 = 6) throws(WorkloadError) {
        let crc = Zlib.crc32(data)
        var body = data
        var method: UInt16 = 0
        if data.count > 64 {
            let packed = try Zlib.deflate(data, level: level, format: .raw)
            if packed.count < data.count { body = packed; method = 8 }
        }
        let nameBytes = Array(name.utf8)
        // No zip64: refuse what the 32-bit sizes and offsets and 16-bit count cannot hold.
        let end = UInt64(offset) + 30 + UInt64(nameBytes.count) + UInt64(body.count)
        guard data.count <= UInt32.max, end + UInt64(central.count) + 46 + UInt64(nameBytes.count) + 22 <= UInt32.max,
              count < UInt16.max, nameBytes.count <= UInt16.max
        else { throw .badOption("the zip archive would pass 4 GiB or 65535 members (zip64 is not written); use --max-files") }
        var local: [UInt8] = []
        local.appendLE32(0x0403_4B50)
        local.appendLE16(20)
        local.appendLE16(0x0800)  // names are UTF-8
        local.appendLE16(method)
        local.appendLE16(dosTime)
        local.appendLE16(dosDate)
        local.appendLE32(crc)
        local.appendLE32(UInt32(body.count))
        local.appendLE32(UInt32(data.count))
        local.appendLE16(UInt16(nameBytes.count))
        local.appendLE16(0)
        local.append(contentsOf: nameBytes)

        central.appendLE32(0x0201_4B50)
        central.appendLE16(0x031E)  // made by: Unix, zip 3.0
        central.appendLE16(20)
        central.appendLE16(0x0800)
        central.appendLE16(method)
        central.appendLE16(dosTime)
        central.appendLE16(dosDate)
        central.appendLE32(crc)
        central.appendLE32(UInt32(body.count))
        central.appendLE32(UInt32(data.count))
        central.appendLE16(UInt16(nameBytes.count))
        central.appendLE16(0)  // extra
        central.appendLE16(0)  // comment
        central.appendLE16(0)  // disk
        central.appendLE16(0)  // internal attributes
        central.appendLE32(UInt32(0o100644) << 16)
        central.appendLE32(offset)
        central.append(contentsOf: nameBytes)

        try sink(local)
        try sink(body)
        offset += UInt32(local.count + body.count)
        count += 1
        uncompressedBytes += UInt64(data.count)
    }

    /// Writes the central directory and its end record.
    public mutating func finish() throws(WorkloadError) {
        var end: [UInt8] = []
        end.appendLE32(0x0605_4B50)
        end.appendLE16(0)
        end.appendLE16(0)
        end.appendLE16(count)
        end.appendLE16(count)
        end.appendLE32(UInt32(central.count))
        end.appendLE32(offset)
        end.appendLE16(0)
        try sink(central)
        try sink(end)
    }

    /// A whole archive in memory.
    public static func archive(_ members: [(name: String, data: [UInt8])]) throws(WorkloadError) -> [UInt8] {
        final class Box { var bytes: [UInt8] = [] }
        let box = Box()
        var w = ZipWriter { (b: [UInt8]) throws(WorkloadError) in box.bytes += b }
        for m in members { try w.add(name: m.name, data: m.data) }
        try w.finish()
        return box.bytes
    }
}

/// POSIX ustar archives (what `tar` writes), in memory.
public enum Tar {
    public static func archive(_ members: [(name: String, data: [UInt8])], mtime: UInt64 = 1_710_408_412) -> [UInt8] {
        var out: [UInt8] = []
        for m in members {
            var h = [UInt8](repeating: 0, count: 512)
            func put(_ s: String, _ at: Int, _ width: Int) {
                for (i, b) in s.utf8.prefix(width).enumerated() { h[at + i] = b }
            }
            func octal(_ v: UInt64, _ at: Int, _ width: Int) {
                let digits = String(v, radix: 8)
                put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, at, width - 1)
            }
            put(m.name, 0, 100)
            octal(0o644, 100, 8)
            octal(1000, 108, 8)
            octal(1000, 116, 8)
            octal(UInt64(m.data.count), 124, 12)
            octal(mtime, 136, 12)
            h[156] = UInt8(ascii: "0")
            put("ustar", 257, 6)
            put("00", 263, 2)
            put("user", 265, 32)
            put("user", 297, 32)
            for i in 148..<156 { h[i] = UInt8(ascii: " ") }
            let sum = h.reduce(0) { $0 + Int($1) }
            let digits = String(sum, radix: 8)
            put(String(repeating: "0", count: max(0, 6 - digits.count)) + digits, 148, 6)
            h[154] = 0
            h[155] = UInt8(ascii: " ")
            out += h
            out += m.data
            out += [UInt8](repeating: 0, count: (512 - m.data.count % 512) % 512)
        }
        out += [UInt8](repeating: 0, count: 1024)
        return out
    }
}
