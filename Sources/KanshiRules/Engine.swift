import KanshiTrace

/// Runs a rule set over events in order, live or offline alike: each event goes to the rules
/// whose conditions can match its kind; sequences and counts keep their open state per key.
///
/// Memory is bounded: a sequence keeps at most one open match per rule, step and key (the
/// earliest, until it expires), and at most `limits.openSequences` per rule; a count keeps
/// at most its threshold of events per key and `limits.countKeys` keys per rule. Past the
/// limits the oldest go first; expired and evicted state is counted in `stats`. A count rule
/// fires at most once per key and window: while its key keeps counting it stays quiet.
public final class RuleEngine {
    public struct Limits: Sendable {
        /// Open (partial) sequences per rule.
        public var openSequences = 100_000
        /// Keys of a count rule.
        public var countKeys = 100_000
        public init() {}
    }

    public struct Stats: Sendable {
        public var events = 0
        /// Rule conditions evaluated.
        public var examined = 0
        public var alerts = 0
        /// Silent rules' matches (fed back as events).
        public var matches = 0
        public var openSequences = 0
        public var expiredSequences = 0
        public var evictedSequences = 0
        public var evictedCountKeys = 0
        /// Counts that reached their threshold within a window of their key's last alert (no new alert).
        public var quietCounts = 0
    }

    public let ruleSet: RuleSet
    public let world: RuleWorld
    public let limits: Limits
    public private(set) var stats = Stats()

    private var byKind: [String: [Int]] = [:]
    private var anyKind: [Int] = []
    private var sequences: [SequenceState]
    private var counts: [CountState]

    final class Partial {
        var bound: [RuleEvent]
        let startNs: UInt64
        init(bound: [RuleEvent], startNs: UInt64) { self.bound = bound; self.startNs = startNs }
    }

    /// Open sequences of one rule: `waiting[k][key]` waits for step k.
    struct SequenceState {
        var waiting: [[String: Partial]]
        var open = 0
    }

    struct CountEntry { var time: UInt64; var value: String?; var evidence: [Evidence]; var event: RuleEvent }

    struct CountState {
        var keys: [String: [CountEntry]] = [:]
        /// When each key last fired: a key fires at most once per window.
        var fired: [String: UInt64] = [:]
    }

    public init(_ ruleSet: RuleSet, world: RuleWorld = RuleWorld(), limits: Limits = Limits()) {
        self.ruleSet = ruleSet
        self.world = world
        self.limits = limits
        sequences = ruleSet.rules.map { r in
            if case .sequence(let s) = r.shape { return SequenceState(waiting: Array(repeating: [:], count: s.steps.count)) }
            return SequenceState(waiting: [])
        }
        counts = ruleSet.rules.map { _ in CountState() }
        for (i, r) in ruleSet.rules.enumerated() {
            if let k = r.kinds { for kind in k { byKind[kind, default: []].append(i) } } else { anyKind.append(i) }
        }
    }

    /// Takes a behaviour event (the process table and managed files are updated first).
    public func add(_ e: TraceEvent) -> [RuleAlert] {
        add(RuleEvent(e))
    }

    /// Takes one event; returns the alerts it completes, in rule order.
    public func add(_ e: RuleEvent) -> [RuleAlert] {
        stats.events += 1
        if let t = e.trace, e.source == .behaviour { world.add(t) }
        var alerts: [RuleAlert] = []
        dispatch(e, into: &alerts, depth: 0)
        stats.alerts += alerts.count
        return alerts
    }

    private func dispatch(_ e: RuleEvent, into alerts: inout [RuleAlert], depth: Int) {
        let specific = byKind[e.kind] ?? []
        if anyKind.isEmpty {
            for i in specific { run(i, e, &alerts, depth) }
        } else {
            for i in (specific + anyKind).sorted() { run(i, e, &alerts, depth) }
        }
    }

    private func run(_ i: Int, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        let r = ruleSet.rules[i]
        switch r.shape {
        case .single(let p):
            stats.examined += 1
            if p(e, world, []) { fire(i, last: e, steps: [e], evidence: [e.asEvidence], key: [:], count: nil, into: &alerts, depth: depth) }
        case .sequence(let s):
            sequence(i, s, e, &alerts, depth)
        case .count(let c):
            count(i, c, e, &alerts, depth)
        }
    }

    private func sequence(_ i: Int, _ s: SequenceSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        let last = s.steps.count - 1
        // Later steps first, so one event does not carry a sequence over two steps.
        for k in stride(from: last, through: 0, by: -1) {
            let step = s.steps[k]
            if k == 0 {
                stats.examined += 1
                guard step.predicate(e, world, []) else { continue }
                let key = s.by.value(e, world) + "\u{2}" + step.join.value(e, world)
                if let old = sequences[i].waiting[1][key], e.time &- old.startNs <= s.withinNs { continue }  // the earliest stays
                if sequences[i].waiting[1].updateValue(Partial(bound: [e], startNs: e.time), forKey: key) == nil {
                    sequences[i].open += 1
                    stats.openSequences += 1
                    if sequences[i].open > limits.openSequences { prune(i, s, now: e.time) }
                } else {
                    stats.expiredSequences += 1
                }
                continue
            }
            guard !sequences[i].waiting[k].isEmpty else { continue }
            let key = s.by.value(e, world) + "\u{2}" + step.join.value(e, world)
            guard let p = sequences[i].waiting[k][key] else { continue }
            if e.time &- p.startNs > s.withinNs {
                sequences[i].waiting[k][key] = nil
                sequences[i].open -= 1
                stats.openSequences -= 1
                stats.expiredSequences += 1
                continue
            }
            stats.examined += 1
            guard step.predicate(e, world, p.bound) else { continue }
            sequences[i].waiting[k][key] = nil
            p.bound.append(e)
            if k == last {
                sequences[i].open -= 1
                stats.openSequences -= 1
                fire(i, last: e, steps: p.bound, evidence: p.bound.flatMap(Self.evidence), key: s.by.described(e, world), count: nil,
                     into: &alerts, depth: depth)
            } else if let old = sequences[i].waiting[k + 1][key], e.time &- old.startNs <= s.withinNs {
                sequences[i].open -= 1  // one further on already: the earlier one stays
                stats.openSequences -= 1
            } else {
                if sequences[i].waiting[k + 1].updateValue(p, forKey: key) != nil {
                    sequences[i].open -= 1
                    stats.openSequences -= 1
                }
            }
        }
    }

