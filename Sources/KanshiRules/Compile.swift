/// A compiled condition: the event, what the rules know, and the events bound by earlier
/// steps of a sequence (in step order).
typealias Predicate = (RuleEvent, RuleWorld, Bound) -> Bool

/// One step of an open sequence, bound: its evidence, and its event when something reads the
/// event's fields later (a later step's `$step.field`, the output's `%step.field`) or it is a
/// match (whose evidence is a list). Other steps keep no event: nothing is copied for them.
struct BoundStep {
    var event: RuleEvent?
    var evidence: Evidence

    init(_ e: RuleEvent, keepEvent: Bool) {
        event = keepEvent || e.source == .match ? e.kept() : nil
        evidence = e.asEvidence
    }

    /// What the step adds to an alert's evidence.
    var evidenceList: [Evidence] {
        if let event, event.source == .match { return event.evidence }
        return [evidence]
    }
}

/// The steps an open sequence has bound, as its conditions read them (no array made per look).
struct Bound {
    /// The sequence's state (nil outside sequences).
    let partial: UnsafePointer<Partial>?

    init() { partial = nil }
    init(_ p: UnsafePointer<Partial>) { partial = p }

    /// Step `i`'s event (kept for every step a condition refers to).
    subscript(i: Int) -> RuleEvent { (i == 0 ? partial!.pointee.first : partial!.pointee.rest[i - 1]).event! }
}

/// An open sequence: when its first step matched, and the steps bound so far.
struct Partial {
    var startNs: UInt64
    var first: BoundStep
    /// Steps after the first (none for a two-step sequence: no array allocated).
    var rest: [BoundStep] = []

    var count: Int { 1 + rest.count }
    var steps: [BoundStep] { [first] + rest }
}

/// A macro as written: its condition and where.
struct MacroSource {
    var source: ConditionSource
    var tree: Condition
}

/// Each macro's place in an event's memo: a macro several rules use is evaluated once per event.
final class MacroMemo {
    private(set) var slots: [String: Int] = [:]
    /// Macros past this many are evaluated each time.
    static let limit = 64

    func slot(_ name: String) -> Int? {
        if let s = slots[name] { return s }
        guard slots.count < Self.limit else { return nil }
        slots[name] = slots.count
        return slots[name]
    }
}

/// Turns condition trees into predicates, resolving lists, macros and `$step.field` references.
struct ConditionCompiler {
    var lists: [String: [String]]
    var macros: [String: MacroSource]
    let memo = MacroMemo()
    /// The sequence steps before the one being compiled (name → index), empty outside sequences.
    var earlierSteps: [String: Int] = [:]
    /// Steps of the sequence after the current one (a reference to them is an error that says so).
    var laterSteps: Set<String> = []

    func compile(_ c: Condition, _ src: ConditionSource, expanding: [String] = []) throws -> Predicate {
        switch c {
        case .constant(let b):
            return { _, _, _ in b }
        case .and(let a, let b):
            let x = try compile(a, src, expanding: expanding), y = try compile(b, src, expanding: expanding)
            return { e, w, s in x(e, w, s) && y(e, w, s) }
        case .or(let a, let b):
            let x = try compile(a, src, expanding: expanding), y = try compile(b, src, expanding: expanding)
            return { e, w, s in x(e, w, s) || y(e, w, s) }
        case .not(let a):
            let x = try compile(a, src, expanding: expanding)
            return { e, w, s in !x(e, w, s) }
        case .name(let t):
            if let m = macros[t.text] {
                if expanding.contains(t.text) {
                    throw src.error(t, "macro '\(t.text)' uses itself (\((expanding + [t.text]).joined(separator: " -> ")))")
                }
                let p = try compile(m.tree, m.source, expanding: expanding + [t.text])
                // Its value is the same for every rule that tests it on an event, unless it refers to a step.
                guard !refersToSteps(m.tree, expanding: expanding + [t.text]), let slot = memo.slot(t.text) else { return p }
                return { e, w, s in e.memoized(slot) { p(e, w, s) } }
            }
            if let f = Fields.all[t.text] {
                guard case .flag(let g) = f.getter else {
                    throw src.error(t, "'\(t.text)' is \(f.getter.typeName), not yes/no: compare it (\(t.text) = ...)")
                }
                return { e, w, _ in g(e, w) == true }
            }
            if lists[t.text] != nil { throw src.error(t, "'\(t.text)' is a list: use it after in (FIELD in \(t.text))") }
            throw src.error(t, "unknown field or macro '\(t.text)'\(Self.suggestion(t.text))")
        case .comparison(let field, let op, let values):
            return try comparison(field, op, values, src)
        }
    }

