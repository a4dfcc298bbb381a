import Foundation
import KanshiAnalysis
import KanshiSystem
import KanshiTrace

/// The live detector that names the process: behaviour events in (the VM sensor's stream,
/// `kanshi trace`'s log, a recorded log replayed), per-process-tree windows out
/// (`ProcessWindows`), each closed window predicted once and the open ones each time it is
/// asked; an alert names the tree. A tree is alerted on only once it has destroyed a file
/// that was there before it (nothing else would have anything to undo).
public final class ProcessDetector: @unchecked Sendable {
    public struct Alert: Sendable, Equatable {
        /// The tree's root and its command line.
        public var root: Int32
        public var argv: [String]
        public var probability: Float
        public var windowStartNs: UInt64
        /// The latest event time when it fired (ns since the epoch).
        public var atNs: UInt64
        /// Files that were there before it that the tree had destroyed by then.
        public var destroyed: Int
        /// When it destroyed the first one.
        public var firstDestroyNs: UInt64?
        /// Bytes the tree had written into files by then (the files it had closed: the VM sensor's count).
        public var bytesWritten: Int64 = 0
    }

    public let detector: LoadedDetector
    public let windows: ProcessWindows
    /// The probability a window needs.
    public let threshold: Float

    /// `prefix`: the directory whose files count (the data disk's mount point in the guest).
    public init(model: DetectorModel, under prefix: String) throws {
        guard model.featureSet == .process, model.featureNames == ProcessWindows.names, model.stage1 == nil else {
            throw AnalysisError.invalid("not a process model of this Kanshi (features \(model.featureSet.rawValue): \(model.featureNames.joined(separator: ","))): retrain it with kanshi behaviour train")
        }
        detector = try LoadedDetector(model)
        windows = ProcessWindows(windowNs: model.windowNs, under: prefix)
        threshold = model.ruleThreshold ?? model.threshold
    }

    public func add(_ e: TraceEvent) { windows.add(e) }

    /// The highest probability any tree's window has had at a look so far, and whose (what a run
    /// with no alert came closest to).
    public private(set) var highest: (root: Int32, argv: [String], probability: Float)?

    /// Looks at the windows closed since the last call and at the open ones; the first window
    /// (oldest first) of a tree that destroyed files and reaches the threshold is the alert.
    /// Windows starting before `sinceNs` are not alerted on.
    public func evaluate(sinceNs: UInt64 = 0) throws -> Alert? {
        let rows = windows.drainClosed() + windows.openRows()
        let candidates = rows.filter { $0.destroyedTotal > 0 && $0.windowStart + windows.windowNs > sinceNs }
        guard !candidates.isEmpty else { return nil }
        let p = try detector.predict(ProcessWindows.table(candidates))
        if let m = p.indices.max(by: { p[$0] < p[$1] }), p[m] > (highest?.probability ?? -1) {
            highest = (candidates[m].root, windows.activity.processes[candidates[m].root]?.argv ?? [], p[m])
        }
        guard let i = p.indices.first(where: { p[$0] >= threshold }) else { return nil }
        let r = candidates[i]
        return Alert(root: r.root, argv: windows.activity.processes[r.root]?.argv ?? [], probability: p[i], windowStartNs: r.windowStart,
                     atNs: windows.nowNs, destroyed: r.destroyedTotal, firstDestroyNs: windows.firstDestroyNs(of: r.root),
                     bytesWritten: windows.bytesWritten(by: r.root))
    }
}

/// Training and grouped cross-validation of process models on recorded behaviour logs
/// (`kanshi dataset record`: each run's behaviour.jsonl, labelled by its workload folder).
public enum ProcessTraining {
    /// The guest directory whose files count in the sandbox's recordings.
    public static let guestPrefix = "/mnt"
    public static let windowNs: UInt64 = 1_000_000_000
    /// How often the live detector looks (the sandbox polls at this period); replays do the same.
    public static let evaluateEveryNs: UInt64 = 200_000_000

    /// One recorded run's events and what is known about it.
    public struct RecordedRun: Sendable {
        public var name: String
        public var label: Label
        public var events: [TraceEvent]
        /// The workload's command: `kanshi workload NAME` (its tree is the one labelled).
        public var workload: String
        /// The disk's writes during the run (the block trace beside the log), for the disk-level features.
        public var diskWrites: [Access]

        public init(name: String, label: Label, events: [TraceEvent], workload: String, diskWrites: [Access] = []) {
            self.name = name; self.label = label; self.events = events; self.workload = workload; self.diskWrites = diskWrites
        }

        /// Events and disk writes in time order, as a live detector gets them.
        func replay(event: (TraceEvent) throws -> Void, diskWrite: (Access) -> Void) rethrows {
            var k = 0
            for e in events {
                while k < diskWrites.count && diskWrites[k].timeNs <= e.time { diskWrite(diskWrites[k]); k += 1 }
                try event(e)
            }
            while k < diskWrites.count { diskWrite(diskWrites[k]); k += 1 }
        }
    }

