/// The condition language (Falco's, with sequence references):
///
///     ev = open and flags startswith w and not path in (temp_paths)
///     ev = close and path = $read.path and entropy > 7.5
///     proc.anames contains sshd or (managed and ev in (connect, send))
///
/// `and`, `or`, `not`, parentheses; comparisons `= != < <= > >=`, `in (a, b, list)`,
/// `contains`, `icontains`, `startswith`, `endswith`, `glob`, `exists`; a bare name is a
/// macro or a yes/no field. Values are words, quoted strings, numbers or `$step.field`.
indirect enum Condition {
    case and(Condition, Condition)
    case or(Condition, Condition)
    case not(Condition)
    case comparison(field: Token, op: Token, values: [Value])
    /// A bare name: a macro or a yes/no field.
    case name(Token)
    case constant(Bool)

    enum Value {
        case literal(Token)
        /// `$step.field`.
        case reference(step: String, field: String, at: Token)
    }
}

/// One word, string, number or symbol of a condition, with where it starts in the condition text.
struct Token {
    enum Kind: Equatable { case word, string, reference, symbol, end }
    var kind: Kind
    var text: String
    /// Character offset in the condition text.
    var offset: Int
}

/// Maps a condition's character offsets to file positions.
struct ConditionSource {
    var text: String
    /// Where each character of `text` is in the file (same count as `text`'s characters).
    var positions: [SourcePosition]
    /// The position of the condition as a whole (its YAML node).
    var start: SourcePosition

    func position(_ offset: Int) -> SourcePosition {
        positions.isEmpty ? start : positions[min(max(offset, 0), positions.count - 1)]
    }

    func error(_ t: Token, _ message: String) -> RuleError { RuleError(position(t.offset), message) }
}

/// Reads a condition into its tree.
struct ConditionParser {
    static let operators: Set<String> = ["=", "!=", "<", "<=", ">", ">=", "in", "contains", "icontains", "startswith", "endswith", "glob", "exists"]

    let source: ConditionSource
    private var tokens: [Token] = []
    private var i = 0

    init(_ source: ConditionSource) throws {
        self.source = source
        tokens = try Self.tokenize(source)
    }

    static func tokenize(_ source: ConditionSource) throws -> [Token] {
        let chars = Array(source.text)
        var out: [Token] = []
        var k = 0
        func isWordChar(_ c: Character) -> Bool {
            c.isLetter || c.isNumber || "_./-*?~:@+%[]^{}#".contains(c)
        }
        while k < chars.count {
            let c = chars[k]
            if c.isWhitespace { k += 1; continue }
            let start = k
            switch c {
            case "(", ")", ",":
                out.append(Token(kind: .symbol, text: String(c), offset: k)); k += 1
            case "=":
                out.append(Token(kind: .symbol, text: "=", offset: k)); k += 1
            case "!", "<", ">":
                if k + 1 < chars.count, chars[k + 1] == "=" {
                    out.append(Token(kind: .symbol, text: String(c) + "=", offset: k)); k += 2
                } else if c == "!" {
                    throw RuleError(source.position(k), "'!' alone is not an operator: use != or not")
                } else {
                    out.append(Token(kind: .symbol, text: String(c), offset: k)); k += 1
                }
            case "\"", "'":
                var s = ""
                k += 1
                var closed = false
                while k < chars.count {
                    if chars[k] == "\\", k + 1 < chars.count { s.append(chars[k + 1]); k += 2; continue }
                    if chars[k] == c { closed = true; k += 1; break }
                    s.append(chars[k]); k += 1
                }
                if !closed { throw RuleError(source.position(start), "string not closed: add \(c)") }
                out.append(Token(kind: .string, text: s, offset: start))
            case "$":
                k += 1
                while k < chars.count, isWordChar(chars[k]) { k += 1 }
                let text = String(chars[(start + 1)..<k])
                guard text.contains("."), !text.hasPrefix("."), !text.hasSuffix(".") else {
                    throw RuleError(source.position(start), "'$\(text)': a reference is $step.field")
                }
                out.append(Token(kind: .reference, text: text, offset: start))
            default:
                guard isWordChar(c) else { throw RuleError(source.position(k), "unexpected character '\(c)'") }
                while k < chars.count, isWordChar(chars[k]) { k += 1 }
                out.append(Token(kind: .word, text: String(chars[start..<k]), offset: start))
            }
        }
        out.append(Token(kind: .end, text: "", offset: max(chars.count - 1, 0)))
        return out
    }

