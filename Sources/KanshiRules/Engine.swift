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
    /// What the engine has done so far, with the sequences open now.
    public var stats: Stats {
        var s = counters
        s.openSequences = sequences.reduce(0) { $0 + $1.open }
        return s
    }
    private var counters = Stats()

    /// The rules each event kind goes to (by `EventKinds` number), in rule order: kind k's are
    /// `kindRules[kindStart[k]..<kindStart[k + 1]]` (flat, read with no reference counting).
    private let kindStart: UnsafeMutablePointer<Int>
    private let kindRules: UnsafeMutablePointer<Int>
    /// Each rule's shape, unpacked (the condition, or the sequence, or the count).
    private final class Runner {
        let single: Predicate?
        let sequence: SequenceSpec?
        let count: CountSpec?
        init(_ shape: Rule.Shape) {
            switch shape {
            case .single(let p): single = p; sequence = nil; count = nil
            case .sequence(let s): single = nil; sequence = s; count = nil
            case .count(let c): single = nil; sequence = nil; count = c
            }
        }
    }
    private let runners: [Runner]
    private let runnerRefs: UnsafeMutablePointer<Unmanaged<Runner>>
    private let silent: [Bool]
    private var sequences: [SequenceState]
    private var counts: [CountState]

    final class Partial {
        var bound: [RuleEvent]
        let startNs: UInt64
        init(bound: [RuleEvent], startNs: UInt64) { self.bound = bound; self.startNs = startNs }
    }

    /// Open sequences of one rule: `waiting[k][key]` waits for step k.
    struct SequenceState {
        var waiting: [[EventKey: Partial]]
        /// When expired sequences were last swept out (event time).
        var lastSweepNs: UInt64 = 0
        var open: Int { waiting.reduce(0) { $0 + $1.count } }
    }

    struct CountEntry { var time: UInt64; var value: String?; var evidence: [Evidence] }

    struct CountState {
        var keys: [EventKey: [CountEntry]] = [:]
        /// When each key last fired: a key fires at most once per window.
        var fired: [EventKey: UInt64] = [:]
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
        runners = ruleSet.rules.map { Runner($0.shape) }
        runnerRefs = .allocate(capacity: max(runners.count, 1))
        runnerRefs.initialize(from: runners.map { Unmanaged.passUnretained($0) }, count: runners.count)
        silent = ruleSet.rules.map(\.silent)
        var byKind: [[Int]] = Array(repeating: [], count: EventKinds.all.count)
        for (i, r) in ruleSet.rules.enumerated() {
            let mask = r.kinds.map(EventKinds.mask) ?? .max
            for k in byKind.indices where mask & (UInt64(1) << UInt64(k)) != 0 { byKind[k].append(i) }
        }
        kindStart = .allocate(capacity: byKind.count + 1)
        let flat = byKind.flatMap { $0 }
        kindRules = .allocate(capacity: max(flat.count, 1))
        kindRules.initialize(from: flat, count: flat.count)
        var at = 0
        for (k, list) in byKind.enumerated() { kindStart[k] = at; at += list.count }
        kindStart[byKind.count] = at
        // Steps whose full key names the same fields share a slot.
        var slots: [String: Int] = [:]
        keySlot = ruleSet.rules.map { r in
            guard case .sequence(let s) = r.shape else { return [] }
            return s.steps.map { step in
                let id = (s.by.names + ["|"] + step.join.names).joined(separator: "\u{1}")
                if let n = slots[id] { return n }
                slots[id] = slots.count
                return slots.count - 1
            }
        }
        keyCache = Array(repeating: (0, EventKey()), count: slots.count)
    }

    deinit {
        kindStart.deallocate()
        kindRules.deallocate()
        runnerRefs.deallocate()
    }

    /// The event being looked at, reused from one behaviour event to the next (a sequence
    /// that keeps it keeps a copy).
    private let scratch = RuleEvent(TraceEvent(kind: .notice))

    /// Takes a behaviour event (the process table and managed files are updated first).
    public func add(_ e: consuming TraceEvent) -> [RuleAlert] {
        scratch.reuse(e)
        return add(scratch)
    }

    /// Takes one event; returns the alerts it completes, in rule order.
    public func add(_ e: RuleEvent) -> [RuleAlert] {
        counters.events += 1
        if e.source == .behaviour { world.add(e) }
        var alerts: [RuleAlert] = []
        dispatch(e, into: &alerts, depth: 0)
        counters.alerts += alerts.count
        return alerts
    }

    /// Full keys (the sequence's `by` and the step's join) computed for the event being
    /// dispatched, shared by the steps and rules that key alike: `keySlot[rule][step]` is its
    /// place in `keyCache`, valid while `keyGeneration` is the one it was made in.
    private var keySlot: [[Int]] = []
    private var keyCache: [(generation: UInt64, key: EventKey)] = []
    private var keyGeneration: UInt64 = 0

    private func fullKey(_ i: Int, _ k: Int, _ s: SequenceSpec, _ e: RuleEvent) -> EventKey {
        let slot = keySlot[i][k]
        if keyCache[slot].generation == keyGeneration { return keyCache[slot].key }
        var key = s.by.key(e, world)
        s.steps[k].join.add(e, world, to: &key)
        keyCache[slot] = (keyGeneration, key)
        return key
    }

    private func dispatch(_ e: RuleEvent, into alerts: inout [RuleAlert], depth: Int) {
        keyGeneration &+= 1
        var j = kindStart[e.kindIndex]
        let end = kindStart[e.kindIndex + 1]
        while j < end {
            let i = kindRules[j]
            runnerRefs[i]._withUnsafeGuaranteedRef { run(i, $0, e, &alerts, depth) }
            j += 1
        }
    }

    private func run(_ i: Int, _ r: Runner, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        if let p = r.single {
            counters.examined += 1
            if p(e, world, []) { fire(i, last: e, steps: [e], evidence: [e.asEvidence], key: [:], count: nil, into: &alerts, depth: depth) }
        } else if let s = r.sequence {
            sequence(i, s, e, &alerts, depth)
        } else if let c = r.count {
            count(i, c, e, &alerts, depth)
        }
    }

    private func sequence(_ i: Int, _ s: SequenceSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        let last = s.steps.count - 1
        // Later steps first, so one event does not carry a sequence over two steps.
        let bit = UInt64(1) << UInt64(e.kindIndex)
        // Expired sequences go once a window of event time has passed (and when over the limit).
        if e.time &- sequences[i].lastSweepNs > s.withinNs, sequences[i].open > 0 { prune(i, s, now: e.time) }
        for k in stride(from: last, through: 0, by: -1) {
            let step = s.steps[k]
            guard step.kinds & bit != 0 else { continue }
            if k == 0 {
                counters.examined += 1
                guard step.predicate(e, world, []) else { continue }
                let key = fullKey(i, k, s, e)
                if let at = sequences[i].waiting[1].index(forKey: key) {
                    // The earliest stays, until it expires.
                    guard e.time &- sequences[i].waiting[1].values[at].startNs > s.withinNs else { continue }
                    sequences[i].waiting[1].values[at] = Partial(bound: [e.kept()], startNs: e.time)
                    counters.expiredSequences += 1
                    continue
                }
                sequences[i].waiting[1][key] = Partial(bound: [e.kept()], startNs: e.time)
                if sequences[i].open > limits.openSequences { prune(i, s, now: e.time) }
                continue
            }
            guard !sequences[i].waiting[k].isEmpty else { continue }
            let key = fullKey(i, k, s, e)
            guard let p = sequences[i].waiting[k][key] else { continue }
            if e.time &- p.startNs > s.withinNs {
                sequences[i].waiting[k][key] = nil
                counters.expiredSequences += 1
                continue
            }
            counters.examined += 1
            guard step.predicate(e, world, p.bound) else { continue }
            sequences[i].waiting[k][key] = nil
            p.bound.append(e.kept())
            if k == last {
                fire(i, last: e, steps: p.bound, evidence: p.bound.flatMap(Self.evidence), key: s.by.described(e, world), count: nil,
                     into: &alerts, depth: depth)
            } else if let old = sequences[i].waiting[k + 1][key], e.time &- old.startNs <= s.withinNs {
                // One further on already: the earlier one stays, this one ends.
            } else {
                sequences[i].waiting[k + 1][key] = p
            }
        }
    }

    /// Drops expired open sequences of rule `i`, then (over the limit) the oldest down to half of it.
    private func prune(_ i: Int, _ s: SequenceSpec, now: UInt64) {
        sequences[i].lastSweepNs = now
        var kept = 0
        for k in sequences[i].waiting.indices where !sequences[i].waiting[k].isEmpty {
            let before = sequences[i].waiting[k].count
            sequences[i].waiting[k] = sequences[i].waiting[k].filter { now &- $0.value.startNs <= s.withinNs }
            counters.expiredSequences += before - sequences[i].waiting[k].count
            kept += sequences[i].waiting[k].count
        }
        if kept > limits.openSequences {
            var starts: [UInt64] = []
            starts.reserveCapacity(kept)
            for w in sequences[i].waiting { for p in w.values { starts.append(p.startNs) } }
            starts.sort()
            let cutoff = starts[kept - limits.openSequences / 2]
            for k in sequences[i].waiting.indices where !sequences[i].waiting[k].isEmpty {
                let before = sequences[i].waiting[k].count
                sequences[i].waiting[k] = sequences[i].waiting[k].filter { $0.value.startNs >= cutoff }
                counters.evictedSequences += before - sequences[i].waiting[k].count
            }
        }
    }

    private static func evidence(_ e: RuleEvent) -> [Evidence] { e.source == .match ? e.evidence : [e.asEvidence] }

    private func count(_ i: Int, _ c: CountSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        counters.examined += 1
        switch c.counted {
        case .events(let p): guard p(e, world, []) else { return }
        case .matches(let rule): guard e.source == .match, e.rule == rule else { return }
        }
        let key = c.by.key(e, world)
        let value = c.distinct.map { Fields.text($0.getter, e, world) ?? "" }
        if counts[i].keys[key] == nil, counts[i].keys.count >= limits.countKeys { evictCountKeys(i, c, now: e.time) }
        let entry = CountEntry(time: e.time, value: value, evidence: Self.evidence(e))
        // The key's entries are changed where they are (a copy out of the dictionary would be copied again).
        func add(_ entries: inout [CountEntry]) -> Int {
            // The window: entries older than it go.
            if let first = entries.first, e.time &- first.time > c.windowNs {
                entries.removeAll { e.time &- $0.time > c.windowNs }
            }
            if let value, let old = entries.firstIndex(where: { $0.value == value }) { entries.remove(at: old) }
            entries.append(entry)
            return entries.count
        }
        let n = add(&counts[i].keys[key, default: []])
        guard n >= c.threshold else { return }
        if let f = counts[i].fired[key], e.time &- f <= c.windowNs {
            // Alerted on this key within the window: quiet, the newest events kept for the next alert.
            counts[i].keys[key]!.removeFirst(n - (c.threshold - 1))
            counters.quietCounts += 1
            return
        }
        let entries = counts[i].keys.removeValue(forKey: key) ?? []
        counts[i].fired[key] = e.time
        fire(i, last: e, steps: [e], evidence: entries.flatMap(\.evidence), key: c.by.described(e, world), count: entries.count,
             into: &alerts, depth: depth)
    }

    private func evictCountKeys(_ i: Int, _ c: CountSpec, now: UInt64) {
        let before = counts[i].keys.count
        counts[i].keys = counts[i].keys.filter { now &- ($0.value.last?.time ?? 0) <= c.windowNs }
        counts[i].fired = counts[i].fired.filter { now &- $0.value <= c.windowNs }
        if counts[i].keys.count >= limits.countKeys {
            let keep = counts[i].keys.sorted { ($0.value.last?.time ?? 0) > ($1.value.last?.time ?? 0) }.prefix(limits.countKeys / 2)
            counts[i].keys = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
        }
        counters.evictedCountKeys += before - counts[i].keys.count
    }

    private func fire(_ i: Int, last: RuleEvent, steps: [RuleEvent], evidence: [Evidence], key: [String: String], count: Int?,
                      into alerts: inout [RuleAlert], depth: Int) {
        // In order; the same event twice (one event in two steps or counted twice) once.
        let sorted = evidence.count < 2 ? evidence : evidence.sorted { ($0.time, $0.seq ?? 0, $0.offset ?? 0) < ($1.time, $1.seq ?? 0, $1.offset ?? 0) }
        var unique: [Evidence] = []
        unique.reserveCapacity(sorted.count)
        for x in sorted {
            var j = unique.count - 1
            while j >= 0, unique[j].time == x.time, unique[j] != x { j -= 1 }
            if j < 0 || unique[j].time != x.time { unique.append(x) }
        }
        if silent[i] {
            counters.matches += 1
            guard depth < 8 else { return }
            dispatch(RuleEvent(match: ruleSet.rules[i].name, last: last, evidence: unique), into: &alerts, depth: depth + 1)
            keyGeneration &+= 1  // the keys cached were the match's, not this event's
            return
        }
        let r = ruleSet.rules[i]
        var windowNs: UInt64?
        if case .count(let c) = r.shape { windowNs = c.windowNs }
        let output = r.output.render(last: last, steps: steps, count: count, windowNs: windowNs, world: world)
        alerts.append(RuleAlert(rule: r.name, severity: r.severity, tags: r.tags, time: last.time, key: key, output: output,
                            actions: r.actions, evidence: unique, pid: last.trace?.pid, vm: last.trace?.vm, count: count))
    }
}
