import Foundation
import Yams

/// How serious an alert is (Sigma's levels).
public enum Severity: String, Sendable, CaseIterable, Comparable {
    case informational, low, medium, high, critical

    public static func < (a: Severity, b: Severity) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// What happens when a rule fires, beside the alert.
public enum RuleAction: String, Sendable, CaseIterable {
    /// Always done: the alert goes to the sinks.
    case alert
    /// Pause the VM (sandbox).
    case pause
    /// Roll the disk back to before the first event of the evidence (sandbox).
    case rollback
    /// Cut the VM's or the process's network.
    case isolate
    /// Kill the process (its tree for tree-keyed rules).
    case kill
}

/// One rule, compiled.
public struct Rule: @unchecked Sendable {
    public var name: String
    public var description: String
    public var severity: Severity
    public var tags: [String]
    public var actions: [RuleAction]
    /// A silent rule raises no alert: its matches are events (`ev = match`, `rule = NAME`) for other rules.
    public var silent: Bool
    public var position: SourcePosition
    var output: OutputTemplate
    var shape: Shape
    /// The event kinds the rule can use (nil: any).
    var kinds: Set<String>?

    enum Shape {
        case single(Predicate)
        case sequence(SequenceSpec)
        case count(CountSpec)
    }

    public var shapeName: String {
        switch shape {
        case .single: "condition"
        case .sequence: "sequence"
        case .count: "count"
        }
    }
}

struct KeySpec {
    var names: [String]
    var getters: [Getter]
    /// The fields as they add themselves to a key's bytes (the engine's tables).
    let fields: [KeyField]

    init(names: [String], getters: [Getter]) {
        self.names = names
        self.getters = getters
        fields = zip(names, getters).map { KeyField($0, $1) }
    }

    /// Appends the event's values of these fields to `key`'s bytes.
    func append(_ e: RuleEvent, _ w: RuleWorld, to key: inout KeyBuffer) {
        // By index: each field read in place (no closure retained per field).
        for n in fields.indices { fields[n].append(e, w, to: &key) }
    }

    /// Adds the event's values of these fields to `key`.
    func add(_ e: RuleEvent, _ w: RuleWorld, to key: inout EventKey) {
        for g in getters { key.append(Fields.keyPart(g, e, w)) }
    }

    func key(_ e: RuleEvent, _ w: RuleWorld) -> EventKey {
        var k = EventKey()
        add(e, w, to: &k)
        return k
    }

    func described(_ e: RuleEvent, _ w: RuleWorld) -> [String: String] {
        var d: [String: String] = [:]
        for (n, g) in zip(names, getters) { if let v = Fields.text(g, e, w) { d[n] = v } }
        return d
    }
}

/// (Classes, not structs: the engine reads them for every event without copying their closures.)
final class SequenceSpec {
    final class Step {
        let name: String
        let predicate: Predicate
        /// This step's join fields (after the sequence's own `by`).
        let join: KeySpec
        /// The event kinds the step can match (all bits: any).
        let kinds: UInt64
        /// Whether an open sequence keeps this step's event (a later step's condition or the
        /// output reads its fields); else only its evidence. Set once, when the rule is read.
        var keepsEvent = false
        init(name: String, predicate: @escaping Predicate, join: KeySpec, kinds: UInt64) {
            self.name = name; self.predicate = predicate; self.join = join; self.kinds = kinds
        }
    }
    let by: KeySpec
    let steps: [Step]
    let withinNs: UInt64
    init(by: KeySpec, steps: [Step], withinNs: UInt64) { self.by = by; self.steps = steps; self.withinNs = withinNs }
}

final class CountSpec {
    enum Counted {
        case events(Predicate)
        case matches(of: String)
    }
    let counted: Counted
    let by: KeySpec
    let distinct: (name: String, getter: Getter)?
    let windowNs: UInt64
    let threshold: Int
    init(counted: Counted, by: KeySpec, distinct: (name: String, getter: Getter)?, windowNs: UInt64, threshold: Int) {
        self.counted = counted; self.by = by; self.distinct = distinct; self.windowNs = windowNs; self.threshold = threshold
    }
}

/// A rules file, read and compiled: every rule with its lists and macros resolved.
public struct RuleSet: @unchecked Sendable {
    public var rules: [Rule]
    /// Where the rules came from (a file, or "built-in").
    public var origin: String

