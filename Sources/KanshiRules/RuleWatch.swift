import Foundation
import KanshiJournal
import KanshiSystem
import KanshiTrace

/// Alerts to every sink: a sink that fails is reported once and the others go on.
public final class AlertFanout: @unchecked Sendable {
    public let sinks: [AlertSink]
    private let report: (String) -> Void
    private var failed: Set<String> = []
    private let lock = NSLock()

    public init(_ sinks: [AlertSink], report: @escaping (String) -> Void) {
        self.sinks = sinks
        self.report = report
    }

    public func send(_ a: RuleAlert) {
        lock.lock(); defer { lock.unlock() }
        for s in sinks {
            do { try s.send(a) } catch {
                if failed.insert(s.name).inserted { report("alerts to \(s.name) failed: \(error)") }
            }
        }
    }

    /// Closes every sink; reports what each could not deliver.
    public func close() {
        for s in sinks { if let problem = s.close() { report(problem) } }
    }
}

/// What a live rule watch follows.
public enum RuleSource: Sendable {
    /// A behaviour log being written (`kanshi trace`, the VM sensor).
    case log(String)
    /// A journal being written (block records and notes).
    case journal(String)

    public var path: String {
        switch self {
        case .log(let p), .journal(let p): p
        }
    }
}

/// Rules beside a sensor: a thread follows its behaviour log or journal as it is written and
/// feeds the engine, so live alerts are those `kanshi rules check` gives on the finished log or
/// journal. Each alert goes to the sinks, then to `act` for its actions.
public final class RuleWatch: @unchecked Sendable {
    public let engine: RuleEngine
    public let source: RuleSource
    public let pollMs: Int
    private let fanout: AlertFanout
    private let act: (RuleAlert) -> Void
    private let lock = NSLock()
    private var done = false
    private var alertsSeen: [RuleAlert] = []
    private var failureText: String?
    private let ended = DispatchSemaphore(value: 0)

    public init(engine: RuleEngine, source: RuleSource, fanout: AlertFanout, pollMs: Int = 50, act: @escaping (RuleAlert) -> Void = { _ in }) {
        self.engine = engine
        self.source = source
        self.fanout = fanout
        self.pollMs = pollMs
        self.act = act
    }

    public convenience init(engine: RuleEngine, log: String, fanout: AlertFanout, pollMs: Int = 50, act: @escaping (RuleAlert) -> Void = { _ in }) {
        self.init(engine: engine, source: .log(log), fanout: fanout, pollMs: pollMs, act: act)
    }

    public func start() {
        Thread { [self] in
            do {
                let poll = try poller()
                while true {
                    let last = lock.withLock { done }
                    try poll { alerts in
                        for a in alerts {
                            fanout.send(a)
                            lock.withLock { alertsSeen.append(a) }
                            act(a)
                        }
                    }
                    if last { break }
                    usleep(useconds_t(pollMs * 1000))
                }
            } catch {
                lock.withLock { failureText = "\(error)" }
            }
            ended.signal()
        }.start()
    }

    /// A function that feeds the engine the events written since its last call, and hands over
    /// each event's alerts: the same calls `RuleRun` makes on a finished log or journal.
    private func poller() throws -> (([RuleAlert]) throws -> Void) throws -> Void {
        let engine = engine
        switch source {
        case .log(let path):
            let tail = BehaviourLogTail(path: path)
            return { body in try tail.poll { try body(engine.add($0)) } }
        case .journal(let path):
            var tail: JournalTail?
            return { body in
                if tail == nil {
                    guard FileManager.default.fileExists(atPath: path) else { return }
                    tail = try JournalTail(directory: path)
                }
                _ = try tail?.poll { r in if let e = try RuleRun.event(r) { try body(engine.add(e)) } }
            }
        }
    }

    /// Reads the source to its end one last time, stops, and returns every alert raised (the
    /// sinks stay open: their owner closes them).
    @discardableResult
    public func finish() -> [RuleAlert] {
        lock.withLock { done = true }
        ended.wait()
        return lock.withLock { alertsSeen }
    }

    /// Why the watch stopped early, if it did.
    public var failure: String? { lock.withLock { failureText } }
}
