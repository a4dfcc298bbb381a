/// Reads one line of a behaviour log (a flat JSON object, as `TraceEvent.appendJSON` writes it)
/// straight from its bytes: no dictionary, no boxed numbers. Anything it does not expect (nested
/// objects, a malformed line) gives nil, and the caller falls back to the general JSON reader,
/// which gives the same event or names what is wrong.
enum BehaviourLogParser {
    static func event(_ line: UnsafeRawBufferPointer) -> TraceEvent? {
        var p = Cursor(bytes: line)
        var e = TraceEvent(kind: .notice)
        var kind: TraceEvent.Kind?
        p.skipSpace()
        guard p.take(UInt8(ascii: "{")) else { return nil }
        p.skipSpace()
        if p.take(UInt8(ascii: "}")) { return nil }  // no "ev": the slow path says so
        while true {
            p.skipSpace()
            guard let key = p.rawString() else { return nil }
            p.skipSpace()
            guard p.take(UInt8(ascii: ":")) else { return nil }
            p.skipSpace()
            switch key {
            case "seq": guard let v = p.unsigned() else { return nil }; e.seq = v
            case "t": guard let v = p.unsigned() else { return nil }; e.time = v
            case "pid": guard let v = p.signed() else { return nil }; e.pid = Int32(truncatingIfNeeded: v)
            case "tid": guard let v = p.signed() else { return nil }; e.tid = Int32(truncatingIfNeeded: v)
            case "ev":
                guard let s = p.string(), let k = TraceEvent.Kind(rawValue: s) else { return nil }
                kind = k
            case "call": guard let s = p.string() else { return nil }; e.call = s
            case "fd": guard let v = p.signed() else { return nil }; e.fd = Int32(truncatingIfNeeded: v)
            case "fd2": guard let v = p.signed() else { return nil }; e.fd2 = Int32(truncatingIfNeeded: v)
            case "path": guard let s = p.string() else { return nil }; e.path = s
            case "path2": guard let s = p.string() else { return nil }; e.path2 = s
            case "bytes": guard let v = p.signed() else { return nil }; e.bytes = v
            case "ret": guard let v = p.signed() else { return nil }; e.ret = v
            case "argv": guard let a = p.strings() else { return nil }; e.argv = a
            case "addr": guard let s = p.string() else { return nil }; e.addr = s
            case "child": guard let v = p.signed() else { return nil }; e.child = Int32(truncatingIfNeeded: v)
            case "flags": guard let s = p.string() else { return nil }; e.flags = s
            case "managed": guard let b = p.bool() else { return nil }; e.managed = b
            case "blocked": guard let b = p.bool() else { return nil }; e.blocked = b
            case "reason": guard let s = p.string() else { return nil }; e.reason = s
            case "vm": guard let s = p.string() else { return nil }; e.vm = s
            case "entropy": guard let d = p.double() else { return nil }; e.entropy = d
            default: guard p.skipValue() else { return nil }
            }
            p.skipSpace()
            if p.take(UInt8(ascii: ",")) { continue }
            guard p.take(UInt8(ascii: "}")) else { return nil }
            break
        }
        p.skipSpace()
        guard p.atEnd, let kind else { return nil }
        e.kind = kind
        return e
    }

    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var i = 0

        var atEnd: Bool { i >= bytes.count }
        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipSpace() {
            while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0d || bytes[i] == 0x0a { i += 1 }
        }

        mutating func take(_ b: UInt8) -> Bool {
            guard i < bytes.count, bytes[i] == b else { return false }
            i += 1
            return true
        }