    /// The runs under `dataset` that have a behaviour log.
    public static func load(dataset: String, labels: [String: Label] = [:]) throws -> [RecordedRun] {
        let runs = try Dataset.discover(dataset, labels: labels)
        var out: [RecordedRun] = []
        for r in runs {
            let log = r.path + "/behaviour.jsonl"
            guard FileManager.default.fileExists(atPath: log) else { continue }
            var events: [TraceEvent] = []
            try BehaviourLogReader.read(path: log) { events.append($0) }
            let name = r.family.hasPrefix("kanshi-") ? String(r.family.dropFirst("kanshi-".count)) : r.family
            let writes = try r.load().writes
            out.append(RecordedRun(name: r.name, label: r.label, events: events, workload: name, diskWrites: writes))
        }
        guard !out.isEmpty else { throw AnalysisError.noRuns("\(dataset) (no run has a behaviour.jsonl: record with kanshi dataset record)") }
        return out
    }

    /// Whether a process runs the run's workload (`kanshi workload NAME ...`).
    static func isWorkload(_ argv: [String], _ name: String) -> Bool {
        guard let i = argv.firstIndex(of: "workload"), i + 1 < argv.count else { return false }
        return argv[i + 1] == name
    }

    /// A run's closed windows: those of the workload's tree once it has destroyed a file are
    /// ransomware in a ransomware run; its earlier ones are left out (reading alone is not the
    /// behaviour); every other window is benign.
    public static func tables(_ run: RecordedRun) -> (ransomware: FeatureTable, benign: FeatureTable) {
        let w = ProcessWindows(windowNs: windowNs, under: guestPrefix)
        run.replay(event: { w.add($0) }, diskWrite: w.addDiskWrite)
        let rows = w.allRows()
        var pos: [ProcessWindows.Row] = [], neg: [ProcessWindows.Row] = []
        for r in rows {
            let isWorkload = isWorkload(w.activity.processes[r.root]?.argv ?? [], run.workload)
            if run.label == .ransomware && isWorkload {
                if r.destroyedTotal > 0 { pos.append(r) }
            } else {
                neg.append(r)
            }
        }
        return (ProcessWindows.table(pos), ProcessWindows.table(neg))
    }

    /// A random forest on every run's windows; with how many windows it saw.
    public static func train(_ runs: [RecordedRun], classifier: ClassifierKind = .rf,
                             threshold: Float = 0.5) throws -> (model: DetectorModel, windows: Int) {
        var tables: [FeatureTable] = [], labels: [Label] = []
        for r in runs {
            let (p, n) = Self.tables(r)
            if p.rows > 0 { tables.append(p); labels.append(.ransomware) }
            if n.rows > 0 { tables.append(n); labels.append(.benign) }
        }
        guard Set(labels).count == 2 else {
            throw AnalysisError.invalid("training needs windows of both kinds: ransomware runs whose workload destroyed files, and benign ones")
        }
        let model = try DetectorModel.train(classifier, tables: tables, labels: labels, featureSet: .process, windowNs: windowNs,
                                            ruleHorizon: 1, ruleFraction: 1, ruleThreshold: threshold, stacked: false)
        return (model, tables.reduce(0) { $0 + $1.rows })
    }

    /// What a replay of one run through a live detector gave.
    public struct Replay: Sendable {
        public var run: String
        public var label: Label
        public var alert: ProcessDetector.Alert?
        /// The alert named the workload's tree (ransomware runs).
        public var namedTheWorkload: Bool
        /// Seconds (of the log's time) from the workload's first destroyed file to the alert.
        public var delaySeconds: Double?
        /// Closed windows: ransomware ones (as `tables` labels them) and how many of each kind the model called ransomware.
        public var positives = 0, truePositives = 0, negatives = 0, falsePositives = 0
        /// The highest probability a tree reached at the replay's looks, and the threshold.
        public var highest: (root: Int32, argv: [String], probability: Float)?
        public var threshold: Float = 0
    }

    /// Replays a recorded run through a live detector, looking every `evaluateEveryNs` of log time.
    public static func replay(_ run: RecordedRun, model: DetectorModel, under prefix: String = guestPrefix) throws -> Replay {
        let d = try ProcessDetector(model: model, under: prefix)
        var next: UInt64 = 0
        var alert: ProcessDetector.Alert?
        try run.replay(event: { e in
            if next == 0 { next = e.time + evaluateEveryNs }
            if e.time >= next, alert == nil {
                alert = try d.evaluate()
                next = e.time + evaluateEveryNs
            }
            d.add(e)
        }, diskWrite: d.windows.addDiskWrite)
        if alert == nil { alert = try d.evaluate() }
        var out = Replay(run: run.name, label: run.label, alert: alert, namedTheWorkload: false)
        out.highest = d.highest
        out.threshold = d.threshold
        if let a = alert {
            out.namedTheWorkload = isWorkload(a.argv, run.workload)
            if run.label == .ransomware, out.namedTheWorkload, let first = a.firstDestroyNs {
                out.delaySeconds = Double(Int64(bitPattern: a.atNs &- first)) / 1e9
            }
        }
        // Window-level counts on the closed windows.
        let (p, n) = Self.tables(run)
        let loaded = try LoadedDetector(model)
        let threshold = model.ruleThreshold ?? model.threshold
        if p.rows > 0 { out.positives = p.rows; out.truePositives = try loaded.predict(p).filter { $0 >= threshold }.count }
        if n.rows > 0 { out.negatives = n.rows; out.falsePositives = try loaded.predict(n).filter { $0 >= threshold }.count }
        return out
    }