    /// Whether a condition (with the macros it uses) refers to a sequence step's event.
    private func refersToSteps(_ c: Condition, expanding: [String]) -> Bool {
        switch c {
        case .and(let a, let b), .or(let a, let b): return refersToSteps(a, expanding: expanding) || refersToSteps(b, expanding: expanding)
        case .not(let a): return refersToSteps(a, expanding: expanding)
        case .constant: return false
        case .comparison(_, _, let values):
            return values.contains { if case .reference = $0 { return true }; return false }
        case .name(let t):
            guard let m = macros[t.text], !expanding.contains(t.text) else { return false }
            return refersToSteps(m.tree, expanding: expanding + [t.text])
        }
    }

    /// The steps a condition (with the macros it uses) refers to (`$step.field`; not `$this`).
    func stepReferences(_ c: Condition, expanding: [String] = []) -> Set<String> {
        switch c {
        case .and(let a, let b), .or(let a, let b): return stepReferences(a, expanding: expanding).union(stepReferences(b, expanding: expanding))
        case .not(let a): return stepReferences(a, expanding: expanding)
        case .constant: return []
        case .comparison(_, _, let values):
            return Set(values.compactMap { if case .reference(let step, _, _) = $0, step != "this" { return step }; return nil })
        case .name(let t):
            guard let m = macros[t.text], !expanding.contains(t.text) else { return [] }
            return stepReferences(m.tree, expanding: expanding + [t.text])
        }
    }

    /// The fields a misspelt name may have meant (at most two edits away), or where to look.
    static func suggestion(_ name: String) -> String {
        let close = Fields.all.keys.filter { distance($0, name) <= min(2, max(1, name.count / 3)) }.sorted()
        return close.isEmpty ? " (kanshi rules fields lists the fields)" : " (did you mean \(close.prefix(4).joined(separator: " or "))?)"
    }

    /// Edit distance (Levenshtein) between two short names.
    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty || y.isEmpty { return max(x.count, y.count) }
        var previous = Array(0...y.count)
        for i in 1...x.count {
            var row = [i] + [Int](repeating: 0, count: y.count)
            for j in 1...y.count {
                row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = row
        }
        return previous[y.count]
    }

    /// Text values of a comparison (references and literals), list names expanded after `in`.
    private func textValues(_ values: [Condition.Value], op: Token, _ src: ConditionSource) throws -> [(String?, Reference?)] {
        var out: [(String?, Reference?)] = []
        for v in values {
            switch v {
            case .literal(let t):
                if op.text == "in", t.kind == .word, let items = lists[t.text] {
                    out += items.map { ($0, nil) }
                } else if op.text == "in", t.kind == .word, values.count == 1 {
                    throw src.error(t, "no list named '\(t.text)': write in (\(t.text)) for one value, or define the list")
                } else {
                    out.append((t.text, nil))
                }
            case .reference(let step, let field, let at):
                out.append((nil, try reference(step, field, at, src)))
            }
        }
        return out
    }

    /// `$step.field`: a field of an earlier step's event, or of the event itself (`$this.field`, index -1).
    struct Reference {
        var index: Int
        var getter: Getter
        func text(_ e: RuleEvent, _ bound: Bound, _ w: RuleWorld) -> String? {
            Fields.text(getter, index < 0 ? e : bound[index], w)
        }
        func number(_ e: RuleEvent, _ bound: Bound, _ w: RuleWorld) -> Double? {
            if case .number(let g) = getter { return g(index < 0 ? e : bound[index], w) }
            return nil
        }
    }

