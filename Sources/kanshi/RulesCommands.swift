import ArgumentParser
import Foundation
import KanshiRules

struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Alerts on sequences of behaviour: check logs and journals against rules, list and validate rules.",
        discussion: """
            Rules are YAML (format in README.md, "Rules"): lists, macros, exceptions, and rules of three \
            shapes: a condition on one event, a sequence of steps by the same key within a time span \
            (later steps can refer to earlier ones: $read.path), and a count or distinct count over a \
            window. Without --rules the built-in set is used (kanshi rules show prints it). The same \
            rules run live: kanshi trace --rules, kanshi sandbox run --rules, kanshi disk serve --rules.
            """,
        subcommands: [RulesCheck.self, RulesValidate.self, RulesList.self, RulesFields.self, RulesShow.self])
}

/// Which rules: a file, or the built-in set.
struct RulesFileOption: ParsableArguments {
    @Option(help: ArgumentHelp("Rules file (YAML); default: the built-in set.", valueName: "file"))
    var rules: String?

    func load() throws -> RuleSet { try Self.load(rules) }

    /// A rules file, or the built-in set for nil; a bad file is refused with FILE:LINE:COLUMN.
    static func load(_ path: String?) throws -> RuleSet {
        do {
            return try path.map { try RuleSet.load(path: $0) } ?? RuleSet.builtin()
        } catch let e as RuleError {
            throw CLIError("\(e)")
        }
    }
}

/// Where alerts go besides standard output.
struct AlertSinkOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Append alerts (JSON lines) to this file as well.", valueName: "file"))
    var alerts: String?
    @Option(help: ArgumentHelp("POST each alert (JSON) to this http:// URL; retried, never blocks the sensor.", valueName: "url"))
    var webhook: String?
    @Flag(help: "Send each alert to the system log as well (facility user; level from the severity).")
    var syslog = false

    func sinks(standardOutput: Bool, standardError: Bool = false) throws -> AlertFanout {
        var s: [AlertSink] = standardOutput ? [StreamSink()] : []
        if standardError { s.append(StreamSink(.standardError, name: "standard error")) }
        do {
            if let alerts { s.append(try FileSink(path: alerts)) }
            if let webhook { s.append(try WebhookSink(url: webhook)) }
        } catch { throw CLIError("\(error)") }
        if syslog { s.append(SyslogSink()) }
        return AlertFanout(s) { Output.error("rules: \($0)") }
    }
}

