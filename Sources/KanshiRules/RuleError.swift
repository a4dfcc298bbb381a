/// A place in a rules file: 1-based line and column.
public struct SourcePosition: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file; self.line = line; self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// What is wrong with a rules file, and where: `FILE:LINE:COLUMN: what is wrong`.
public struct RuleError: Error, Sendable, CustomStringConvertible {
    public var position: SourcePosition
    public var message: String

    public init(_ position: SourcePosition, _ message: String) {
        self.position = position; self.message = message
    }

    public var description: String { "\(position): \(message)" }
}

/// A problem with what the rules run on (a log or a journal) or with a sink.
public struct RulesRunError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
