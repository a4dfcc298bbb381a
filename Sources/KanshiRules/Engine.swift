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
    /// Each rule's shape, unpacked (the condition, or the sequence, or the count). Fields are
    /// read in place by kind (not bound to optionals): no reference counted per rule and event.
    private final class Runner {
        enum Kind { case single, sequence, count }
        let kind: Kind
        /// The condition of a single-event rule (never called for the others).
        let single: Predicate
        let sequence: SequenceSpec?
        let count: CountSpec?
        /// A sequence's steps, flat (`stepCount` of them; none for the other shapes).
        let steps: UnsafeMutablePointer<StepPlan>
        let stepCount: Int
        /// `sequence`, unretained (read for every event with no reference counted).
        let sequenceRef: Unmanaged<SequenceSpec>?
        init(_ shape: Rule.Shape, waiting: [KeyTable<Partial>], keySlots: [Int]) {
            switch shape {
            case .single(let p): kind = .single; single = p; sequence = nil; count = nil
            case .sequence(let s): kind = .sequence; single = { _, _, _ in false }; sequence = s; count = nil
            case .count(let c): kind = .count; single = { _, _, _ in false }; sequence = nil; count = c
            }
            let plans = sequence.map { s in
                s.steps.indices.map { k in
                    StepPlan(kinds: s.steps[k].kinds, keySlot: keySlots[k], step: .passUnretained(s.steps[k]), waiting: .passUnretained(waiting[k]))
                }
            } ?? []
            stepCount = plans.count
            sequenceRef = sequence.map { .passUnretained($0) }
            steps = .allocate(capacity: max(plans.count, 1))
            steps.initialize(from: plans, count: plans.count)
        }
        deinit { steps.deallocate() }
    }
    /// One step of a sequence rule as the engine reads it for every event: plain values and
    /// unretained references (the rule set and `sequences` keep the objects alive), so reading
    /// it retains nothing.
    private struct StepPlan {
        /// The event kinds the step can match (`SequenceSpec.Step.kinds`).
        let kinds: UInt64
        /// The step's full key's place in `keyCache`.
        let keySlot: Int
        let step: Unmanaged<SequenceSpec.Step>
        /// The open sequences waiting for this step (`SequenceState.waiting[k]`).
        let waiting: Unmanaged<KeyTable<Partial>>
    }
    private let runners: [Runner]
    private let runnerRefs: UnsafeMutablePointer<Unmanaged<Runner>>
    private let silent: [Bool]
    private var sequences: [SequenceState]
    private var counts: [CountState]

    /// Open sequences of one rule: `waiting[k]` holds, by key, those waiting for step k
    /// (`waiting[0]` stays empty: a first step opens a sequence).
    struct SequenceState {
        var waiting: [KeyTable<Partial>]
        /// When expired sequences were last swept out (event time).
        var lastSweepNs: UInt64 = 0
        var open: Int {
            var n = 0
            for t in waiting { n += t.count }
            return n
        }
    }

    /// A counted event: when, its `distinct` value (with the value's hash, compared first) and evidence.
    struct CountEntry { var time: UInt64; var value: String?; var valueHash: UInt64; var evidence: [Evidence] }

    struct CountState {
        let keys = KeyTable<[CountEntry]>()
        /// When each key last fired: a key fires at most once per window.
        let fired = KeyTable<UInt64>()
    }

    public init(_ ruleSet: RuleSet, world: RuleWorld = RuleWorld(), limits: Limits = Limits()) {
        self.ruleSet = ruleSet
        self.world = world
        self.limits = limits
        sequences = ruleSet.rules.map { r in
            if case .sequence(let s) = r.shape { return SequenceState(waiting: s.steps.map { _ in KeyTable<Partial>() }) }
            return SequenceState(waiting: [])
        }
        counts = ruleSet.rules.map { _ in CountState() }
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
        keyCache = .allocate(capacity: max(slots.count, 1))
        for n in 0..<slots.count { (keyCache + n).initialize(to: KeySlot()) }  // each its own buffer
        keySlotCount = slots.count
        let states = sequences, slotsOfRule = keySlot
        runners = ruleSet.rules.indices.map { i in
            Runner(ruleSet.rules[i].shape, waiting: states[i].waiting, keySlots: slotsOfRule[i])
        }
        runnerRefs = .allocate(capacity: max(runners.count, 1))
        runnerRefs.initialize(from: runners.map { Unmanaged.passUnretained($0) }, count: runners.count)
    }

    deinit {
        kindStart.deallocate()
        kindRules.deallocate()
        runnerRefs.deallocate()
        for n in 0..<keySlotCount { keyCache[n].key.free() }
        keyCache.deinitialize(count: keySlotCount)
        keyCache.deallocate()
        countKey.free()
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
    private let keySlot: [[Int]]
    private struct KeySlot {
        var generation: UInt64 = 0
        var key = KeyBuffer()
    }
    private let keyCache: UnsafeMutablePointer<KeySlot>
    private let keySlotCount: Int
    private var keyGeneration: UInt64 = 0
    /// A count's key, made again for each event counted.
    private var countKey = KeyBuffer()

    /// The key's bytes stay valid until the next event is dispatched (a match's included):
    /// what must outlive that copies them (`KeyTable.insert`).
    private func fullKey(_ plan: StepPlan, _ s: SequenceSpec, _ step: SequenceSpec.Step, _ e: RuleEvent) -> KeyBuffer {
        let slot = keyCache + plan.keySlot
        if slot.pointee.generation == keyGeneration { return slot.pointee.key }
        slot.pointee.key.removeAll()
        s.by.append(e, world, to: &slot.pointee.key)
        step.join.append(e, world, to: &slot.pointee.key)
        slot.pointee.key.finish()
        slot.pointee.generation = keyGeneration
        return slot.pointee.key
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
        switch r.kind {
        case .single:
            counters.examined += 1
            if r.single(e, world, Bound()) { fire(i, last: e, steps: [e], evidence: [e.asEvidence], key: [:], count: nil, into: &alerts, depth: depth) }
        case .sequence:
            sequence(i, r, e, &alerts, depth)
        case .count:
            count(i, r.count.unsafelyUnwrapped, e, &alerts, depth)
        }
    }

    private func sequence(_ i: Int, _ r: Runner, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        r.sequenceRef.unsafelyUnwrapped._withUnsafeGuaranteedRef { s in sequence(i, r, s, e, &alerts, depth) }
    }

    private func sequence(_ i: Int, _ r: Runner, _ s: SequenceSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        let last = r.stepCount - 1
        // Later steps first, so one event does not carry a sequence over two steps.
        let bit = UInt64(1) << UInt64(e.kindIndex)
        // Expired sequences go once a window of event time has passed (and when over the limit).
        if e.time &- sequences[i].lastSweepNs > s.withinNs, sequences[i].open > 0 { prune(i, s, now: e.time) }
        for k in stride(from: last, through: 0, by: -1) {
            let plan = r.steps[k]
            guard plan.kinds & bit != 0 else { continue }
            plan.step._withUnsafeGuaranteedRef { step in
                plan.waiting._withUnsafeGuaranteedRef { waiting in
                    if k == 0 {
                        r.steps[1].waiting._withUnsafeGuaranteedRef { first in open(i, s, plan, step, first, e) }
                    } else {
                        advance(i, s, plan, k, last, step, waiting, r, e, &alerts, depth)
                    }
                }
            }
        }
    }

    /// A sequence's first step: the event opens a sequence (waiting in `first`) if it matches.
    @inline(__always)
    private func open(_ i: Int, _ s: SequenceSpec, _ plan: StepPlan, _ step: SequenceSpec.Step, _ first: KeyTable<Partial>, _ e: RuleEvent) {
        counters.examined += 1
        guard step.predicate(e, world, Bound()) else { return }
        let key = fullKey(plan, s, step, e)
        if let at = first.find(key) {
            // The earliest stays, until it expires.
            guard e.time &- first.values[at].startNs > s.withinNs else { return }
            first.values[at] = Partial(startNs: e.time, first: BoundStep(e, keepEvent: step.keepsEvent))
            counters.expiredSequences += 1
            return
        }
        first.insert(key, Partial(startNs: e.time, first: BoundStep(e, keepEvent: step.keepsEvent)))
        if sequences[i].open > limits.openSequences { prune(i, s, now: e.time) }
    }

    /// A later step `k`: the event moves an open sequence waiting for it on, or completes it.
    @inline(__always)
    private func advance(_ i: Int, _ s: SequenceSpec, _ plan: StepPlan, _ k: Int, _ last: Int, _ step: SequenceSpec.Step,
                         _ waiting: KeyTable<Partial>, _ r: Runner, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        guard !waiting.isEmpty else { return }
        let key = fullKey(plan, s, step, e)
        guard let at = waiting.find(key) else { return }
        if e.time &- waiting.values[at].startNs > s.withinNs {
            waiting.remove(at)
            counters.expiredSequences += 1
            return
        }
        counters.examined += 1
        guard step.predicate(e, world, Bound(waiting.values + at)) else { return }
        var (owned, p) = waiting.take(at)
        if k == last {
            owned.free()
            var evidence: [Evidence] = []
            evidence.reserveCapacity(r.stepCount)
            evidence += p.first.evidenceList
            for b in p.rest { evidence += b.evidenceList }
            evidence += Self.evidence(e)
            // Steps' events and key for the alert (a silent rule's match has neither).
            let steps: [RuleEvent?] = silent[i] ? [] : [p.first.event] + p.rest.map(\.event) + [e]
            fire(i, last: e, steps: steps, evidence: evidence, key: silent[i] ? [:] : s.by.described(e, world), count: nil,
                 into: &alerts, depth: depth)
            return
        }
        p.rest.append(BoundStep(e, keepEvent: step.keepsEvent))
        r.steps[k + 1].waiting._withUnsafeGuaranteedRef { next in
            if let old = next.find(key) {
                owned.free()
                // One further on already: the earlier one stays, this one ends (unless it expired).
                if e.time &- next.values[old].startNs > s.withinNs { next.values[old] = p }
            } else {
                next.insert(owned: owned, p)
            }
        }
    }

    /// Drops expired open sequences of rule `i`, then (over the limit) the oldest down to half of it.
    private func prune(_ i: Int, _ s: SequenceSpec, now: UInt64) {
        sequences[i].lastSweepNs = now
        var kept = 0
        for t in sequences[i].waiting where !t.isEmpty {
            counters.expiredSequences += t.removeAll { now &- t.values[$0].startNs > s.withinNs }
            kept += t.count
        }
        if kept > limits.openSequences {
            var starts: [UInt64] = []
            starts.reserveCapacity(kept)
            for t in sequences[i].waiting { for n in 0..<t.count { starts.append(t.values[n].startNs) } }
            starts.sort()
            let cutoff = starts[kept - limits.openSequences / 2]
            for t in sequences[i].waiting where !t.isEmpty {
                counters.evictedSequences += t.removeAll { t.values[$0].startNs < cutoff }
            }
        }
    }

    private static func evidence(_ e: RuleEvent) -> [Evidence] { e.source == .match ? e.evidence : [e.asEvidence] }

    private func count(_ i: Int, _ c: CountSpec, _ e: RuleEvent, _ alerts: inout [RuleAlert], _ depth: Int) {
        counters.examined += 1
        switch c.counted {
        case .events(let p): guard p(e, world, Bound()) else { return }
        case .matches(let rule): guard e.source == .match, e.rule == rule else { return }
        }
        countKey.removeAll()
        c.by.append(e, world, to: &countKey)
        countKey.finish()
        let value = c.distinct.map { Fields.text($0.getter, e, world) ?? "" }
        let valueHash = value.map(KeyPart.hash) ?? 0
        let keys = counts[i].keys
        var found = keys.find(countKey)
        if found == nil, keys.count >= limits.countKeys { evictCountKeys(i, c, now: e.time) }
        if found == nil { found = keys.insert(countKey, []) }
        let at = found!
        // The key's entries, changed where they are.
        let entries = keys.values + at
        // The window: entries older than it go.
        if let first = entries.pointee.first, e.time &- first.time > c.windowNs {
            entries.pointee.removeAll { e.time &- $0.time > c.windowNs }
        }
        if let value, let old = entries.pointee.firstIndex(where: { $0.valueHash == valueHash && $0.value == value }) {
            entries.pointee.remove(at: old)
        }
        entries.pointee.append(CountEntry(time: e.time, value: value, valueHash: valueHash, evidence: Self.evidence(e)))
        let n = entries.pointee.count
        guard n >= c.threshold else { return }
        let fired = counts[i].fired
        if let f = fired.find(countKey), e.time &- fired.values[f] <= c.windowNs {
            // Alerted on this key within the window: quiet, the newest events kept for the next alert.
            entries.pointee.removeFirst(n - (c.threshold - 1))
            counters.quietCounts += 1
            return
        }
        let (key, taken) = keys.take(at)
        if let f = fired.find(countKey) {
            fired.values[f] = e.time
            key.free()
        } else {
            fired.insert(owned: key, e.time)
        }
        fire(i, last: e, steps: [e], evidence: taken.flatMap(\.evidence), key: silent[i] ? [:] : c.by.described(e, world), count: taken.count,
             into: &alerts, depth: depth)
    }

    private func evictCountKeys(_ i: Int, _ c: CountSpec, now: UInt64) {
        let keys = counts[i].keys, fired = counts[i].fired
        let before = keys.count
        func latest(_ n: Int) -> UInt64 { keys.values[n].last?.time ?? 0 }
        keys.removeAll { now &- latest($0) > c.windowNs }
        fired.removeAll { now &- fired.values[$0] > c.windowNs }
        if keys.count >= limits.countKeys {
            // The most recently counted half stays.
            let newest = (0..<keys.count).sorted { latest($0) > latest($1) }.prefix(limits.countKeys / 2)
            var keep = [Bool](repeating: false, count: keys.count)
            for n in newest { keep[n] = true }
            keys.removeAll { !keep[$0] }
        }
        counters.evictedCountKeys += before - keys.count
    }

    private func fire(_ i: Int, last: RuleEvent, steps: [RuleEvent?], evidence: consuming [Evidence], key: [String: String], count: Int?,
                      into alerts: inout [RuleAlert], depth: Int) {
        // In order; the same event twice (one event in two steps or counted twice) once.
        func before(_ a: Evidence, _ b: Evidence) -> Bool { (a.time, a.seq ?? 0, a.offset ?? 0) < (b.time, b.seq ?? 0, b.offset ?? 0) }
        var unique = evidence
        // (Usually in order already: then the stable sort would change nothing.)
        if unique.count > 1, unique.indices.dropFirst().contains(where: { before(unique[$0], unique[$0 - 1]) }) { unique.sort(by: before) }
        // Duplicates out, in place: each kept unless an equal one of the same time was kept.
        var kept = 0
        for r in unique.indices {
            let x = unique[r]
            var j = kept - 1
            while j >= 0, unique[j].time == x.time, unique[j] != x { j -= 1 }
            if j < 0 || unique[j].time != x.time {
                unique[kept] = x
                kept += 1
            }
        }
        unique.removeLast(unique.count - kept)
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