    private var peek: Token { tokens[i] }
    private mutating func next() -> Token { defer { i += 1 }; return tokens[i] }
    private func isKeyword(_ t: Token, _ w: String) -> Bool { t.kind == .word && t.text == w }

    mutating func parse() throws -> Condition {
        if peek.kind == .end { throw source.error(peek, "empty condition") }
        let c = try orExpression()
        guard peek.kind == .end else { throw source.error(peek, "unexpected '\(peek.text)': expected and, or or the end of the condition") }
        return c
    }

    private mutating func orExpression() throws -> Condition {
        var left = try andExpression()
        while isKeyword(peek, "or") { _ = next(); left = .or(left, try andExpression()) }
        return left
    }

    private mutating func andExpression() throws -> Condition {
        var left = try unary()
        while isKeyword(peek, "and") { _ = next(); left = .and(left, try unary()) }
        return left
    }

    private mutating func unary() throws -> Condition {
        if isKeyword(peek, "not") { _ = next(); return .not(try unary()) }
        return try primary()
    }

    private mutating func primary() throws -> Condition {
        let t = next()
        if t.kind == .symbol, t.text == "(" {
            let c = try orExpression()
            let close = next()
            guard close.kind == .symbol, close.text == ")" else { throw source.error(close, "expected ')' to close the '(' of column \(source.position(t.offset).column)") }
            return c
        }
        guard t.kind == .word else { throw source.error(t, t.kind == .end ? "the condition ends where a field, macro or '(' was expected" : "expected a field, macro or '(', found '\(t.text)'") }
        if t.text == "true" { return .constant(true) }
        if t.text == "false" { return .constant(false) }
        if ["and", "or", "in"].contains(t.text) { throw source.error(t, "'\(t.text)' where a field, macro or '(' was expected") }
        let op = peek
        let isOperator = (op.kind == .symbol && Self.operators.contains(op.text)) || (op.kind == .word && Self.operators.contains(op.text))
        guard isOperator else { return .name(t) }
        _ = next()
        switch op.text {
        case "exists":
            return .comparison(field: t, op: op, values: [])
        case "in":
            let open = next()
            if open.kind == .word { return .comparison(field: t, op: op, values: [.literal(open)]) }  // in LIST
            guard open.kind == .symbol, open.text == "(" else { throw source.error(open, "expected '(' or a list name after in") }
            var values: [Condition.Value] = []
            if peek.kind == .symbol, peek.text == ")" { throw source.error(peek, "empty list after in") }
            while true {
                values.append(try value())
                let sep = next()
                if sep.kind == .symbol, sep.text == ")" { break }
                guard sep.kind == .symbol, sep.text == "," else { throw source.error(sep, "expected ',' or ')' in the list after in") }
            }
            return .comparison(field: t, op: op, values: values)
        default:
            return .comparison(field: t, op: op, values: [try value()])
        }
    }

    private mutating func value() throws -> Condition.Value {
        let t = next()
        switch t.kind {
        case .word, .string:
            return .literal(t)
        case .reference:
            let dot = t.text.firstIndex(of: ".")!
            return .reference(step: String(t.text[..<dot]), field: String(t.text[t.text.index(after: dot)...]), at: t)
        case .symbol, .end:
            throw source.error(t, t.kind == .end ? "the condition ends where a value was expected" : "expected a value, found '\(t.text)'")
        }
    }
}