    /// Drops expired open sequences of rule `i`, then the oldest half if still over the limit.
    private func prune(_ i: Int, _ s: SequenceSpec, now: UInt64) {
        var all: [(Int, String, UInt64)] = []
        for (k, w) in sequences[i].waiting.enumerated() {
            for (key, p) in w {
                if now &- p.startNs > s.withinNs {
                    sequences[i].waiting[k][key] = nil
                    stats.expiredSequences += 1
                } else {
                    all.append((k, key, p.startNs))
                }
            }
        }
        if all.count > limits.openSequences / 2 {
            all.sort { $0.2 < $1.2 }
            let drop = all.count - limits.openSequences / 2
            for (k, key, _) in all.prefix(drop) { sequences[i].waiting[k][key] = nil }
            stats.evictedSequences += drop
            all.removeFirst(drop)
        }
        stats.openSequences += all.count - sequences[i].open
        sequences[i].open = all.count
    }

    private static func evidence(_ e: RuleEvent) -> [Evidence] { e.source == .match ? e.evidence : [e.asEvidence] }

    private func count(_ i: Int, _ c: CountSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        stats.examined += 1
        switch c.counted {
        case .events(let p): guard p(e, world, []) else { return }
        case .matches(let rule): guard e.source == .match, e.rule == rule else { return }
        }
        let key = c.by.value(e, world)
        let value = c.distinct.map { Fields.text($0.getter, e, world) ?? "" }
        var entries = counts[i].keys[key] ?? []
        if entries.isEmpty, counts[i].keys.count >= limits.countKeys { evictCountKeys(i, c, now: e.time) }
        // The window: entries older than it go.
        if let first = entries.first, e.time &- first.time > c.windowNs {
            entries.removeAll { e.time &- $0.time > c.windowNs }
        }
        if let value, let old = entries.firstIndex(where: { $0.value == value }) { entries.remove(at: old) }
        entries.append(CountEntry(time: e.time, value: value, evidence: Self.evidence(e), event: e))
        if entries.count >= c.threshold {
            if let f = counts[i].fired[key], e.time &- f <= c.windowNs {
                // Alerted on this key within the window: quiet, the newest events kept for the next alert.
                entries.removeFirst(entries.count - (c.threshold - 1))
                counts[i].keys[key] = entries
                stats.quietCounts += 1
                return
            }
            counts[i].keys[key] = nil
            counts[i].fired[key] = e.time
            fire(i, last: e, steps: [e], evidence: entries.flatMap(\.evidence), key: c.by.described(e, world), count: entries.count,
                 into: &alerts, depth: depth)
        } else {
            counts[i].keys[key] = entries
        }
    }

    private func evictCountKeys(_ i: Int, _ c: CountSpec, now: UInt64) {
        let before = counts[i].keys.count
        counts[i].keys = counts[i].keys.filter { now &- ($0.value.last?.time ?? 0) <= c.windowNs }
        counts[i].fired = counts[i].fired.filter { now &- $0.value <= c.windowNs }
        if counts[i].keys.count >= limits.countKeys {
            let keep = counts[i].keys.sorted { ($0.value.last?.time ?? 0) > ($1.value.last?.time ?? 0) }.prefix(limits.countKeys / 2)
            counts[i].keys = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        stats.evictedCountKeys += before - counts[i].keys.count
    }

    private func fire(_ i: Int, last: RuleEvent, steps: [RuleEvent], evidence: [Evidence], key: [String: String], count: Int?,
                      into alerts: inout [RuleAlert], depth: Int) {
        let r = ruleSet.rules[i]
        var seen: Set<Evidence> = []
        let unique = evidence.filter { seen.insert($0).inserted }.sorted { ($0.time, $0.seq ?? 0, $0.offset ?? 0) < ($1.time, $1.seq ?? 0, $1.offset ?? 0) }
        if r.silent {
            stats.matches += 1
            guard depth < 8 else { return }
            var m = last
            m.source = .match
            m.kind = "match"
            m.rule = r.name
            m.evidence = unique
            dispatch(m, into: &alerts, depth: depth + 1)
            return
        }
        var windowNs: UInt64?
        if case .count(let c) = r.shape { windowNs = c.windowNs }
        let output = r.output.render(last: last, steps: steps, count: count, windowNs: windowNs, world: world)
        alerts.append(RuleAlert(rule: r.name, severity: r.severity, tags: r.tags, time: last.time, key: key, output: output,
                            actions: r.actions, evidence: unique, pid: last.trace?.pid, vm: last.trace?.vm, count: count))
    }
}