    /// The built-in set (Kanshi's own rules, compiled in).
    public static func builtin() throws -> RuleSet { try RuleSet(yaml: BuiltinRules.yaml, file: "built-in rules") }

    /// Reads and compiles a rules file. Every problem is a `RuleError` naming the file, line and column.
    public static func load(path: String) throws -> RuleSet {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RuleError(SourcePosition(file: path, line: 0, column: 0), FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RuleError(SourcePosition(file: path, line: 1, column: 1), "not UTF-8 text")
        }
        return try RuleSet(yaml: text, file: path)
    }

    public init(yaml: String, file: String) throws {
        origin = file
        rules = try RuleLoader(text: yaml, file: file).load()
    }
}

/// Reads a rules file's YAML into compiled rules.
struct RuleLoader {
    let text: String
    let file: String
    private let chars: [Character]
    private let lineStarts: [Int]

    init(text: String, file: String) {
        self.text = text
        self.file = file
        chars = Array(text)
        var starts = [0]
        for (i, c) in chars.enumerated() where c == "\n" { starts.append(i + 1) }
        lineStarts = starts
    }

    func position(_ node: Node?) -> SourcePosition {
        guard let m = node?.mark else { return SourcePosition(file: file, line: 1, column: 1) }
        return SourcePosition(file: file, line: m.line, column: m.column)
    }

    func error(_ node: Node?, _ message: String) -> RuleError { RuleError(position(node), message) }

