import KanshiSystem
import KanshiTrace

/// The rules benchmark's parts (`kanshi bench rules`): a long event stream made from recorded
/// logs, the engine's throughput on one core, and its memory as open sequences pile up.
public enum RuleBench {
    /// `events` repeated until there are `count`: each copy shifted in time past the one before,
    /// with its pids moved out of the others' way, so copies never join.
    public static func replicate(_ events: [TraceEvent], to count: Int) -> [TraceEvent] {
        guard let first = events.first, let last = events.last, count > 0 else { return [] }
        let span = last.time - first.time + 1_000_000_000
        var out: [TraceEvent] = []
        out.reserveCapacity(count)
        var copy: UInt64 = 0
        while out.count < count {
            for var e in events {
                if out.count == count { break }
                e.time += span * copy
                e.seq = UInt64(out.count + 1)
                let shift = Int32(truncatingIfNeeded: copy * 65_536)
                e.pid &+= shift; e.tid &+= shift
                if let c = e.child { e.child = c &+ shift }
                out.append(e)
            }
            copy += 1
        }
        return out
    }

    /// Seconds the engine takes over `events` (a fresh engine; events already parsed), and its stats.
    public static func time(_ set: RuleSet, _ events: [TraceEvent]) -> (seconds: Double, stats: RuleEngine.Stats, alerts: Int) {
        let engine = RuleEngine(set)
        var alerts = 0
        // Events are handed over as a log reader hands them (moved in, not copied): copied beforehand.
        let stream = UnsafeMutablePointer<TraceEvent>.allocate(capacity: events.count)
        defer { stream.deallocate() }
        _ = UnsafeMutableBufferPointer(start: stream, count: events.count).initialize(from: events)
        let t0 = FileSystem.monotonicNs()
        for i in 0..<events.count { alerts += engine.add((stream + i).move()).count }
        let t1 = FileSystem.monotonicNs()
        return (Double(t1 - t0) / 1e9, engine.stats, alerts)
    }

    /// What each alerting rule costs: the engine's seconds over `events` with that rule alone (and
    /// the silent rules whose matches it counts), less the seconds with no rule at all (the
    /// engine's own cost: taking each event, the process table). Rounds: the median of each.
    public static func perRule(_ set: RuleSet, _ events: [TraceEvent], rounds: Int = 3) -> (base: Double, rules: [(rule: String, seconds: Double)]) {
        func median(_ s: RuleSet) -> Double {
            let t = (0..<max(1, rounds)).map { _ in time(s, events).seconds }.sorted()
            return t[t.count / 2]
        }
        var none = set
        none.rules = []
        let base = median(none)
        var out: [(String, Double)] = []
        for r in set.rules where !r.silent {
            var alone = set
            var feeds: [String] = []
            if case .count(let c) = r.shape, case .matches(let silent) = c.counted { feeds = [silent] }
            alone.rules = set.rules.filter { feeds.contains($0.name) } + [r]
            out.append((r.name, max(0, median(alone) - base)))
        }
        return (base, out)
    }

    /// Resident memory as sequence rules' open matches pile up: each event opens sequences (a new
    /// file created that nothing completes: the built-in set's copy-then-delete and
    /// written-then-run sequences each start on it). Returns (events so far, open sequences,
    /// evicted so far, resident bytes) at each of `marks`.
    public static func openSequenceMemory(_ set: RuleSet, limits: RuleEngine.Limits, marks: [Int]) -> [(events: Int, open: Int, evicted: Int, resident: UInt64)] {
        let engine = RuleEngine(set, limits: limits)
        var out: [(Int, Int, Int, UInt64)] = [(0, 0, 0, Host.residentBytes ?? 0)]
        var e = TraceEvent(kind: .open)
        e.pid = 4242; e.tid = 4242; e.flags = "w,creat,trunc"; e.ret = 3; e.call = "openat"
        var n = 0
        // All within the rules' windows (1 µs apart): nothing expires, so the limit is what bounds them.
        for mark in marks.sorted() {
            while n < mark {
                n += 1
                e.seq = UInt64(n)
                e.time = 1_800_000_000_000_000_000 + UInt64(n) * 1000
                e.path = "/data/dir\(n % 997)/file-\(n).dat"
                _ = engine.add(e)
            }
            out.append((n, engine.stats.openSequences, engine.stats.evictedSequences, Host.residentBytes ?? 0))
        }
        return out
    }
}
