import Foundation
import KanshiSystem
import KanshiTrace

/// Alerts to every sink: a sink that fails is reported once and the others go on.
public final class AlertFanout: @unchecked Sendable {
    public let sinks: [AlertSink]
    private let report: (String) -> Void
    private var failed: Set<String> = []
    private let lock = NSLock()
    public private(set) var sent = 0

    public init(_ sinks: [AlertSink], report: @escaping (String) -> Void) {
        self.sinks = sinks
        self.report = report
    }

    public func send(_ a: RuleAlert) {
        lock.lock(); defer { lock.unlock() }
        sent += 1
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

/// Rules beside a sensor that writes a behaviour log (`kanshi trace`, the VM sensor): a thread
/// follows the log as it is written and feeds the engine, so live alerts are those `kanshi rules
/// check` gives on the finished log. Each alert goes to the sinks, then to `act` for its actions.
public final class RuleWatch: @unchecked Sendable {
    public let engine: RuleEngine
    public let log: String
    public let pollMs: Int
    private let fanout: AlertFanout
    private let act: (RuleAlert) -> Void
    private let lock = NSLock()
    private var done = false
    private var alertsSeen: [RuleAlert] = []
    private var failureText: String?
    private let ended = DispatchSemaphore(value: 0)

    public init(engine: RuleEngine, log: String, fanout: AlertFanout, pollMs: Int = 50, act: @escaping (RuleAlert) -> Void = { _ in }) {
        self.engine = engine
        self.log = log
        self.fanout = fanout
        self.pollMs = pollMs
        self.act = act
    }

    public func start() {
        Thread { [self] in
            let tail = BehaviourLogTail(path: log)
            do {
                while true {
                    let last = lock.withLock { done }
                    try tail.poll { e in
                        for a in engine.add(e) {
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

    /// Reads the log to its end one last time, stops, and returns every alert raised.
    @discardableResult
    public func finish() -> [RuleAlert] {
        lock.withLock { done = true }
        ended.wait()
        fanout.close()
        return lock.withLock { alertsSeen }
    }

    /// Why the watch stopped early, if it did.
    public var failure: String? { lock.withLock { failureText } }
}
