/// A moment in a journal's history: a wall-clock time (every record stamped
/// at or before it counts) or a record sequence number (every record up to
/// and including it counts).
public enum TimePoint: Sendable, Equatable, CustomStringConvertible {
    case time(ns: UInt64)
    case sequence(UInt64)

    /// Integers at least this large are nanoseconds since the epoch (after
    /// 1970-01-12); smaller ones are record sequence numbers.
    static let smallestNs: UInt64 = 1_000_000_000_000_000

    /// Parses RFC 3339 (`2026-11-22T05:30:00.123456789Z`, `…+09:00`),
    /// nanoseconds since the epoch, `seq:N` / `#N`, or a plain integer below
    /// 10^15 (a sequence number).
    public init(parsing text: String) throws {
        let t = text.trimmingSpaces
        if t.hasPrefix("seq:") || t.hasPrefix("#") {
            let digits = t.hasPrefix("#") ? String(t.dropFirst()) : String(t.dropFirst(4))
            guard let n = UInt64(digits) else { throw HistoryError.badTime(text, reason: "the sequence number is not a whole number") }
            self = .sequence(n)
        } else if t.allSatisfy({ $0.isASCII && $0.isNumber }) && !t.isEmpty {
            guard let n = UInt64(t) else { throw HistoryError.badTime(text, reason: "the number is too large") }
            self = n >= Self.smallestNs ? .time(ns: n) : .sequence(n)
        } else {
            self = .time(ns: try RFC3339.parse(t, original: text))
        }
    }

    public func includes(_ v: BlockVersion) -> Bool {
        switch self {
        case .time(let ns): v.timeNs <= ns
        case .sequence(let s): v.sequence <= s
        }
    }

    public var description: String {
        switch self {
        case .time(let ns): RFC3339.format(ns)
        case .sequence(let s): "seq:\(s)"
        }
    }
}

/// RFC 3339 timestamps with nanoseconds, without Foundation's rounding.
public enum RFC3339 {
    static func parse(_ s: String, original: String) throws -> UInt64 {
        let b = Array(s.utf8)
        func num(_ from: Int, _ count: Int) throws -> Int {
            guard from + count <= b.count else { throw HistoryError.badTime(original, reason: "it ends early") }
            var v = 0
            for c in b[from..<from + count] {
                guard c >= 48 && c <= 57 else { throw HistoryError.badTime(original, reason: "expected a digit at position \(from + 1)") }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        func expect(_ i: Int, _ chars: String) throws {
            guard i < b.count, chars.utf8.contains(b[i]) else {
                throw HistoryError.badTime(original, reason: "expected \(chars.count == 1 ? "'\(chars)'" : "one of \(chars)") at position \(i + 1)")
            }
        }
        let year = try num(0, 4); try expect(4, "-")
        let month = try num(5, 2); try expect(7, "-")
        let day = try num(8, 2); try expect(10, "Tt ")
        let hour = try num(11, 2); try expect(13, ":")
        let minute = try num(14, 2); try expect(16, ":")
        let second = try num(17, 2)
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
            throw HistoryError.badTime(original, reason: "a field is out of range")
        }
        var i = 19
        var nanos = 0
        if i < b.count && b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count && b[i] >= 48 && b[i] <= 57 {
                if digits < 9 { nanos = nanos * 10 + Int(b[i] - 48) }
                digits += 1; i += 1
            }
            guard digits > 0 else { throw HistoryError.badTime(original, reason: "no digits after the decimal point") }
            for _ in digits..<max(digits, 9) { nanos *= 10 }
        }
        guard i < b.count else { throw HistoryError.badTime(original, reason: "the time zone is missing (add Z for UTC)") }
        var offsetSeconds = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else {
            try expect(i, "+-")
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            let oh = try num(i + 1, 2); try expect(i + 3, ":")
            let om = try num(i + 4, 2)
            offsetSeconds = sign * (oh * 3600 + om * 60)
            i += 6
        }
        guard i == b.count else { throw HistoryError.badTime(original, reason: "unexpected text after the time zone") }
        let days = daysFromCivil(year, month, day)
        let seconds = days * 86400 + hour * 3600 + minute * 60 + second - offsetSeconds
        guard seconds >= 0 else { throw HistoryError.badTime(original, reason: "it is before 1970") }
        return UInt64(seconds) * 1_000_000_000 + UInt64(nanos)
    }

    /// `2026-11-22T05:30:00.123456789Z`.
    public static func format(_ ns: UInt64) -> String {
        let seconds = Int(ns / 1_000_000_000)
        let nanos = Int(ns % 1_000_000_000)
        let (y, m, d) = civilFromDays(seconds / 86400)
        let rem = seconds % 86400
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var frac = String(nanos)
        frac = String(repeating: "0", count: 9 - frac.count) + frac
        return "\(y)-\(two(m))-\(two(d))T\(two(rem / 3600)):\(two(rem / 60 % 60)):\(two(rem % 60)).\(frac)Z"
    }

    // Howard Hinnant's civil-calendar algorithms.
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
