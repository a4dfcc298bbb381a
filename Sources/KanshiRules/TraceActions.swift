import KanshiSystem
import KanshiTrace

/// A rule's actions under `kanshi trace`: `kill` kills the process, `isolate` cuts its network
/// (the tracer refuses its Internet and packet sockets from its next call on); both act on the
/// whole process tree for rules keyed by tree. Other actions belong to the sandbox.
public struct TraceRuleActions {
    public let tracer: Tracer
    public let world: RuleWorld

    public init(tracer: Tracer, world: RuleWorld) {
        self.tracer = tracer
        self.world = world
    }

    /// Carries out the alert's actions; returns what was done, one line each, for the user.
    public func perform(_ alert: RuleAlert) -> [String] {
        let targets = world.processes(actedOnBy: alert)
        guard !targets.isEmpty else { return [] }
        var done: [String] = []
        if alert.actions.contains(.isolate) {
            tracer.cutNetwork(targets, why: "rule \(alert.rule)")
            done.append("rule \(alert.rule) cut the network of \(targets.map(String.init).joined(separator: " "))")
        }
        if alert.actions.contains(.kill) {
            let killed = targets.filter { Host.killProcess($0) }
            done.append("rule \(alert.rule) killed \(killed.map(String.init).joined(separator: " "))")
        }
        return done
    }
}
