/// What follows `kanshi trace`'s own options on its command line (everything
/// from the first word that is not one of them): a request for help, a program
/// to run, or nothing.
///
/// `kanshi trace --help` and `-h` ask for help; `kanshi trace -- --help` runs a
/// program named `--help`; after the program's name, every word is its own.
public enum TraceCommandLine: Equatable, Sendable {
    case help
    case program(String, arguments: [String])
    case none

    /// Classifies the words the command captured for passthrough.
    public init(passthrough words: [String]) {
        if words.first == "--" {
            let rest = words.dropFirst()
            if let program = rest.first { self = .program(program, arguments: Array(rest.dropFirst())) } else { self = .none }
            return
        }
        guard let first = words.first else { self = .none; return }
        if first == "--help" || first == "-h" { self = .help; return }
        self = .program(first, arguments: Array(words.dropFirst()))
    }

    /// The target to trace, if a program was given.
    public var target: TraceTarget? {
        if case .program(let program, let arguments) = self { return .spawn(program: program, arguments: arguments) }
        return nil
    }
}
