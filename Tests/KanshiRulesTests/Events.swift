import Foundation
import KanshiRules
import KanshiTrace

/// Behaviour events for tests, numbered and timed in order (1 ms apart unless told).
final class Events {
    private(set) var list: [TraceEvent] = []
    var time: UInt64 = 1_800_000_000_000_000_000
    var vm: String?

    @discardableResult
    func add(_ kind: TraceEvent.Kind, pid: Int32 = 100, path: String? = nil, path2: String? = nil, flags: String? = nil,
             ret: Int64? = 0, argv: [String]? = nil, child: Int32? = nil, call: String? = nil, managed: Bool = false,
             blocked: Bool = false, reason: String? = nil, entropy: Double? = nil, bytes: Int64? = nil, addr: String? = nil,
             after ms: UInt64 = 1) -> UInt64 {
        var e = TraceEvent(kind: kind)
        time += ms * 1_000_000
        e.seq = UInt64(list.count + 1)
        e.time = time
        e.pid = pid; e.tid = pid
        e.path = path; e.path2 = path2; e.flags = flags; e.ret = ret; e.argv = argv; e.child = child
        e.call = call ?? kind.rawValue
        e.managed = managed; e.blocked = blocked; e.reason = reason; e.entropy = entropy; e.bytes = bytes; e.addr = addr
        e.vm = vm
        list.append(e)
        return e.seq
    }

    /// A process started by `parent` running `argv`.
    func start(_ pid: Int32, _ argv: [String], parent: Int32 = 1) {
        add(.spawn, pid: parent, ret: Int64(pid), child: pid)
        add(.exec, pid: pid, path: "/usr/bin/" + argv[0], argv: argv)
    }

    /// The alerts of a rule set on these events.
    func alerts(_ set: RuleSet, protected: [String] = []) -> [RuleAlert] {
        let engine = RuleEngine(set, world: RuleWorld(protected: protected))
        return list.flatMap { engine.add($0) }
    }

    /// The events as a behaviour log's lines.
    var jsonLines: String { list.map(\.json).joined(separator: "\n") + "\n" }
}

enum Rules {
    static func builtin() throws -> RuleSet { try RuleSet.builtin() }
    static func parse(_ yaml: String, file: String = "test.yaml") throws -> RuleSet { try RuleSet(yaml: yaml, file: file) }
}