    private func reference(_ step: String, _ field: String, _ at: Token, _ src: ConditionSource) throws -> Reference {
        if step == "this" {
            guard let f = Fields.all[field] else { throw src.error(at, "$this.\(field): unknown field '\(field)'\(Self.suggestion(field))") }
            return Reference(index: -1, getter: f.getter)
        }
        guard let index = earlierSteps[step] else {
            if laterSteps.contains(step) { throw src.error(at, "$\(step).\(field): step '\(step)' comes later; a step can refer only to earlier ones") }
            if earlierSteps.isEmpty && laterSteps.isEmpty { throw src.error(at, "$\(step).\(field): references are for the steps of a sequence") }
            throw src.error(at, "$\(step).\(field): no earlier step named '\(step)' (steps: \(earlierSteps.keys.sorted().joined(separator: ", ")))")
        }
        guard let f = Fields.all[field] else { throw src.error(at, "$\(step).\(field): unknown field '\(field)'\(Self.suggestion(field))") }
        return Reference(index: index, getter: f.getter)
    }

    private func comparison(_ field: Token, _ op: Token, _ values: [Condition.Value], _ src: ConditionSource) throws -> Predicate {
        guard let f = Fields.all[field.text] else {
            if macros[field.text] != nil { throw src.error(field, "'\(field.text)' is a macro, not a field: it cannot be compared") }
            throw src.error(field, "unknown field '\(field.text)'\(Self.suggestion(field.text))")
        }
        // An event kind that does not exist would make the rule never match.
        if field.text == "ev", op.text == "=" || op.text == "in" || op.text == "!=" {
            var mask: UInt64 = 0
            var constant = true
            for v in values {
                guard case .literal(let t) = v else { constant = false; continue }
                if op.text == "in", values.count == 1, t.kind == .word, lists[t.text] == nil { constant = false; continue }  // `in NAME`: not a list, said below
                for kind in (op.text == "in" ? lists[t.text] ?? [t.text] : [t.text]) {
                    guard let i = EventKinds.index[kind] else {
                        throw src.error(t, "'\(kind)' is not an event kind (kinds: \(EventKinds.all.joined(separator: ", ")))")
                    }
                    mask |= UInt64(1) << UInt64(i)
                }
            }
            // Kinds are numbered: one bit test instead of comparing names.
            if constant {
                if op.text == "!=" { return { e, _, _ in mask & (UInt64(1) << UInt64(e.kindIndex)) == 0 } }
                return { e, _, _ in mask & (UInt64(1) << UInt64(e.kindIndex)) != 0 }
            }
        }
        if op.text == "exists" {
            switch f.getter {
            case .text(let g): return { e, w, _ in g(e, w) != nil }
            case .number(let g): return { e, w, _ in g(e, w) != nil }
            case .flag(let g): return { e, w, _ in g(e, w) != nil }
            case .texts(let g): return { e, w, _ in g(e, w) != nil }
            }
        }
        switch f.getter {
        case .text(let g):
            return try textComparison(g, field, op, try textValues(values, op: op, src), src)
        case .texts(let g):
            let vs = try textValues(values, op: op, src)
            switch op.text {
            case "contains", "in":
                if vs.allSatisfy({ $0.1 == nil }) {
                    // Compared one by one (a list's few texts: no string hashed per element).
                    let want = Array(Set(vs.compactMap(\.0)))
                    return { e, w, _ in g(e, w)?.contains(where: want.contains) == true }
                }
                return { e, w, b in
                    guard let list = g(e, w) else { return false }
                    let want = vs.compactMap { $0.0 ?? $0.1!.text(e, b, w) }
                    return list.contains(where: want.contains)
                }
            case "startswith", "endswith", "glob", "icontains":
                // Any element matching: evaluate the text comparison on each element.
                let test = try elementTest(op, vs, field, src)
                return { e, w, b in g(e, w)?.contains(where: { test($0, e, w, b) }) == true }
            default:
                throw src.error(op, "\(field.text) is a list of text: use contains, in, startswith, endswith, icontains or glob")
            }
        case .number(let g):
            var literals: [Double] = [], refs: [Reference] = []
            for v in values {
                switch v {
                case .literal(let t):
                    if op.text == "in", let items = lists[t.text] {
                        for item in items {
                            guard let d = Double(item) else { throw src.error(t, "list '\(t.text)' holds '\(item)', not a number: \(field.text) is a number") }
                            literals.append(d)
                        }
                    } else {
                        guard let d = Double(t.text) else { throw src.error(t, "'\(t.text)' is not a number: \(field.text) is a number") }
                        literals.append(d)
                    }
                case .reference(let step, let name, let at):
                    let r = try reference(step, name, at, src)
                    guard case .number = r.getter else { throw src.error(at, "$\(step).\(name) is \(r.getter.typeName): \(field.text) is a number") }
                    refs.append(r)
                }
            }
            let cmp: (Double, Double) -> Bool
            switch op.text {
            case "=", "in": cmp = (==)
            case "!=": cmp = (!=)
            case "<": cmp = (<)
            case "<=": cmp = (<=)
            case ">": cmp = (>)
            case ">=": cmp = (>=)
            default: throw src.error(op, "\(field.text) is a number: compare it with = != < <= > >= or in")
            }
            if op.text != "in", values.count != 1 { throw src.error(op, "\(op.text) takes one value") }
            if refs.isEmpty {
                if literals.count == 1 {
                    let c = literals[0]
                    // One closure per operator: the comparison inlined, not called through `cmp`.
                    switch op.text {
                    case "=", "in": return { e, w, _ in g(e, w).map { $0 == c } == true }
                    case "!=": return { e, w, _ in g(e, w).map { $0 != c } == true }
                    case "<": return { e, w, _ in g(e, w).map { $0 < c } == true }
                    case "<=": return { e, w, _ in g(e, w).map { $0 <= c } == true }
                    case ">": return { e, w, _ in g(e, w).map { $0 > c } == true }
                    default: return { e, w, _ in g(e, w).map { $0 >= c } == true }
                    }
                }
                let set = Set(literals)
                return { e, w, _ in g(e, w).map(set.contains) == true }
            }
            return { e, w, b in
                guard let x = g(e, w) else { return false }
                if literals.contains(where: { cmp(x, $0) }) { return true }
                return refs.contains { r in r.number(e, b, w).map { cmp(x, $0) } == true }
            }
        case .flag(let g):
            guard op.text == "=" || op.text == "!=", values.count == 1 else {
                throw src.error(op, "\(field.text) is yes/no: use \(field.text), not \(field.text), or \(field.text) = true|false")
            }
            let want: Bool
            switch values[0] {
            case .literal(let t):
                guard t.text == "true" || t.text == "false" else { throw src.error(t, "'\(t.text)': \(field.text) is yes/no (true or false)") }
                want = t.text == "true"
            case .reference(_, _, let at):
                throw src.error(at, "\(field.text) is yes/no: compare it with true or false")
            }
            let equal = op.text == "="
            return { e, w, _ in g(e, w).map { ($0 == want) == equal } == true }
        }
    }

