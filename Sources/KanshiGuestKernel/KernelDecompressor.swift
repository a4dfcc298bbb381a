import CLZ4
import CLZMA
import CZlib
import CZstd

/// Decompresses a bzImage payload. The kernel's build appends the
/// uncompressed size (LE32) after the compressed stream; each decoder stops at
/// the end of its stream and never reads that trailer as data.
public enum KernelDecompressor {
    /// Largest output accepted (a vmlinux is tens of MiB; garbage may claim more).
    static let maxOutput = 1 << 31

    /// Decompresses `payload` as `format`; `fileOffset` (where the payload
    /// starts in its file) is only for error messages.
    public static func decompress(_ payload: ArraySlice<UInt8>, as format: KernelCompression, fileOffset: Int = 0) throws(GuestKernelError) -> [UInt8] {
        let input = Array(payload)
        // The size trailer is a hint for the first allocation only.
        let trailer = input.count >= 4 ? Int(input.u32(input.count - 4) ?? 0) : 0
        // (plus one LZ4 block, which the LZ4 decoder reserves before each block).
        let hint = Swift.max(1 << 20, Swift.min(trailer, input.count * 16, maxOutput)) + lz4LegacyBlock
        var out = Output(capacity: hint)
        let result: Result<Void, GuestKernelError>
        switch format {
        case .lz4Legacy: result = lz4Legacy(input, &out, fileOffset)
        case .gzip: result = gzip(input, &out, fileOffset)
        case .zstd: result = zstd(input, &out, fileOffset)
        case .xz: result = xz(input, &out, fileOffset)
        }
        try result.get()
        return out.finish()
    }

    /// A growable output buffer that decoders write into through raw pointers.
    struct Output {
        var bytes: [UInt8]
        var length = 0
        init(capacity: Int) { bytes = [UInt8](repeating: 0, count: capacity) }

        /// Makes room for at least `n` more bytes; false past `maxOutput`.
        mutating func reserve(_ n: Int) -> Bool {
            guard length + n <= KernelDecompressor.maxOutput else { return false }
            if length + n > bytes.count {
                // A zeroed array appended is a memset and a memcpy, even unoptimized.
                bytes.append(contentsOf: [UInt8](repeating: 0, count: Swift.max(n, bytes.count)))
            }
            return true
        }

        mutating func finish() -> [UInt8] {
            bytes.removeSubrange(length...)
            return bytes
        }
    }

    static let lz4LegacyMagic: UInt32 = 0x184C_2102
    /// LZ4 legacy blocks decompress to at most 8 MiB.
    static let lz4LegacyBlock = 8 << 20

    static func lz4Legacy(_ input: [UInt8], _ out: inout Output, _ base: Int) -> Result<Void, GuestKernelError> {
        func fail(_ at: Int, _ why: String) -> Result<Void, GuestKernelError> {
            .failure(.decompressionFailed(format: "LZ4 legacy", payloadOffset: base + at, detail: why))
        }
        guard input.u32(0) == lz4LegacyMagic else { return fail(0, "no LZ4 legacy magic") }
        var pos = 4
        var blocks = 0
        while pos < input.count {
            let remaining = input.count - pos
            // The last 4 bytes are the kernel's size trailer, not a block.
            if remaining <= 4 { break }
            guard let size32 = input.u32(pos) else { return fail(pos, "truncated block header") }
            if size32 == lz4LegacyMagic { pos += 4; continue }  // a concatenated frame
            let size = Int(size32)
            guard size > 0, size <= remaining - 4, size <= Int(Int32.max) else {
                return fail(pos, "block of \(size) bytes but \(remaining - 4) remain (truncated payload?)")
            }
            guard out.reserve(lz4LegacyBlock) else { return fail(pos, "output exceeds \(maxOutput) bytes") }
            let at = out.length
            // SAFETY: the source range pos+4..<pos+4+size lies in `input` (checked above);
            // the destination has lz4LegacyBlock bytes reserved from `at`, and LZ4_decompress_safe
            // never writes past the capacity it is given.
            let n = input.withUnsafeBufferPointer { src in
                out.bytes.withUnsafeMutableBufferPointer { dst in
                    src.baseAddress!.advanced(by: pos + 4).withMemoryRebound(to: CChar.self, capacity: size) { s in
                        dst.baseAddress!.advanced(by: at).withMemoryRebound(to: CChar.self, capacity: lz4LegacyBlock) { d in
                            LZ4_decompress_safe(s, d, Int32(size), Int32(lz4LegacyBlock))
                        }
                    }
                }
            }
            guard n >= 0 else { return fail(pos, "block \(blocks) is corrupt (LZ4 error \(n))") }
            out.length += Int(n)
            pos += 4 + size
            blocks += 1
        }
        return blocks > 0 ? .success(()) : fail(4, "no blocks")
    }

