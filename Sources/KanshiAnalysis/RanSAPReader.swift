import Foundation

/// Errors reading recordings, each naming the file and line.
public enum AnalysisError: Error, CustomStringConvertible, Sendable {
    case missingFile(String)
    case malformed(file: String, line: Int, reason: String)
    case unknownFamily(run: String, family: String)
    case badLabels(file: String, line: Int, reason: String)
    case noRuns(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .missingFile(let f): "\(f): no such file"
        case .malformed(let f, let l, let why): "\(f):\(l): \(why)"
        case .unknownFamily(let run, let fam):
            "\(run): unknown family '\(fam)'; give its label in a --labels file (lines: <family or run path>,ransomware|benign)"
        case .badLabels(let f, let l, let why): "\(f):\(l): \(why)"
        case .noRuns(let d): "\(d): no recordings found (directories holding ata_read.csv / ata_write.csv, or Kanshi journals)"
        case .invalid(let why): why
        }
    }
}

/// Reads RanSAP's `ata_read.csv` / `ata_write.csv` (no header;
/// `sec,ns,lba,size[,entropy1,entropy2]`) with a hand-written parser: the
/// files run to millions of lines.
public enum RanSAPReader {
    public static func read(runDirectory dir: String) throws -> BlockTrace {
        let readPath = dir + "/ata_read.csv", writePath = dir + "/ata_write.csv"
        let fm = FileManager.default
        guard fm.fileExists(atPath: readPath) || fm.fileExists(atPath: writePath) else {
            throw AnalysisError.missingFile(writePath)
        }
        guard fm.fileExists(atPath: writePath) else { throw AnalysisError.missingFile(writePath) }
        let reads = fm.fileExists(atPath: readPath) ? try parse(path: readPath, isWrite: false) : []
        let writes = try parse(path: writePath, isWrite: true)
        return BlockTrace(reads: reads, writes: writes)
    }

    /// Parses one CSV file.
    public static func parse(path: String, isWrite: Bool) throws -> [Access] {
        guard let data = FileManager.default.contents(atPath: path) else { throw AnalysisError.missingFile(path) }
        return try data.withUnsafeBytes { try parse(bytes: $0, name: path, isWrite: isWrite) }
    }

    public static func parse(bytes: UnsafeRawBufferPointer, name: String, isWrite: Bool) throws -> [Access] {
        var out: [Access] = []
        out.reserveCapacity(bytes.count / (isWrite ? 70 : 32))
        let p = bytes.bindMemory(to: UInt8.self)
        let n = p.count
        var i = 0
        var line = 0
        let comma = UInt8(ascii: ","), nl = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        while i < n {
            line += 1
            let start = i
            var end = i
            while end < n && p[end] != nl { end += 1 }
            i = end + 1
            var e = end
            if e > start && p[e - 1] == cr { e -= 1 }
            if e == start { continue }  // blank line
            // Split on commas, at most 6 fields.
            var fields: [(Int, Int)] = []
            fields.reserveCapacity(6)
            var f = start
            for j in start..<e where p[j] == comma {
                fields.append((f, j))
                f = j + 1
            }
            fields.append((f, e))
            let want = isWrite ? 6 : 4
            guard fields.count == want || (isWrite && fields.count == 5) else {
                throw AnalysisError.malformed(file: name, line: line, reason: "expected \(want) comma-separated fields, found \(fields.count)")
            }
            func int(_ k: Int, _ what: String) throws -> UInt64 {
                let (a, b) = fields[k]
                guard b > a, b - a <= 19 else { throw AnalysisError.malformed(file: name, line: line, reason: "\(what) is not a number") }
                var v: UInt64 = 0
                for j in a..<b {
                    let d = p[j] &- 48
                    guard d < 10 else { throw AnalysisError.malformed(file: name, line: line, reason: "\(what) '\(String(decoding: UnsafeBufferPointer(rebasing: p[a..<b]), as: UTF8.self))' is not a whole number") }
                    v = v &* 10 &+ UInt64(d)
                }
                return v
            }
            let sec = try int(0, "seconds"), ns = try int(1, "nanoseconds"), lba = try int(2, "LBA"), size = try int(3, "size")
            guard size <= UInt64(UInt32.max) else { throw AnalysisError.malformed(file: name, line: line, reason: "size \(size) is too large") }
            var entropy: Float = 0
            if isWrite {
                let (a, b) = fields[4]
                guard let v = parseDecimal(p, a, b), v >= 0, v <= 1.0001 else {
                    throw AnalysisError.malformed(file: name, line: line, reason: "entropy '\(String(decoding: UnsafeBufferPointer(rebasing: p[a..<b]), as: UTF8.self))' is not a number in [0, 1]")
                }
                entropy = Float(v)
            }
            out.append(Access(timeNs: sec &* 1_000_000_000 &+ ns, lba: lba, size: UInt32(size), entropy: entropy))
        }
        return out
    }

    /// Parses `[-]digits[.digits][e[-]digits]`; nil if malformed.
    static func parseDecimal(_ p: UnsafeBufferPointer<UInt8>, _ a: Int, _ b: Int) -> Double? {
        guard b > a else { return nil }
        var j = a
        var neg = false
        if p[j] == UInt8(ascii: "-") { neg = true; j += 1 }
        var mant: UInt64 = 0
        var scale = 0
        var digits = 0
        var sawDigit = false
        while j < b, p[j] &- 48 < 10 {
            if digits < 18 { mant = mant * 10 + UInt64(p[j] - 48); digits += 1 } else { scale += 1 }
            sawDigit = true
            j += 1
        }
        if j < b && p[j] == UInt8(ascii: ".") {
            j += 1
            while j < b, p[j] &- 48 < 10 {
                if digits < 18 { mant = mant * 10 + UInt64(p[j] - 48); digits += 1; scale -= 1 }
                sawDigit = true
                j += 1
            }
        }
        guard sawDigit else { return nil }
        if j < b && (p[j] == UInt8(ascii: "e") || p[j] == UInt8(ascii: "E")) {
            j += 1
            var eneg = false
            if j < b && (p[j] == UInt8(ascii: "-") || p[j] == UInt8(ascii: "+")) { eneg = p[j] == UInt8(ascii: "-"); j += 1 }
            var ev = 0
            var any = false
            while j < b, p[j] &- 48 < 10 { ev = ev * 10 + Int(p[j] - 48); j += 1; any = true }
            guard any else { return nil }
            scale += eneg ? -ev : ev
        }
        guard j == b else { return nil }
        let v = Double(mant) * pow(10, Double(scale))
        return neg ? -v : v
    }
}
