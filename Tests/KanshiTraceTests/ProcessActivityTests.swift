import Foundation
import Testing
@testable import KanshiTrace

/// Blame from behaviour events: who destroyed files that were there before, with its tree.
struct ProcessActivityTests {
    /// Builds events the way the sensors log them.
    struct Log {
        var events: [TraceEvent] = []
        var t: UInt64 = 1_000_000_000_000_000_000
        mutating func add(_ kind: TraceEvent.Kind, _ pid: Int32, path: String? = nil, path2: String? = nil, flags: String? = nil,
                          child: Int32? = nil, argv: [String]? = nil, ret: Int64 = 0) {
            var e = TraceEvent(kind: kind)
            t += 1_000_000
            e.seq = UInt64(events.count + 1); e.time = t; e.pid = pid; e.tid = pid
            e.path = path; e.path2 = path2; e.flags = flags; e.child = child; e.argv = argv; e.ret = ret
            if kind == .spawn { e.call = "clone" }
            events.append(e)
        }
        mutating func spawn(_ parent: Int32, _ child: Int32, _ argv: [String]) {
            add(.spawn, parent, child: child)
            add(.exec, child, path: "/bin/" + argv[0], argv: argv)
        }
    }

    static let existing: Set<String> = (1...20).map { "/mnt/docs/f\($0).txt" }.reduce(into: []) { $0.insert($1) }

    /// A shell starts a ransomware that forks a worker and a benign copier; the worker
    /// overwrites, renames and deletes files that were there; the copier only makes new ones.
    static func scenario() -> (Log, startNs: UInt64) {
        var log = Log()
        log.spawn(1, 10, ["sh", "/tmp/job.sh"])
        let start = log.t
        log.spawn(10, 11, ["locker", "--all"])
        log.add(.spawn, 11, child: 12)  // fork: same program
        log.spawn(10, 20, ["copier"])
        for i in 1...8 {
            log.add(.open, 12, path: "/mnt/docs/f\(i).txt", flags: "rw")
            log.add(.rename, 12, path: "/mnt/docs/f\(i).txt", path2: "/mnt/docs/f\(i).txt.locked")
        }
        log.add(.open, 11, path: "/mnt/docs/f9.txt", flags: "r")
        log.add(.unlink, 11, path: "/mnt/docs/f9.txt")
        log.add(.open, 11, path: "/mnt/docs/README-LOCKED.txt", flags: "w,creat,trunc")
        log.add(.open, 11, path: "/tmp/outside", flags: "w,creat")
        for i in 10...15 {
            log.add(.open, 20, path: "/mnt/docs/f\(i).txt", flags: "r")
            log.add(.open, 20, path: "/mnt/copy/f\(i).txt", flags: "w,creat,trunc")
        }
        log.add(.open, 20, path: "/mnt/docs/missing", flags: "r", ret: -2)
        return (log, start)
    }

    @Test func theTreeThatDestroyedFilesIsBlamedNotItsShellNorTheCopier() throws {
        let (log, start) = Self.scenario()
        let activity = ProcessActivity()
        for e in log.events { activity.add(e) }
        let suspects = activity.suspects(sinceNs: start, under: "/mnt") { Self.existing.contains($0) }
        let top = try #require(suspects.first)
        #expect(top.pid == 11)
        #expect(top.argv == ["locker", "--all"])
        #expect(Set(top.tree) == [11, 12])
        #expect(top.existingChanged == 9)  // 8 overwritten and renamed away, 1 deleted
        #expect(top.created == 9)  // 8 .locked names and the note; /tmp is not under /mnt
        let paths = Set(top.changes.map(\.path))
        #expect(paths.contains("/mnt/docs/f1.txt") && paths.contains("/mnt/docs/f1.txt.locked") && paths.contains("/mnt/docs/f9.txt"))
        #expect(!paths.contains("/tmp/outside"))
        #expect(top.changes.first { $0.path == "/mnt/docs/f1.txt" }?.change == [.written, .renamedAway])
        #expect(top.firstChangeNs == top.changes.map(\.firstNs).min())
        let copier = try #require(suspects.first { $0.pid == 20 })
        #expect(copier.existingChanged == 0 && copier.created == 6 && copier.filesRead == 6)
        #expect(!suspects.contains { $0.pid == 10 }, "the shell did nothing itself")
    }

    @Test func theProcessTableAloneKeepsTreesButNoFiles() throws {
        let (log, start) = Self.scenario()
        let full = ProcessActivity(), table = ProcessActivity(recordsFiles: false)
        for e in log.events { full.add(e); table.add(e) }
        #expect(table.tree(of: 11) == full.tree(of: 11) && table.blameRoot(of: 12) == 11)
        #expect(table.processes[11]?.argv == ["locker", "--all"])
        #expect(table.suspects(sinceNs: start, under: "/mnt") { _ in true }.isEmpty)
        #expect(!full.suspects(sinceNs: start, under: "/mnt") { _ in true }.isEmpty)
    }

    @Test func changesBeforeTheStartAreNotCounted() throws {
        let (log, _) = Self.scenario()
        let activity = ProcessActivity()
        for e in log.events { activity.add(e) }
        let suspects = activity.suspects(sinceNs: log.t + 1, under: "/mnt") { Self.existing.contains($0) }
        #expect(suspects.allSatisfy { $0.existingChanged == 0 && $0.changes.isEmpty })
    }

    @Test func aLogReadsBackIntoTheSameBlame() throws {
        let (log, start) = Self.scenario()
        let path = NSTemporaryDirectory() + "kanshi-activity-\(UUID().uuidString.prefix(8)).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try (log.events.map(\.json).joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let activity = ProcessActivity()
        try BehaviourLogReader.read(path: path) { activity.add($0) }
        #expect(activity.events == log.events.count)
        let top = try #require(activity.suspects(sinceNs: start, under: "/mnt/") { Self.existing.contains($0) }.first)
        #expect(top.pid == 11 && top.existingChanged == 9)
    }

    @Test func badLogLinesAreNamedByFileAndLine() throws {
        let path = NSTemporaryDirectory() + "kanshi-badlog-\(UUID().uuidString.prefix(8)).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var e = TraceEvent(kind: .open)
        e.pid = 3; e.path = "/a"
        let good = e.json
        // A cut-short last line (a log still being written) is left out, not an error.
        try (good + "\n" + good + "\n{\"seq\":3,\"ev\":\"op").write(toFile: path, atomically: true, encoding: .utf8)
        var n = 0
        try BehaviourLogReader.read(path: path) { _ in n += 1 }
        #expect(n == 2)
        for (bad, why) in [("not json", "not a JSON object"), ("{\"seq\":1}", "no \"ev\" field"), ("{\"ev\":\"teleport\"}", "unknown event \"teleport\"")] {
            try (good + "\n" + bad + "\n" + good + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            #expect {
                try BehaviourLogReader.read(path: path) { _ in }
            } throws: { error in
                "\(error)" == "\(path):2: \(why)"
            }
        }
        #expect { try BehaviourLogReader.read(path: path + ".missing") { _ in } } throws: { "\($0)".contains("no such file") }
    }
}
