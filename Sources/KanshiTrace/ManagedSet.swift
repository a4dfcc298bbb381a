import Foundation

/// Why something is managed: the event that made it so.
public struct ManagedReason: Codable, Sendable, Equatable {
    public init(seq: UInt64, time: UInt64, why: String) { self.seq = seq; self.time = time; self.why = why }
    /// Sequence number of the event in the log of the run that decided it (0 if loaded).
    public var seq: UInt64
    /// Nanoseconds since the Unix epoch.
    public var time: UInt64
    /// A sentence: "read protected file /secret", "written by managed pid 12 (python3)" ...
    public var why: String
}

/// The managed (tainted) files and processes of a run, and the protected paths.
/// Saved beside the log as `<log>.managed.json`; a later run loads it so files
/// managed before stay managed.
public struct ManagedSet: Codable, Sendable {
    public struct File: Codable, Sendable { public var path: String; public var reason: ManagedReason }
    public struct Process: Codable, Sendable {
        public var pid: Int32
        public var exe: String
        public var reason: ManagedReason
        public init(pid: Int32, exe: String, reason: ManagedReason) { self.pid = pid; self.exe = exe; self.reason = reason }
    }

    /// Paths given with --protect (files, or directories: everything under them).
    public var protected: [String] = []
    /// Managed files by path.
    public var files: [String: File] = [:]
    /// Processes that became managed (this run and the runs before).
    public var processes: [Process] = []

    public init(protected: [String] = []) {
        self.protected = protected.map { ManagedSet.normalize($0) }
    }

    /// Why reading `path` makes a process managed, or nil.
    public func taint(of path: String) -> String? {
        for p in protected where path == p || path.hasPrefix(p.hasSuffix("/") ? p : p + "/") {
            return p == path ? "read protected file \(path)" : "read \(path) under protected directory \(p)"
        }
        if let f = files[path] { return "read managed file \(path) (managed because: \(f.reason.why))" }
        return nil
    }

    public func isManagedFile(_ path: String) -> Bool { files[path] != nil }

    // MARK: the rules both sensors apply (kanshi trace on the host, the VM sensor in a guest)

    /// Whether a file a managed process writes can become managed: a real path, not a device or kernel file.
    public func canManage(_ path: String) -> Bool {
        files[path] == nil && path.hasPrefix("/") && !path.hasPrefix("/dev/") && !path.hasPrefix("/proc/") && !path.hasPrefix("/sys/")
    }

    /// Why a file becomes managed: `how` ("written", "renamed from X", ...) by process `pid`.
    public static func fileReason(_ how: String, pid: Int32, exe: String, managedAt: UInt64?) -> String {
        managedAt.map { "\(how) by managed pid \(pid) (\(exe), managed at event \($0))" } ?? "\(how) by pid \(pid) (\(exe))"
    }

    /// Why a child is managed from its first instruction.
    public static func childReason(parent: Int32, exe: String) -> String { "child of managed pid \(parent) (\(exe))" }

    /// Why a process that reads a file a managed process just wrote becomes managed.
    public static func sharedFileReason(_ path: String, writer: Int32, exe: String) -> String {
        "has managed file \(path) open for reading (shared with pid \(writer), \(exe))"
    }

    /// Why the other end of a pipe or socket a managed process writes into becomes managed.
    public static func channelReason(_ channel: String, writer: Int32, exe: String) -> String {
        "received data through \(channel) from managed pid \(writer) (\(exe))"
    }

    public mutating func addFile(_ path: String, _ reason: ManagedReason) -> Bool {
        guard files[path] == nil else { return false }
        files[path] = File(path: path, reason: reason)
        return true
    }

    /// Loads a saved set (a missing file is an empty set) and adds `protect`.
    public static func load(path: String, protect: [String]) throws -> ManagedSet {
        var set = ManagedSet(protected: protect)
        guard FileManager.default.fileExists(atPath: path) else { return set }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let old = try JSONDecoder().decode(ManagedSet.self, from: data)
            set.files = old.files
            set.processes = old.processes
            for p in old.protected where !set.protected.contains(p) { set.protected.append(p) }
        } catch {
            throw TraceError.badManagedSet(path: path, detail: "\(error)")
        }
        return set
    }

    public func save(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw TraceError.managedSetNotSaved(path: path, detail: "\(error.localizedDescription)")
        }
    }

    /// Lexical normalization: absolute, no "." or ".." or repeated "/".
    public static func normalize(_ path: String, cwd: String? = nil) -> String {
        var p = path
        if !p.hasPrefix("/") {
            let base = cwd ?? FileManager.default.currentDirectoryPath
            p = base + "/" + p
        }
        var out: [Substring] = []
        for part in p.split(separator: "/") {
            if part == "." { continue }
            if part == ".." { if !out.isEmpty { out.removeLast() }; continue }
            out.append(part)
        }
        return "/" + out.joined(separator: "/")
    }
}