    private func positionOf(offset: Int) -> SourcePosition {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return SourcePosition(file: file, line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    /// A scalar condition with the file position of each of its characters: the scalar's text is
    /// walked beside the file's from the node's mark, so folded and multi-line conditions point
    /// at the right line too.
    func conditionSource(_ node: Node) throws -> ConditionSource {
        guard case .scalar(let s) = node else { throw error(node, "expected a condition (text)") }
        let start = position(node)
        guard let m = s.mark, m.line - 1 < lineStarts.count else { return ConditionSource(text: s.string, positions: [], start: start) }
        var j = lineStarts[m.line - 1] + m.column - 1
        switch s.style {
        case .literal, .folded:
            while j < chars.count, chars[j] != "\n" { j += 1 }
            j += 1
        case .singleQuoted, .doubleQuoted:
            j += 1
        default:
            break
        }
        var positions: [SourcePosition] = []
        for c in s.string {
            if !c.isWhitespace {
                var k = j
                while k < chars.count, chars[k] != c, chars[k].isWhitespace || chars[k] == "\\" { k += 1 }
                if k < chars.count, chars[k] == c { j = k }
            }
            positions.append(positionOf(offset: min(j, max(chars.count - 1, 0))))
            if !c.isWhitespace || (j < chars.count && chars[j] == c) { j += 1 }
        }
        return ConditionSource(text: s.string, positions: positions, start: start)
    }

    func load() throws -> [Rule] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw yamlError(e)
        }
        guard let root else { throw RuleError(SourcePosition(file: file, line: 1, column: 1), "empty rules file: expected a list of list, macro and rule items") }
        guard case .sequence(let items) = root else { throw error(root, "expected a list of items (- list: ..., - macro: ..., - rule: ...)") }

        var lists: [String: [String]] = [:]
        var macros: [String: MacroSource] = [:]
        var ruleNodes: [(Node, Node.Mapping)] = []
        for item in items {
            guard case .mapping(let m) = item else { throw error(item, "expected a mapping with list:, macro: or rule:") }
            let kinds = ["list", "macro", "rule"].filter { m[$0] != nil }
            guard kinds.count == 1 else {
                throw error(item, kinds.isEmpty ? "an item needs list:, macro: or rule: (found \(keys(m).joined(separator: ", ")))" : "an item is one of list, macro or rule, not \(kinds.joined(separator: " and "))")
            }
            switch kinds[0] {
            case "list":
                try allowed(m, ["list", "items"])
                let name = try identifier(m, "list")
                if lists[name] != nil { throw error(m["list"], "list '\(name)' is defined twice") }
                guard let itemsNode = m["items"] else { throw error(item, "list '\(name)' needs items:") }
                lists[name] = try strings(itemsNode, what: "items")
            case "macro":
                try allowed(m, ["macro", "condition"])
                let name = try identifier(m, "macro")
                if macros[name] != nil { throw error(m["macro"], "macro '\(name)' is defined twice") }
                if Fields.all[name] != nil { throw error(m["macro"], "'\(name)' is a field; a macro needs another name") }
                guard let c = m["condition"] else { throw error(item, "macro '\(name)' needs condition:") }
                let src = try conditionSource(c)
                var p = try ConditionParser(src)
                macros[name] = MacroSource(source: src, tree: try p.parse())
            default:
                ruleNodes.append((item, m))
            }
        }
        // Lists may hold other lists' names (Falco's habit): expanded once, in order of definition.
        for (name, items) in lists { lists[name] = items.flatMap { lists[$0] ?? [$0] } }
        let compiler = ConditionCompiler(lists: lists, macros: macros)
        // Macros are checked even when no rule uses them.
        for (name, m) in macros { _ = try compiler.compile(m.tree, m.source, expanding: [name]) }

        var rules: [Rule] = []
        var names: Set<String> = []
        for (node, m) in ruleNodes {
            let r = try rule(node, m, compiler)
            guard names.insert(r.name).inserted else { throw error(m["rule"], "rule '\(r.name)' is defined twice") }
            if let enabled = m["enabled"], enabled.bool == false { continue }
            rules.append(r)
        }
        // A count of another rule's matches needs that rule, silent, defined before it.
        for r in rules {
            guard case .count(let c) = r.shape, case .matches(let other) = c.counted else { continue }
            guard let o = rules.first(where: { $0.name == other }) else {
                throw RuleError(r.position, "rule '\(r.name)' counts matches of '\(other)', which is not a rule (or is disabled)")
            }
            guard o.silent else { throw RuleError(r.position, "rule '\(r.name)' counts matches of '\(other)': make that rule silent: true") }
            guard rules.firstIndex(where: { $0.name == other })! < rules.firstIndex(where: { $0.name == r.name })! else {
                throw RuleError(r.position, "rule '\(r.name)' counts matches of '\(other)', defined after it: define '\(other)' first")
            }
        }
        return rules
    }

    private func yamlError(_ e: YamlError) -> RuleError {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return RuleError(SourcePosition(file: file, line: mark.line, column: mark.column), "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return RuleError(SourcePosition(file: file, line: context.mark.line, column: context.mark.column),
                             "key\(duplicates.count > 1 ? "s" : "") \(duplicates.joined(separator: ", ")) given twice")
        default:
            return RuleError(SourcePosition(file: file, line: 1, column: 1), "not valid YAML: \(e)")
        }
    }

    private func keys(_ m: Node.Mapping) -> [String] { m.keys.compactMap(\.string) }

    private func allowed(_ m: Node.Mapping, _ allowed: [String]) throws {
        for (k, _) in m {
            guard let name = k.string, allowed.contains(name) else {
                throw error(k, "unknown key '\(k.string ?? "?")' (expected \(allowed.joined(separator: ", ")))")
            }
        }
    }

