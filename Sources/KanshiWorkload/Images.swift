/// Photo-like RGB pictures (smooth gradients, a few soft shapes and sensor
/// noise, so they compress about as well as photos do) and their encodings.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    /// Rows top to bottom, 3 bytes per pixel.
    public var pixels: [UInt8]

    /// A picture drawn from `rng`; `noise` is the amplitude of the grain (0-64).
    public init(width: Int, height: Int, noise: Int, rng: inout SeededRandom) {
        self.width = width
        self.height = height
        var px = [UInt8](repeating: 0, count: width * height * 3)
        // Per-channel plane a + b x + c y, plus blobs.
        var base: [Int] = [], dx: [Int] = [], dy: [Int] = []
        for _ in 0..<3 {
            base.append(rng.int(30...200))
            dx.append(rng.int(-120...120))
            dy.append(rng.int(-120...120))
        }
        struct Blob { var cx, cy, r2: Int; var tint: (Int, Int, Int) }
        var blobs: [Blob] = []
        for _ in 0..<rng.int(2...6) {
            let r = rng.int(max(2, min(width, height) / 10)...max(3, min(width, height) / 3))
            blobs.append(Blob(cx: rng.below(width), cy: rng.below(height), r2: r * r,
                              tint: (rng.int(-90...90), rng.int(-90...90), rng.int(-90...90))))
        }
        var state = rng.next() | 1
        let amp = max(0, min(64, noise))
        px.withUnsafeMutableBufferPointer { p in
            var i = 0
            for y in 0..<height {
                for x in 0..<width {
                    var add = (0, 0, 0)
                    for b in blobs {
                        let ddx = x - b.cx, ddy = y - b.cy
                        if ddx * ddx + ddy * ddy < b.r2 { add = b.tint; break }
                    }
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    let n = amp == 0 ? (0, 0, 0)
                        : (Int(state & 0xFF) % (2 * amp + 1) - amp, Int((state >> 8) & 0xFF) % (2 * amp + 1) - amp,
                           Int((state >> 16) & 0xFF) % (2 * amp + 1) - amp)
                    let fx = width > 1 ? x * 256 / width : 0, fy = height > 1 ? y * 256 / height : 0
                    let r = base[0] + (dx[0] * fx + dy[0] * fy) / 256 + add.0 + n.0
                    let g = base[1] + (dx[1] * fx + dy[1] * fy) / 256 + add.1 + n.1
                    let bl = base[2] + (dx[2] * fx + dy[2] * fy) / 256 + add.2 + n.2
                    p[i] = UInt8(clamping: r); p[i + 1] = UInt8(clamping: g); p[i + 2] = UInt8(clamping: bl)
                    i += 3
                }
            }
        }
        pixels = px
    }

    /// Dimensions near 4:3 whose raw RGB size is about `bytes`.
    public static func dimensions(rawBytes bytes: Int) -> (width: Int, height: Int) {
        let area = max(16, bytes / 3)
        let w = max(4, Int((Double(area) * 4 / 3).squareRoot()))
        return (w, max(3, area / w))
    }

    /// PNG: 8-bit truecolour, Sub/Up filters, zlib-compressed IDAT in 64 KiB chunks.
    public func png() throws(WorkloadError) -> [UInt8] {
        var raw: [UInt8] = []
        raw.reserveCapacity((width * 3 + 1) * height)
        let stride = width * 3
        pixels.withUnsafeBufferPointer { p in
            for y in 0..<height {
                let row = y * stride
                let filter: UInt8 = y == 0 || y % 2 == 0 ? 1 : 2
                raw.append(filter)
                for i in 0..<stride {
                    let left = i >= 3 ? p[row + i - 3] : 0
                    let up = y > 0 ? p[row - stride + i] : 0
                    raw.append(p[row + i] &- (filter == 1 ? left : up))
                }
            }
        }
        let compressed = try Zlib.deflate(raw, level: 6, format: .zlib)
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        func chunk(_ type: String, _ data: ArraySlice<UInt8>) {
            out.appendBE32(UInt32(data.count))
            let start = out.count
            out.append(ascii: type)
            out.append(contentsOf: data)
            out.appendBE32(Zlib.crc32(Array(out[start...])))
        }
        var ihdr: [UInt8] = []
        ihdr.appendBE32(UInt32(width))
        ihdr.appendBE32(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]
        chunk("IHDR", ihdr[...])
        var text: [UInt8] = []
        text.append(ascii: "Software")
        text.append(0)
        text.append(ascii: "Kanshi corpus")
        chunk("tEXt", text[...])
        var at = 0
        repeat {
            let end = min(compressed.count, at + 65536)
            chunk("IDAT", compressed[at..<end])
            at = end
        } while at < compressed.count
        chunk("IEND", [][...])
        return out
    }

    /// BMP: 24-bit BI_RGB, bottom-up rows padded to 4 bytes.
    public func bmp() -> [UInt8] {
        let rowBytes = (width * 3 + 3) & ~3
        let imageBytes = rowBytes * height
        var out: [UInt8] = [0x42, 0x4D]
        out.appendLE32(UInt32(54 + imageBytes))
        out.appendLE32(0)
        out.appendLE32(54)
        out.appendLE32(40)
        out.appendLE32(UInt32(width))
        out.appendLE32(UInt32(height))
        out.appendLE16(1)
        out.appendLE16(24)
        out.appendLE32(0)
        out.appendLE32(UInt32(imageBytes))
        out.appendLE32(2835)
        out.appendLE32(2835)
        out.appendLE32(0)
        out.appendLE32(0)
        out.reserveCapacity(54 + imageBytes)
        let pad = [UInt8](repeating: 0, count: rowBytes - width * 3)
        for y in stride(from: height - 1, through: 0, by: -1) {
            let row = y * width * 3
            for x in 0..<width {
                let i = row + x * 3
                out.append(pixels[i + 2]); out.append(pixels[i + 1]); out.append(pixels[i])
            }
            out += pad
        }
        return out
    }

    /// PPM (P6): a text header and raw RGB.
    public func ppm() -> [UInt8] {
        var out: [UInt8] = []
        out.append(ascii: "P6\n# Kanshi corpus\n\(width) \(height)\n255\n")
        return out + pixels
    }
}
