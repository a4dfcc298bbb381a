import CZlib

/// One-shot deflate/inflate and CRC-32 over zlib (Debian's zlib1g).
public enum Zlib {
    /// The framing around the deflate data.
    public enum Format: Sendable {
        /// RFC 1950 (PNG's IDAT).
        case zlib
        /// Bare RFC 1951 deflate (zip members).
        case raw
        /// RFC 1952 (gzip files).
        case gzip

        var windowBits: Int32 {
            switch self {
            case .zlib: 15
            case .raw: -15
            case .gzip: 31
            }
        }
    }

    /// CRC-32 (the zip/PNG/gzip one) of `bytes`, continuing from `crc`.
    public static func crc32(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBufferPointer { crc32(UnsafeRawBufferPointer($0), continuing: crc) }
    }

    public static func crc32(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        var c = UInt(crc)
        var done = 0
        while done < bytes.count {
            let n = min(bytes.count - done, 1 << 30)
            c = CZlib.crc32(c, base.assumingMemoryBound(to: UInt8.self) + done, UInt32(n))
            done += n
        }
        return UInt32(truncatingIfNeeded: c)
    }

    /// Compresses `input` in one call.
    public static func deflate(_ input: [UInt8], level: Int32 = 6, format: Format = .zlib) throws(WorkloadError) -> [UInt8] {
        var stream = z_stream()
        let r = czlib_deflate_init(&stream, level, format.windowBits)
        guard r == Z_OK else { throw .zlib(call: "deflateInit2", code: r) }
        defer { deflateEnd(&stream) }
        let bound = Int(deflateBound(&stream, UInt(input.count))) + 32
        var output = [UInt8](repeating: 0, count: bound)
        var input = input
        let code = input.withUnsafeMutableBufferPointer { inp in
            output.withUnsafeMutableBufferPointer { out in
                stream.next_in = inp.baseAddress
                stream.avail_in = UInt32(inp.count)
                stream.next_out = out.baseAddress
                stream.avail_out = UInt32(out.count)
                return CZlib.deflate(&stream, Z_FINISH)
            }
        }
        guard code == Z_STREAM_END else { throw .zlib(call: "deflate", code: code) }
        output.removeLast(output.count - Int(stream.total_out))
        return output
    }

    /// Decompresses a whole stream (for checks and tests); `format` .zlib also accepts gzip.
    public static func inflate(_ input: [UInt8], format: Format = .zlib) throws(WorkloadError) -> [UInt8] {
        var stream = z_stream()
        let bits: Int32 = format == .raw ? -15 : 47
        let r = czlib_inflate_init(&stream, bits)
        guard r == Z_OK else { throw .zlib(call: "inflateInit2", code: r) }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var input = input
        var code: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { inp in
            stream.next_in = inp.baseAddress
            stream.avail_in = UInt32(inp.count)
            while code == Z_OK {
                let produced = chunk.withUnsafeMutableBufferPointer { out -> Int in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    code = CZlib.inflate(&stream, Z_NO_FLUSH)
                    return out.count - Int(stream.avail_out)
                }
                output.append(contentsOf: chunk[0..<produced])
                if code == Z_BUF_ERROR && stream.avail_in > 0 { code = Z_OK }
            }
        }
        guard code == Z_STREAM_END else { throw .zlib(call: "inflate", code: code) }
        return output
    }
}