struct RulesCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Run rules over a behaviour log or a journal; alerts as JSON lines on standard output.",
        discussion: """
            Examples:
              kanshi rules check --log run.jsonl
              kanshi rules check --rules mine.yaml --journal .build/sandbox/runs/demo.journal --alerts alerts.jsonl
            Each alert carries the rule, severity, tags, key, output text and its evidence: the matched \
            events' seq numbers (and, in a journal, segment and offset). A summary goes to standard error. \
            Exit status 0 with no alert, 3 when any rule fired.
            """)

    @OptionGroup var rulesFile: RulesFileOption
    @Option(help: ArgumentHelp("A behaviour log (JSON lines of kanshi trace or the VM sensor).", valueName: "file"))
    var log: String?
    @Option(help: ArgumentHelp("A journal directory (block records and notes).", valueName: "dir"))
    var journal: String?
    @Option(help: ArgumentHelp("A confidential file or directory (repeatable): the protected predicate.", valueName: "path"))
    var protect: [String] = []
    @OptionGroup var sinks: AlertSinkOptions
    @Flag(help: "Print the summary as JSON on standard error.")
    var jsonSummary = false
    @Flag(help: "No summary.")
    var quiet = false

    func validate() throws {
        if (log == nil) == (journal == nil) { throw ValidationError("give --log FILE or --journal DIR (one of them)") }
    }

    func run() throws {
        let set = try rulesFile.load()
        let engine = RuleEngine(set, world: RuleWorld(protected: protect))
        let fanout = try sinks.sinks(standardOutput: true)
        var byRule: [String: Int] = [:]
        let start = DispatchTime.now().uptimeNanoseconds
        // Progress on a terminal, every 2 s of a long check.
        let terminal = isatty(2) != 0 && !quiet
        var nextProgress = start + 2_000_000_000
        var seen = 0, alerts = 0
        do {
            let send: (RuleAlert) -> Void = { a in byRule[a.rule, default: 0] += 1; alerts += 1; fanout.send(a) }
            let progress: () -> Void = {
                seen += 1
                guard terminal, seen % 65_536 == 0 else { return }
                let now = DispatchTime.now().uptimeNanoseconds
                guard now >= nextProgress else { return }
                nextProgress = now + 2_000_000_000
                Output.error("rules: \(seen) events, \(alerts) alert(s) so far")
            }
            if let log { try RuleRun.run(log: log, engine: engine, progress: progress, send) }
            if let journal { try RuleRun.run(journal: journal, engine: engine, progress: progress, send) }
        } catch {
            fanout.close()
            throw CLIError("\(error)")
        }
        fanout.close()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let s = engine.stats
        if jsonSummary {
            Output.error(try Output.json([
                "rules": set.rules.count, "origin": set.origin, "events": s.events, "examined": s.examined, "alerts": s.alerts,
                "alertsByRule": byRule, "silentMatches": s.matches, "openSequences": s.openSequences,
                "expiredSequences": s.expiredSequences, "evictedSequences": s.evictedSequences, "evictedCountKeys": s.evictedCountKeys,
                "seconds": seconds,
            ]))
        } else if !quiet {
            let fired = byRule.keys.sorted().map { "\($0) \(byRule[$0]!)" }.joined(separator: ", ")
            Output.error("rules: \(set.rules.count) from \(set.origin); \(s.events) events (\(s.examined) condition checks) in \(String(format: "%.2f", seconds)) s; \(s.alerts) alert(s)\(fired.isEmpty ? "" : ": " + fired); open sequences at the end \(s.openSequences), expired \(s.expiredSequences), evicted \(s.evictedSequences)")
        }
        if s.alerts > 0 { throw ExitCode(3) }
    }
}

struct RulesValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Read and compile rules files; print FILE:LINE:COLUMN: what is wrong, or what they hold.")

    @Argument(help: "Rules files.")
    var files: [String]

    func run() throws {
        var bad = 0
        for f in files {
            do {
                let set = try RuleSet.load(path: f)
                let shapes = Dictionary(grouping: set.rules, by: \.shapeName).mapValues(\.count)
                Output.line("\(f): \(set.rules.count) rules (\(shapes.keys.sorted().map { "\(shapes[$0]!) \($0)" }.joined(separator: ", ")))")
            } catch {
                Output.error("\(error)")
                bad += 1
            }
        }
        if bad > 0 { throw ExitCode(1) }
    }
}

struct RulesList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the rules: name, shape, severity, tags.")

    @OptionGroup var rulesFile: RulesFileOption
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let set = try rulesFile.load()
        if json {
            Output.line(try Output.json(set.rules.map { r -> [String: Any] in
                ["name": r.name, "shape": r.shapeName, "severity": r.severity.rawValue, "tags": r.tags, "silent": r.silent,
                 "actions": r.actions.map(\.rawValue), "description": r.description, "at": "\(r.position)"]
            }))
            return
        }
        for r in set.rules {
            Output.line("\(r.name)  [\(r.shapeName), \(r.silent ? "silent" : r.severity.rawValue)]  \(r.tags.joined(separator: " "))")
            if !r.description.isEmpty { Output.line("    \(r.description.trimmingCharacters(in: .whitespacesAndNewlines))") }
        }
    }
}

struct RulesFields: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fields", abstract: "The fields a condition can use.")

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let fields = RuleFieldCatalog.all
        if json {
            Output.line(try Output.json(fields.map { ["name": $0.name, "type": $0.type, "description": $0.help] }))
            return
        }
        for f in fields { Output.line("\(f.name.padding(toLength: 14, withPad: " ", startingAt: 0)) \(f.type.padding(toLength: 15, withPad: " ", startingAt: 0)) \(f.help)") }
    }
}

struct RulesShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the built-in rules (YAML), to start a rules file from.")

    func run() throws { Output.line(BuiltinRules.yaml) }
}