    private func identifier(_ m: Node.Mapping, _ key: String) throws -> String {
        guard let n = m[key], case .scalar(let s) = n, !s.string.isEmpty else { throw error(m[key], "\(key): expected a name") }
        guard s.string.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }) else {
            throw error(n, "'\(s.string)': a \(key) name is letters, digits, _ - and .")
        }
        return s.string
    }

    private func string(_ n: Node?, what: String) throws -> String {
        guard let n, case .scalar(let s) = n else { throw error(n, "\(what): expected text") }
        return s.string
    }

    private func strings(_ n: Node, what: String) throws -> [String] {
        switch n {
        case .scalar(let s): return [s.string]
        case .sequence(let seq):
            return try seq.map { item in
                guard case .scalar(let s) = item else { throw error(item, "\(what): expected text items") }
                return s.string
            }
        default: throw error(n, "\(what): expected a list")
        }
    }

    /// "30s", "500ms", "2m", "1h" or a number of seconds.
    private func duration(_ n: Node?, what: String) throws -> UInt64 {
        let s = try string(n, what: what).trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        for (suffix, scale) in units where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            if suffix == "s", number.hasSuffix("m") { continue }
            if let v = Double(number), v > 0, v * scale < 1e18 { return UInt64(v * scale) }
        }
        if let v = Double(s), v > 0, v < 1e9 { return UInt64(v * 1e9) }
        throw error(n, "\(what): '\(s)' is not a duration (e.g. 500ms, 30s, 2m, 1h)")
    }

    private func keySpec(_ n: Node?, what: String, defaultNames: [String] = []) throws -> KeySpec {
        var names = defaultNames
        if let n {
            let given = try strings(n, what: what)
            if given.count == 1, let short = Fields.keys[given[0]] { names = short } else { names = given }
        }
        var getters: [Getter] = []
        for name in names {
            guard let f = Fields.all[name] else {
                throw error(n, "\(what): unknown field '\(name)' (or use process, tree, file or vm)\(ConditionCompiler.suggestion(name))")
            }
            getters.append(f.getter)
        }
        return KeySpec(names: names, getters: getters)
    }

    private func condition(_ n: Node, _ compiler: ConditionCompiler) throws -> (Predicate, Set<String>?) {
        let (p, k, _) = try conditionReferring(n, compiler)
        return (p, k)
    }

    /// A condition, its kinds, and the sequence steps it refers to.
    private func conditionReferring(_ n: Node, _ compiler: ConditionCompiler) throws -> (Predicate, Set<String>?, Set<String>) {
        let src = try conditionSource(n)
        var p = try ConditionParser(src)
        let tree = try p.parse()
        return (try compiler.compile(tree, src), compiler.kinds(tree), compiler.stepReferences(tree))
    }

    private func rule(_ node: Node, _ m: Node.Mapping, _ compiler: ConditionCompiler) throws -> Rule {
        try allowed(m, ["rule", "desc", "condition", "sequence", "count", "severity", "tags", "output", "actions", "exceptions", "enabled", "silent"])
        let name = try identifier(m, "rule")
        let shapes = ["condition", "sequence", "count"].filter { m[$0] != nil }
        guard shapes.count == 1 else {
            throw error(node, shapes.isEmpty ? "rule '\(name)' needs one of condition:, sequence: or count:" : "rule '\(name)' has \(shapes.joined(separator: " and ")): give one")
        }
        let severityText = try m["severity"].map { try string($0, what: "severity") } ?? "medium"
        guard let severity = Severity(rawValue: severityText.lowercased()) else {
            throw error(m["severity"], "severity '\(severityText)': one of \(Severity.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let tags = try m["tags"].map { try strings($0, what: "tags") } ?? []
        var actions: [RuleAction] = [.alert]
        if let a = m["actions"] {
            guard case .sequence(let seq) = a else { throw error(a, "actions: expected a list, e.g. [alert, kill]") }
            for item in seq {
                guard let s = item.string, let act = RuleAction(rawValue: s) else {
                    throw error(item, "action '\(item.string ?? "?")': one of \(RuleAction.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if !actions.contains(act) { actions.append(act) }
            }
        }
        let silent: Bool
        if let s = m["silent"] {
            guard let b = s.bool else { throw error(s, "silent: true or false") }
            silent = b
        } else {
            silent = false
        }
        if let en = m["enabled"], en.bool == nil { throw error(en, "enabled: true or false") }
        let exception = try exceptions(m["exceptions"])
        func excepted(_ p: @escaping Predicate) -> Predicate {
            guard let x = exception else { return p }
            return { e, w, b in p(e, w, b) && !x(e, w) }
        }

        var stepNames: [String] = []
        let shape: Rule.Shape
        let kinds: Set<String>?
        switch shapes[0] {
        case "condition":
            let (p, k) = try condition(m["condition"]!, compiler)
            shape = .single(excepted(p))
            kinds = k
        case "sequence":
            let sn = m["sequence"]!
            guard case .mapping(let s) = sn else { throw error(sn, "sequence: expected by:, within: and steps:") }
            try allowed(s, ["by", "within", "steps"])
            let by = try keySpec(s["by"], what: "by", defaultNames: Fields.keys["process"]!)
            guard s["within"] != nil else { throw error(sn, "sequence needs within: (how long from the first step to the last, e.g. 30s)") }
            let within = try duration(s["within"], what: "within")
            guard let stepsNode = s["steps"], case .sequence(let stepItems) = stepsNode else { throw error(sn, "sequence needs steps: (a list of two or more)") }
            guard stepItems.count >= 2 else { throw error(stepsNode, "a sequence needs two steps or more (one step: use condition:)") }
            for item in stepItems {
                guard case .mapping(let st) = item, let n = st["name"]?.string, !n.isEmpty else { throw error(item, "a step needs name: and condition:") }
                if stepNames.contains(n) { throw error(st["name"], "step '\(n)' is named twice") }
                stepNames.append(n)
            }
            var steps: [SequenceSpec.Step] = []
            var allKinds: Set<String>? = []
            var joinCount: Int?
            var referenced: Set<String> = []
            for (i, item) in stepItems.enumerated() {
                guard case .mapping(let st) = item else { continue }
                try allowed(st, ["name", "condition", "by"])
                guard let c = st["condition"] else { throw error(item, "step '\(stepNames[i])' needs condition:") }
                var stepCompiler = compiler
                stepCompiler.earlierSteps = Dictionary(uniqueKeysWithValues: stepNames.prefix(i).enumerated().map { ($1, $0) })
                stepCompiler.laterSteps = Set(stepNames.dropFirst(i))
                let (p, k, refs) = try conditionReferring(c, stepCompiler)
                referenced.formUnion(refs)
                let join = try keySpec(st["by"], what: "by")
                if let n = joinCount, n != join.names.count {
                    throw error(st["by"] ?? item, "step '\(stepNames[i])' joins on \(join.names.count) field(s), earlier steps on \(n): every step's by: has as many fields")
                }
                joinCount = join.names.count
                // Exceptions of a sequence are checked on its last step's event (the one completing a match).
                let last = i == stepItems.count - 1
                steps.append(.init(name: stepNames[i], predicate: last ? excepted(p) : p, join: join, kinds: k.map(EventKinds.mask) ?? .max))
                if let k, let a = allKinds { allKinds = a.union(k) } else { allKinds = nil }
            }
            for s in steps where referenced.contains(s.name) { s.keepsEvent = true }
            shape = .sequence(SequenceSpec(by: by, steps: steps, withinNs: within))
            kinds = allKinds
        default:
            let cn = m["count"]!
            guard case .mapping(let c) = cn else { throw error(cn, "count: expected condition: (or rule:), by:, window: and threshold:") }
            try allowed(c, ["condition", "rule", "by", "distinct", "window", "threshold"])
            let counted: CountSpec.Counted
            switch (c["condition"], c["rule"]) {
            case (let cond?, nil):
                let (p, k) = try condition(cond, compiler)
                counted = .events(excepted(p))
                kinds = k
            case (nil, let r?):
                counted = .matches(of: try string(r, what: "rule"))
                kinds = ["match"]
            default:
                throw error(cn, "count needs condition: (events to count) or rule: (a silent rule's matches to count), one of them")
            }
            let by = try keySpec(c["by"], what: "by", defaultNames: Fields.keys["tree"]!)
            var distinct: (String, Getter)?
            if let d = c["distinct"] {
                let f = try string(d, what: "distinct")
                guard let g = Fields.all[f] else { throw error(d, "distinct: unknown field '\(f)'\(ConditionCompiler.suggestion(f))") }
                distinct = (f, g.getter)
            }
            guard c["window"] != nil else { throw error(cn, "count needs window: (e.g. 30s)") }
            let window = try duration(c["window"], what: "window")
            guard let tn = c["threshold"], let t = tn.int, t >= 1, t <= 1_000_000 else {
                throw error(c["threshold"] ?? cn, "count needs threshold: a whole number from 1 to 1000000 (the count that fires the rule)")
            }
            shape = .count(CountSpec(counted: counted, by: by, distinct: distinct, windowNs: window, threshold: t))
        }
        let output = try m["output"].map { try OutputTemplate(string($0, what: "output"), at: position($0), steps: stepNames, isCount: shapes[0] == "count") }
            ?? OutputTemplate.standard(shape: shapes[0])
        if case .sequence(let s) = shape {
            for p in output.parts { if case .stepField(let i, _) = p { s.steps[i].keepsEvent = true } }
        }
        return Rule(name: name, description: try m["desc"].map { try string($0, what: "desc") } ?? "", severity: severity, tags: tags,
                    actions: actions, silent: silent, position: position(m["rule"]), output: output, shape: shape, kinds: kinds)
    }

    /// Falco's exceptions: `- name: N, fields: [f1, f2], comps: [=, startswith], values: [[v1, v2], ...]`;
    /// an event that matches every field of any value row is left out.
    private func exceptions(_ n: Node?) throws -> ((RuleEvent, RuleWorld) -> Bool)? {
        guard let n else { return nil }
        guard case .sequence(let items) = n else { throw error(n, "exceptions: expected a list of name:, fields:, comps:, values:") }
        var tests: [(RuleEvent, RuleWorld) -> Bool] = []
        for item in items {
            guard case .mapping(let m) = item else { throw error(item, "an exception is a mapping with name:, fields:, values:") }
            try allowed(m, ["name", "fields", "comps", "values"])
            guard m["name"]?.string != nil else { throw error(item, "an exception needs name:") }
            guard let fn = m["fields"] else { throw error(item, "an exception needs fields:") }
            let single = fn.string != nil
            let fields = try strings(fn, what: "fields")
            var getters: [(RuleEvent, RuleWorld) -> String?] = []
            for f in fields {
                guard let g = Fields.all[f] else { throw error(fn, "fields: unknown field '\(f)'\(ConditionCompiler.suggestion(f))") }
                getters.append { e, w in Fields.text(g.getter, e, w) }
            }
            var comps = [String](repeating: "=", count: fields.count)
            if let cn = m["comps"] {
                comps = try strings(cn, what: "comps")
                guard comps.count == fields.count else { throw error(cn, "comps: \(comps.count) given for \(fields.count) field(s)") }
            }
            var matchers: [(String, String) -> Bool] = []
            for (i, c) in comps.enumerated() {
                let tok = Token(kind: .word, text: c, offset: 0)
                let src = ConditionSource(text: c, positions: [], start: position(m["comps"]))
                matchers.append(try ConditionCompiler.textMatcher(tok, Token(kind: .word, text: fields[i], offset: 0), src))
            }
            guard let vn = m["values"], case .sequence(let rows) = vn else { throw error(item, "an exception needs values: (a list)") }
            var valueRows: [[String]] = []
            for row in rows {
                if single, row.string != nil {
                    valueRows.append([row.string!])
                    continue
                }
                let v = try strings(row, what: "values")
                guard v.count == fields.count else { throw error(row, "values: a row of \(v.count) for \(fields.count) field(s)") }
                valueRows.append(v)
            }
            tests.append { e, w in
                valueRows.contains { row in
                    row.indices.allSatisfy { i in getters[i](e, w).map { matchers[i]($0, row[i]) } == true }
                }
            }
        }
        return { e, w in tests.contains { $0(e, w) } }
    }
}
