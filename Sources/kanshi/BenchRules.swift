import ArgumentParser
import Foundation
import KanshiRules
import KanshiSystem
import KanshiTrace

struct BenchRules: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Events per second through a rule set on one core, and memory as open sequences pile up.",
        discussion: """
            The logs are read once; their events are repeated (shifted in time, pids moved apart) \
            to --events, then fed to a fresh engine each round on this thread. Then one engine takes \
            creations of new files that nothing completes, each opening sequences, and resident \
            memory is printed as they grow past the limit (--open-limit per rule, the oldest evicted). \
            scripts/bench-rules.sh records the logs and runs peers on the same log beside this.
            """)

    @Option(help: ArgumentHelp("Behaviour logs to replay (repeatable).", valueName: "file"))
    var log: [String]
    @OptionGroup var rulesFile: RulesFileOption
    @Option(help: "Events to replay (the logs repeated).")
    var events: Int = 10_000_000
    @Option(help: "Rounds; the median is reported.")
    var rounds: Int = 3
    @Option(help: "Open sequences kept per rule (the engine's limit) for the memory part.")
    var openLimit: Int = RuleEngine.Limits().openSequences
    @Option(help: "Events of the memory part (each opens a sequence).")
    var memoryEvents: Int = 2_000_000
    @Flag(help: "Also time each alerting rule alone (with the silent rules it counts) over the same events: what each costs per event above the engine's own cost.")
    var perRule = false
    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if log.isEmpty { throw ValidationError("give at least one --log") }
        if events < 1 || rounds < 1 || openLimit < 2 || memoryEvents < 1 { throw ValidationError("--events, --rounds, --memory-events must be positive, --open-limit at least 2") }
    }

    func run() throws {
        let set = try rulesFile.load()
        // Memory first, before the replayed stream takes its own.
        var limits = RuleEngine.Limits()
        limits.openSequences = openLimit
        let marks = [memoryEvents / 20, memoryEvents / 10, memoryEvents / 4, memoryEvents / 2, memoryEvents].filter { $0 > 0 }
        let memory = RuleBench.openSequenceMemory(set, limits: limits, marks: marks)
        var recorded: [TraceEvent] = []
        let t0 = FileSystem.monotonicNs()
        do {
            for l in log { try BehaviourLogReader.read(path: l) { recorded.append($0) } }
        } catch { throw CLIError("\(error)") }
        let parseSeconds = Double(FileSystem.monotonicNs() - t0) / 1e9
        guard !recorded.isEmpty else { throw CLIError("the logs hold no events") }
        // In time order across logs (each log's own order kept).
        recorded.sort { $0.time < $1.time }
        let stream = RuleBench.replicate(recorded, to: events)
        if !json { Output.error("bench: \(recorded.count) events read from \(log.count) log(s) in \(String(format: "%.2f", parseSeconds)) s; replaying \(stream.count) events, \(rounds) round(s)") }
        var times: [Double] = []
        var last: (seconds: Double, stats: RuleEngine.Stats, alerts: Int)?
        for r in 0..<rounds {
            let x = RuleBench.time(set, stream)
            times.append(x.seconds)
            last = x
            if !json { Output.error(String(format: "bench: round %d: %.3f s, %.2f M events/s", r + 1, x.seconds, Double(stream.count) / x.seconds / 1e6)) }
        }
        let median = times.sorted()[times.count / 2]
        let s = last!.stats
        let costs = perRule ? RuleBench.perRule(set, stream, rounds: rounds) : nil
        if json {
            Output.line(try Output.json([
                "rules": set.rules.count, "origin": set.origin, "recordedEvents": recorded.count, "parseSeconds": parseSeconds,
                "parseEventsPerSecond": Double(recorded.count) / parseSeconds,
                "events": stream.count, "rounds": times, "medianSeconds": median, "eventsPerSecond": Double(stream.count) / median,
                "conditionChecksPerEvent": Double(s.examined) / Double(s.events), "alerts": last!.alerts,
                "openSequencesAtEnd": s.openSequences, "expired": s.expiredSequences, "evicted": s.evictedSequences,
                "openLimitPerRule": openLimit,
                "memory": memory.map { ["events": $0.events, "openSequences": $0.open, "evicted": $0.evicted, "residentBytes": $0.resident] },
                "perRule": costs.map { c in
                    ["baseNsPerEvent": c.base / Double(stream.count) * 1e9,
                     "rules": c.rules.map { ["rule": $0.rule, "nsPerEvent": $0.seconds / Double(stream.count) * 1e9] }] as [String: Any]
                } as Any,
            ]))
            return
        }
        Output.line("rules: \(set.rules.count) (\(set.origin)); \(stream.count) events from \(recorded.count) recorded (\(log.count) logs)")
        Output.line(String(format: "log parsing (JSON lines): %.2f M events/s", Double(recorded.count) / parseSeconds / 1e6))
        Output.line(String(format: "rule engine, one core:    %.2f M events/s (median of %d: %.3f s), %.2f condition checks per event, %d alerts",
                           Double(stream.count) / median / 1e6, rounds, median, Double(s.examined) / Double(s.events), last!.alerts))
        Output.line("open sequences at the end: \(s.openSequences); expired \(s.expiredSequences), evicted \(s.evictedSequences)")
        Output.line("memory as open sequences pile up within their windows (limit \(openLimit) per rule; past it the oldest go, down to half):")
        let base = memory.first?.resident ?? 0
        for m in memory {
            Output.line("  \(String(m.events).padding(toLength: 9, withPad: " ", startingAt: 0)) events: \(String(m.open).padding(toLength: 8, withPad: " ", startingAt: 0)) open, \(String(m.evicted).padding(toLength: 9, withPad: " ", startingAt: 0)) evicted, resident \(Output.bytes(m.resident)) (+\(Output.bytes(m.resident > base ? m.resident - base : 0)))")
        }
        if let c = costs {
            let n = Double(stream.count)
            Output.line(String(format: "each rule alone (medians of %d; with the silent rules it counts), ns per event above the engine's own %.0f ns:", rounds, c.base / n * 1e9))
            for r in c.rules.sorted(by: { $0.seconds > $1.seconds }) {
                Output.line("  \(r.rule.padding(toLength: 48, withPad: " ", startingAt: 0)) \(String(format: "%6.0f", r.seconds / n * 1e9))")
            }
        }
    }
}