    /// Grouped k-fold cross-validation: each run is replayed through a model that never saw it.
    public static func crossValidate(_ runs: [RecordedRun], folds k: Int = 3, seed: UInt64 = 42,
                                     classifier: ClassifierKind = .rf, threshold: Float = 0.5) throws -> [Replay] {
        let folds = GroupedFolds.assign(labels: runs.map(\.label), folds: k, seed: seed)
        var out: [Replay] = []
        for f in 0..<k {
            let train = runs.indices.filter { folds[$0] != f }.map { runs[$0] }
            let test = runs.indices.filter { folds[$0] == f }.map { runs[$0] }
            guard !test.isEmpty else { continue }
            let m = try ProcessTraining.train(train, classifier: classifier, threshold: threshold).model
            for r in test { out.append(try replay(r, model: m)) }
        }
        return out
    }
}

/// A process detector following a behaviour log as it is written (the VM sensor's, `kanshi
/// trace`'s): polls it, feeds the detector, and returns the first alert.
public final class ProcessWatch: @unchecked Sendable {
    public let detector: ProcessDetector
    public let log: String
    public let pollMs: Int

    public init(model: DetectorModel, log: String, under prefix: String, pollMs: Int = 200) throws {
        detector = try ProcessDetector(model: model, under: prefix)
        self.log = log
        self.pollMs = pollMs
    }

    /// Watches until an alert (returned), or `stop` says to end (nil). `since` gives the time
    /// from which alerts count (nil: not yet known, nothing is alerted on). `now` is the clock
    /// that closes windows while the log is quiet.
    /// `diskWrites`, when given, is asked each time for the disk's writes since the last call.
    public func run(since: () -> UInt64?, now: () -> UInt64, stop: () -> Bool,
                    diskWrites: (() throws -> [Access])? = nil) throws -> ProcessDetector.Alert? {
        let tail = BehaviourLogTail(path: log)
        while !stop() {
            if let diskWrites {
                for a in try diskWrites() { detector.windows.addDiskWrite(a) }
            }
            try tail.poll { detector.add($0) }
            detector.windows.advance(to: now())
            if let start = since(), let alert = try detector.evaluate(sinceNs: start) { return alert }
            usleep(useconds_t(pollMs * 1000))
        }
        return nil
    }

    /// Every process of the alerted tree (root first), as the log shows it.
    public func tree(of alert: ProcessDetector.Alert) -> [Int32] { detector.windows.activity.tree(of: alert.root) }
}

/// The process detector beside a traced program (`kanshi trace --process-model`): a thread
/// follows the log as it is written; the tree it names is killed (SIGKILL, every process of it).
public final class ProcessGuardian: @unchecked Sendable {
    public let watch: ProcessWatch
    private let lock = NSLock()
    // SAFETY: the fields below are only touched under `lock`.
    private var done = false
    private var fired: (alert: ProcessDetector.Alert, killed: [Int32])?
    /// Why the watcher stopped early, if it did.
    public var failure: String? { lock.withLock { failureText } }
    private var failureText: String?
    private let ended = DispatchSemaphore(value: 0)
    private let startNs = FileSystem.nowNs()

    public init(model: DetectorModel, log: String, under: String) throws {
        watch = try ProcessWatch(model: model, log: log, under: under)
    }

    public func start() {
        Thread { [self] in
            do {
                if let alert = try watch.run(since: { startNs }, now: { FileSystem.nowNs() }, stop: { lock.withLock { done } }) {
                    let tree = watch.tree(of: alert)
                    let killed = tree.filter { Host.killProcess($0) }
                    lock.withLock { fired = (alert, killed) }
                }
            } catch {
                lock.withLock { failureText = "\(error)" }
            }
            ended.signal()
        }.start()
    }

    /// Stops watching (after a last look at the log) and says what it did.
    @discardableResult
    public func finish() -> (alert: ProcessDetector.Alert, killed: [Int32])? {
        usleep(useconds_t(watch.pollMs * 1000))  // the log's last lines
        lock.withLock { done = true }
        ended.wait()
        return lock.withLock { fired }
    }
}

