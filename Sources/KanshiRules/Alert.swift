import KanshiCore

/// A rule's output text: `%field` is the field of the last event, `%step.field` that of a
/// sequence step's event, `%count` and `%window` a count rule's figures.
struct OutputTemplate {
    enum Part {
        case text(String)
        case field(Getter)
        case stepField(step: Int, Getter)
        case count, window
    }
    var parts: [Part]

    static func standard(shape: String) -> OutputTemplate {
        // "%proc.name (pid %pid) %ev %path"
        var p: [Part] = [.field(Fields.all["proc.name"]!.getter), .text(" (pid "), .field(Fields.all["pid"]!.getter), .text(") "),
                         .field(Fields.all["ev"]!.getter), .text(" "), .field(Fields.all["path"]!.getter)]
        if shape == "count" { p += [.text(": "), .count, .text(" in "), .window] }
        return OutputTemplate(parts: p)
    }

    init(parts: [Part]) { self.parts = parts }

    init(_ template: String, at position: SourcePosition, steps: [String], isCount: Bool) throws {
        var parts: [Part] = []
        var literal = ""
        let chars = Array(template)
        var i = 0
        func isNameChar(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" || c == "." }
        while i < chars.count {
            guard chars[i] == "%" else { literal.append(chars[i]); i += 1; continue }
            if i + 1 < chars.count, chars[i + 1] == "%" { literal.append("%"); i += 2; continue }
            var j = i + 1
            while j < chars.count, isNameChar(chars[j]) { j += 1 }
            var name = String(chars[(i + 1)..<j])
            while name.hasSuffix(".") { name.removeLast(); j -= 1 }  // a sentence's full stop
            guard !name.isEmpty else { literal.append("%"); i += 1; continue }
            if !literal.isEmpty { parts.append(.text(literal)); literal = "" }
            if name == "count" || name == "window" {
                guard isCount else { throw RuleError(position, "output: %\(name) is for count rules") }
                parts.append(name == "count" ? .count : .window)
            } else if let f = Fields.all[name] {
                parts.append(.field(f.getter))
            } else if let dot = name.firstIndex(of: "."), let s = steps.firstIndex(of: String(name[..<dot])),
                      let f = Fields.all[String(name[name.index(after: dot)...])] {
                parts.append(.stepField(step: s, f.getter))
            } else {
                throw RuleError(position, "output: %\(name) is not a field\(steps.isEmpty ? "" : " or step.field") (kanshi rules fields lists the fields)")
            }
            i = j
        }
        if !literal.isEmpty { parts.append(.text(literal)) }
        self.parts = parts
    }

    /// `steps`: each step's event, where kept (every step the output names is).
    func render(last: RuleEvent, steps: [RuleEvent?], count: Int?, windowNs: UInt64?, world: RuleWorld) -> String {
        var out = ""
        for p in parts {
            switch p {
            case .text(let s): out += s
            case .field(let g): out += Fields.text(g, last, world) ?? "-"
            case .stepField(let i, let g): out += i < steps.count ? steps[i].flatMap { Fields.text(g, $0, world) } ?? "-" : "-"
            case .count: out += count.map(String.init) ?? "-"
            case .window: out += windowNs.map { Self.duration($0) } ?? "-"
            }
        }
        return out
    }

    static func duration(_ ns: UInt64) -> String {
        if ns % 3_600_000_000_000 == 0 { return "\(ns / 3_600_000_000_000)h" }
        if ns % 60_000_000_000 == 0 { return "\(ns / 60_000_000_000)m" }
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        return "\(ns / 1_000_000)ms"
    }
}

/// A rule that fired: what, how serious, about whom, and the events that show it.
public struct RuleAlert: Sendable, Equatable {
    public var rule: String
    public var severity: Severity
    public var tags: [String]
    /// The time of the event that completed the match (ns since the epoch).
    public var time: UInt64
    /// The rule's key fields and their values (pid, vm, proc.tree, path...).
    public var key: [String: String]
    public var output: String
    public var actions: [RuleAction]
    /// The matched events in order (their seq numbers or journal offsets).
    public var evidence: [Evidence]
    /// The process of the last event (behaviour events), for actions.
    public var pid: Int32?
    public var vm: String?
    /// A count rule's count.
    public var count: Int?

    /// One JSON object (a line of the alert log).
    public var json: String {
        var j = JSONLine()
        j.raw("{\"rule\":"); j.string(rule)
        j.raw(",\"severity\":"); j.string(severity.rawValue)
        j.raw(",\"time\":"); j.int(time)
        j.raw(",\"tags\":["); for (i, t) in tags.enumerated() { if i > 0 { j.raw(",") }; j.string(t) }; j.raw("]")
        j.raw(",\"key\":{")
        for (i, k) in key.keys.sorted().enumerated() { if i > 0 { j.raw(",") }; j.string(k); j.raw(":"); j.string(key[k]!) }
        j.raw("}")
        if let pid { j.raw(",\"pid\":"); j.int(Int64(pid)) }
        if let vm { j.raw(",\"vm\":"); j.string(vm) }
        if let count { j.raw(",\"count\":"); j.int(Int64(count)) }
        j.raw(",\"output\":"); j.string(output)
        j.raw(",\"actions\":["); for (i, a) in actions.enumerated() { if i > 0 { j.raw(",") }; j.string(a.rawValue) }; j.raw("]")
        j.raw(",\"evidence\":[")
        for (i, e) in evidence.enumerated() {
            if i > 0 { j.raw(",") }
            j.raw("{\"ev\":"); j.string(e.kind)
            if let s = e.seq { j.raw(",\"seq\":"); j.int(s) }
            if let g = e.segment { j.raw(",\"segment\":"); j.int(g) }
            if let o = e.offset { j.raw(",\"offset\":"); j.int(o) }
            j.raw(",\"t\":"); j.int(e.time); j.raw("}")
        }
        j.raw("]}")
        return j.text
    }
}

/// A JSON object built as text.
struct JSONLine {
    var text = ""
    mutating func raw(_ s: String) { text += s }
    mutating func string(_ s: String) { text += "\"" + s.jsonEscaped + "\"" }
    mutating func int<T: BinaryInteger>(_ v: T) { text += String(v) }
}