    /// A test of one text against the comparison's values (for list elements).
    private func elementTest(_ op: Token, _ vs: [(String?, Reference?)], _ field: Token, _ src: ConditionSource)
        throws -> (String, RuleEvent, RuleWorld, Bound) -> Bool {
        let match = try Self.textMatcher(op, field, src)
        return { x, e, w, b in vs.contains { v in (v.0 ?? v.1!.text(e, b, w)).map { match(x, $0) } == true } }
    }

    static func textMatcher(_ op: Token, _ field: Token, _ src: ConditionSource) throws -> (String, String) -> Bool {
        switch op.text {
        case "=", "in": return (==)
        case "!=": return (!=)
        case "contains": return { Text.contains($0, $1) }
        case "icontains": return { $0.lowercased().contains($1.lowercased()) }
        case "startswith": return { $0.hasPrefix($1) }
        case "endswith": return { $0.hasSuffix($1) }
        case "glob": return { Glob.matches($0, pattern: $1) }
        default: throw src.error(op, "\(field.text) is text: compare it with = != in contains icontains startswith endswith glob exists, not \(op.text)")
        }
    }

    private func textComparison(_ g: @escaping (RuleEvent, RuleWorld) -> String?, _ field: Token, _ op: Token,
                                _ vs: [(String?, Reference?)], _ src: ConditionSource) throws -> Predicate {
        let match = try Self.textMatcher(op, field, src)
        if op.text != "in", vs.count != 1 { throw src.error(op, "\(op.text) takes one value") }
        if vs.allSatisfy({ $0.1 == nil }) {
            let constants = vs.compactMap(\.0)
            // Every text field but `ev` has bytes (and `ev` = / != / in is a bit test, above).
            if let b = Fields.byteGetter(field.text), let fast = Self.byteComparison(b, op.text, constants) { return fast }
            if op.text == "in" {
                let set = Set(constants)
                return { e, w, _ in g(e, w).map(set.contains) == true }
            }
            let c = constants[0]
            return { e, w, _ in g(e, w).map { match($0, c) } == true }
        }
        return { e, w, b in
            guard let x = g(e, w) else { return false }
            return vs.contains { v in (v.0 ?? v.1!.text(e, b, w)).map { match(x, $0) } == true }
        }
    }