    static func gzip(_ input: [UInt8], _ out: inout Output, _ base: Int) -> Result<Void, GuestKernelError> {
        var stream = z_stream()
        guard czlib_inflate_init(&stream, 31) == Z_OK else {
            return .failure(.decompressionFailed(format: "gzip", payloadOffset: base, detail: "inflateInit2 failed"))
        }
        defer { inflateEnd(&stream) }
        var code = Z_OK
        // SAFETY: next_in/next_out point into `input` and `out.bytes`, which stay
        // alive and unmoved for each inflate call (out is grown only between calls).
        input.withUnsafeBufferPointer { src in
            stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress)
            stream.avail_in = UInt32(src.count)
            while code == Z_OK {
                guard out.reserve(1 << 20) else { code = Z_MEM_ERROR; return }
                let room = Swift.min(out.bytes.count - out.length, Int(UInt32.max))
                let at = out.length
                out.bytes.withUnsafeMutableBufferPointer { dst in
                    stream.next_out = dst.baseAddress!.advanced(by: at)
                    stream.avail_out = UInt32(room)
                    code = inflate(&stream, Z_NO_FLUSH)
                }
                out.length = at + room - Int(stream.avail_out)
                if code == Z_BUF_ERROR && stream.avail_in > 0 { code = Z_OK }
            }
        }
        guard code == Z_STREAM_END else {
            let consumed = input.count - Int(stream.avail_in)
            let message = stream.msg.map { String(cString: $0) } ?? "zlib code \(code)"
            return .failure(.decompressionFailed(format: "gzip", payloadOffset: base + consumed, detail: message))
        }
        return .success(())
    }

    static func zstd(_ input: [UInt8], _ out: inout Output, _ base: Int) -> Result<Void, GuestKernelError> {
        guard let dctx = ZSTD_createDCtx() else {
            return .failure(.decompressionFailed(format: "zstd", payloadOffset: base, detail: "ZSTD_createDCtx failed"))
        }
        defer { ZSTD_freeDCtx(dctx) }
        var consumed = 0
        var status = 1
        var failure: String?
        // SAFETY: the ZSTD buffers point into `input` and `out.bytes` only for the
        // duration of each ZSTD_decompressStream call; `out` grows between calls.
        input.withUnsafeBytes { src in
            while status != 0 {
                guard out.reserve(1 << 20) else { failure = "output exceeds \(maxOutput) bytes"; return }
                let at = out.length
                let room = out.bytes.count - at
                var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: consumed)
                out.bytes.withUnsafeMutableBytes { dst in
                    var outBuf = ZSTD_outBuffer(dst: dst.baseAddress!.advanced(by: at), size: room, pos: 0)
                    status = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                    out.length = at + outBuf.pos
                }
                if ZSTD_isError(status) != 0 { failure = String(cString: ZSTD_getErrorName(status)); return }
                // One frame only: stop at its end (the size trailer follows).
                if status != 0 && inBuf.pos == consumed && inBuf.pos == src.count && out.length == at {
                    failure = "the stream ends before its frame does (truncated payload)"; return
                }
                consumed = inBuf.pos
            }
        }
        if let failure {
            return .failure(.decompressionFailed(format: "zstd", payloadOffset: base + consumed, detail: failure))
        }
        return .success(())
    }

    static func xz(_ input: [UInt8], _ out: inout Output, _ base: Int) -> Result<Void, GuestKernelError> {
        var stream = clzma_stream_init()
        guard lzma_stream_decoder(&stream, UInt64.max, 0) == LZMA_OK else {
            return .failure(.decompressionFailed(format: "xz", payloadOffset: base, detail: "lzma_stream_decoder failed"))
        }
        defer { lzma_end(&stream) }
        var code = LZMA_OK
        // SAFETY: next_in/next_out point into `input` and `out.bytes`, alive and
        // unmoved for each lzma_code call; `out` grows only between calls.
        input.withUnsafeBufferPointer { src in
            stream.next_in = src.baseAddress
            stream.avail_in = src.count
            while code == LZMA_OK {
                guard out.reserve(1 << 20) else { code = LZMA_MEM_ERROR; return }
                let at = out.length
                let room = out.bytes.count - at
                out.bytes.withUnsafeMutableBufferPointer { dst in
                    stream.next_out = dst.baseAddress!.advanced(by: at)
                    stream.avail_out = room
                    // LZMA_FINISH: all input is given; a short stream is then an error.
                    code = lzma_code(&stream, LZMA_FINISH)
                }
                out.length = at + room - stream.avail_out
                if code == LZMA_BUF_ERROR && stream.avail_out > 0 { break }
                if code == LZMA_BUF_ERROR { code = LZMA_OK }
            }
        }
        guard code == LZMA_STREAM_END else {
            let consumed = input.count - stream.avail_in
            return .failure(.decompressionFailed(format: "xz", payloadOffset: base + consumed, detail: "liblzma code \(code.rawValue)"))
        }
        return .success(())
    }
}