        /// A key: a string without escapes, compared as ASCII.
        mutating func rawString() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") { return nil }
                i += 1
            }
            guard i < bytes.count else { return nil }
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
            i += 1
            return s
        }

        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = i
            // The common case: no escapes, valid UTF-8.
            while i < bytes.count, bytes[i] != UInt8(ascii: "\""), bytes[i] != UInt8(ascii: "\\"), bytes[i] >= 0x20 { i += 1 }
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<i])
                i += 1
                return String(validating: slice, as: UTF8.self)
            }
            guard bytes[i] == UInt8(ascii: "\\") else { return nil }  // a raw control character
            var out = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<i]))
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    return String(validating: out, as: UTF8.self)
                }
                if b < 0x20 { return nil }
                if b != UInt8(ascii: "\\") { out.append(b); i += 1; continue }
                i += 1
                guard let c = peek else { return nil }
                i += 1
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u"):
                    guard var scalar = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")), let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        return nil
                    }
                    guard let u = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    return nil
                }
            }
            return nil
        }

        mutating func hex4() -> UInt32? {
            guard i + 4 <= bytes.count else { return nil }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[i]
                let d: UInt32
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(b - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(b - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(b - UInt8(ascii: "A") + 10)
                default: return nil
                }
                v = v << 4 | d
                i += 1
            }
            return v
        }

        /// A whole number (no fraction or exponent).
        mutating func signed() -> Int64? {
            let negative = take(UInt8(ascii: "-"))
            guard let m = unsignedDigits(), m <= UInt64(Int64.max) + (negative ? 1 : 0) else { return nil }
            if let b = peek, b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { return nil }
            return negative ? (m == UInt64(Int64.max) + 1 ? Int64.min : -Int64(m)) : Int64(m)
        }

        mutating func unsigned() -> UInt64? {
            guard let m = unsignedDigits() else { return nil }
            if let b = peek, b == UInt8(ascii: ".") || b == UInt8(ascii: "e") || b == UInt8(ascii: "E") { return nil }
            return m
        }

        private mutating func unsignedDigits() -> UInt64? {
            let start = i
            var v: UInt64 = 0
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(bytes[i] - UInt8(ascii: "0")))
                if o1 || o2 { return nil }
                v = a
                i += 1
            }
            guard i > start, !(i - start > 1 && bytes[start] == UInt8(ascii: "0")) else { return nil }
            return v
        }

        /// A number with a fraction (the writer prints entropy as D.DDD).
        mutating func double() -> Double? {
            let start = i
            _ = take(UInt8(ascii: "-"))
            while i < bytes.count, (bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")) || bytes[i] == UInt8(ascii: ".")
                || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") || bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i > start else { return nil }
            return Double(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self))
        }

        mutating func bool() -> Bool? {
            if matchWord("true") { return true }
            if matchWord("false") { return false }
            return nil
        }

        private mutating func matchWord(_ w: StaticString) -> Bool {
            let n = w.utf8CodeUnitCount
            guard i + n <= bytes.count else { return false }
            for k in 0..<n where bytes[i + k] != w.utf8Start[k] { return false }
            i += n
            return true
        }

        mutating func strings() -> [String]? {
            guard take(UInt8(ascii: "[")) else { return nil }
            var out: [String] = []
            skipSpace()
            if take(UInt8(ascii: "]")) { return out }
            while true {
                skipSpace()
                guard let s = string() else { return nil }
                out.append(s)
                skipSpace()
                if take(UInt8(ascii: ",")) { continue }
                guard take(UInt8(ascii: "]")) else { return nil }
                return out
            }
        }

        /// Skips a value the event does not keep (numbers, strings, true/false/null, arrays of them).
        mutating func skipValue() -> Bool {
            guard let b = peek else { return false }
            switch b {
            case UInt8(ascii: "\""): return string() != nil
            case UInt8(ascii: "t"), UInt8(ascii: "f"): return bool() != nil
            case UInt8(ascii: "n"): return matchWord("null")
            case UInt8(ascii: "["):
                i += 1
                skipSpace()
                if take(UInt8(ascii: "]")) { return true }
                while true {
                    skipSpace()
                    guard skipValue() else { return false }
                    skipSpace()
                    if take(UInt8(ascii: ",")) { continue }
                    return take(UInt8(ascii: "]"))
                }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return double() != nil
            default: return false  // objects: the slow path
            }
        }
    }
}
