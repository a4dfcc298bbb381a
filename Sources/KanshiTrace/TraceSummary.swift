/// What a run did, for a person: process tree, files, peers, refusals.
public struct TraceSummary: Sendable {
    public struct ProcessInfo: Sendable {
        public var pid: Int32
        public var parent: Int32
        public var argv: [String]
        public var exit: Int32?
        public var managed: String?
        public var networkCut: String?
    }
    public struct Blocked: Sendable {
        public var pid: Int32
        public var exe: String
        public var call: String
        public var why: String
    }

    public var processes: [Int32: ProcessInfo] = [:]
    public var order: [Int32] = []
    public var filesRead: Set<String> = []
    public var filesWritten: Set<String> = []
    public var filesDeleted: Set<String> = []
    public var renames: [(String, String)] = []
    public var peers: [String: Set<Int32>] = [:]
    public var blockedAttempts: [Blocked] = []
    public var managedFiles: [(String, String)] = []
    public var dropped: UInt64 = 0
    /// Lines a sensor adds at the end (the VM sensor: its counters, egress attempts).
    public var notes: [String] = []

    public init() {}

    public mutating func addProcess(pid: Int32, parent: Int32, argv: [String]) {
        if processes[pid] == nil { order.append(pid) }
        processes[pid] = ProcessInfo(pid: pid, parent: parent, argv: argv)
    }
    public mutating func exec(pid: Int32, argv: [String]) { processes[pid]?.argv = argv }
    public mutating func setExit(pid: Int32, code: Int32) { processes[pid]?.exit = code }
    public mutating func managedProcess(pid: Int32, why: String) { processes[pid]?.managed = why }
    public mutating func networkCut(pid: Int32, why: String) { processes[pid]?.networkCut = why }
    public mutating func opened(_ path: String, read: Bool, write: Bool) {
        if read { filesRead.insert(path) }
        if write { filesWritten.insert(path) }
    }
    public mutating func wrote(_ path: String) { filesWritten.insert(path) }
    public mutating func deleted(_ path: String) { filesDeleted.insert(path) }
    public mutating func renamed(_ a: String, _ b: String) { renames.append((a, b)) }
    public mutating func peer(_ a: String, pid: Int32) { peers[a, default: []].insert(pid) }
    public mutating func blocked(pid: Int32, exe: String, call: String, why: String) {
        blockedAttempts.append(Blocked(pid: pid, exe: exe, call: call, why: why))
    }

    /// The summary as text.
    public var text: String {
        var out = "== kanshi trace summary ==\n"
        out += "processes (\(processes.count)):\n"
        let children = Dictionary(grouping: order.compactMap { processes[$0] }, by: \.parent)
        let roots = order.compactMap { processes[$0] }.filter { processes[$0.parent] == nil }
        func walk(_ p: ProcessInfo, _ depth: Int) {
            let exit = p.exit.map { "exit \($0)" } ?? "running"
            out += String(repeating: "  ", count: depth + 1) + "\(p.pid) \(p.argv.joined(separator: " ").prefix(120)) [\(exit)]"
            if let m = p.managed { out += " MANAGED: \(m)" }
            if let c = p.networkCut { out += " NETWORK CUT: \(c)" }
            out += "\n"
            for c in children[p.pid] ?? [] where c.pid != p.pid { walk(c, depth + 1) }
        }
        for r in roots { walk(r, 0) }
        func list(_ title: String, _ s: [String]) {
            out += "\(title) (\(s.count)):\n"
            for x in s.prefix(200) { out += "  \(x)\n" }
            if s.count > 200 { out += "  ... \(s.count - 200) more\n" }
        }
        list("files read", filesRead.sorted())
        list("files written", filesWritten.sorted())
        list("files deleted", filesDeleted.sorted())
        list("renamed", renames.map { "\($0.0) -> \($0.1)" })
        list("network peers", peers.keys.sorted().map { "\($0) (pids \(peers[$0]!.sorted().map(String.init).joined(separator: ",")))" })
        list("managed files", managedFiles.map { "\($0.0): \($0.1)" })
        list("blocked attempts", blockedAttempts.map { "pid \($0.pid) \($0.exe) \($0.call): \($0.why)" })
        for n in notes { out += n + "\n" }
        if dropped > 0 { out += "WARNING: \(dropped) events were dropped from the log (the writer fell behind); blocking was unaffected\n" }
        return out
    }
}