    /// A comparison of a text field with constants, on the field's bytes (nil: the operator has no byte form).
    static func byteComparison(_ b: @escaping ByteGetter, _ op: String, _ constants: [String]) -> Predicate? {
        if op == "in" {
            let set = ByteSet(constants)
            return { e, w, _ in b(e, w).map(set.contains) == true }
        }
        guard constants.count == 1 else { return nil }
        let k = ByteConstant(constants[0])
        switch op {
        case "=": return { e, w, _ in b(e, w).map { Bytes.equal($0, k.bytes) } == true }
        case "!=": return { e, w, _ in b(e, w).map { !Bytes.equal($0, k.bytes) } == true }
        case "startswith": return { e, w, _ in b(e, w).map { Bytes.hasPrefix($0, k.bytes) } == true }
        case "endswith": return { e, w, _ in b(e, w).map { Bytes.hasSuffix($0, k.bytes) } == true }
        case "contains": return { e, w, _ in b(e, w).map { Bytes.contains($0, k.bytes) } == true }
        case "glob": return { e, w, _ in b(e, w).map { Glob.matches($0, pattern: k.bytes) } == true }
        default: return nil
        }
    }

    /// The event kinds a condition can match (nil: any), for dispatching events only to the
    /// rules that may match them.
    func kinds(_ c: Condition, expanding: [String] = []) -> Set<String>? {
        switch c {
        case .and(let a, let b):
            switch (kinds(a, expanding: expanding), kinds(b, expanding: expanding)) {
            case (nil, nil): return nil
            case (let x?, nil): return x
            case (nil, let y?): return y
            case (let x?, let y?): return x.intersection(y)
            }
        case .or(let a, let b):
            guard let x = kinds(a, expanding: expanding), let y = kinds(b, expanding: expanding) else { return nil }
            return x.union(y)
        case .comparison(let f, let op, let values) where f.text == "ev" && (op.text == "=" || op.text == "in"):
            var out: Set<String> = []
            for v in values {
                guard case .literal(let t) = v else { return nil }
                if op.text == "in", let items = lists[t.text] { out.formUnion(items) } else { out.insert(t.text) }
            }
            return out
        case .name(let t):
            guard let m = macros[t.text], !expanding.contains(t.text) else { return nil }
            return kinds(m.tree, expanding: expanding + [t.text])
        default:
            return nil
        }
    }
}

/// Shell-style patterns: `*` any run of characters (`/` too), `?` one character.
enum Glob {
    static func matches(_ text: String, pattern: String) -> Bool {
        var text = text, pattern = pattern
        return text.withUTF8 { t in pattern.withUTF8 { p in match(t, p) } }
    }

    static func matches(_ text: UnsafeRawBufferPointer, pattern: UnsafeRawBufferPointer) -> Bool {
        match(text.assumingMemoryBound(to: UInt8.self), pattern.assumingMemoryBound(to: UInt8.self))
    }

    private static func match(_ t: UnsafeBufferPointer<UInt8>, _ p: UnsafeBufferPointer<UInt8>) -> Bool {
        let star = UInt8(ascii: "*"), any = UInt8(ascii: "?")
        var ti = 0, pi = 0, starAt = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == any || p[pi] == t[ti] {
                ti += 1; pi += 1
            } else if pi < p.count, p[pi] == star {
                starAt = pi; mark = ti; pi += 1
            } else if starAt >= 0 {
                pi = starAt + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == star { pi += 1 }
        return pi == p.count
    }
}
