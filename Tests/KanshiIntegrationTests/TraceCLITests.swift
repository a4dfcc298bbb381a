import Foundation
import Testing

/// `kanshi trace` as a user types it: help flags before `--` print the help,
/// after `--` they are a program's name.
struct TraceCLITests {
    @Test(arguments: ["--help", "-h"])
    func helpFlagPrintsTheHelp(_ flag: String) throws {
        let r = try run([Paths.kanshi, "trace", flag])
        #expect(r.ok, "\(r.stderr)")
        #expect(r.stdout.contains("USAGE: kanshi trace"), "\(r.stdout)")
        #expect(r.stdout.contains("--protect"))
    }

    @Test func helpAfterTheTerminatorIsAProgram() throws {
        let s = Scratch("trace-cli")
        let r = try run([Paths.kanshi, "trace", "--quiet", "--log", s.file("t.jsonl"), "--", "--help"])
        #expect(!r.ok)
        #expect(!r.stdout.contains("USAGE"), "\(r.stdout)")
        #expect(r.stderr.contains("--help"), "\(r.stderr)")
    }

    @Test(arguments: ["--help", "-h"])
    func sandboxRunHelpFlagPrintsTheHelp(_ flag: String) throws {
        let r = try run([Paths.kanshi, "sandbox", "run", flag])
        #expect(r.ok, "\(r.stderr)")
        #expect(r.stdout.contains("USAGE: kanshi sandbox run"), "\(r.stdout)")
        #expect(r.stdout.contains("--ring-size"))
    }

    @Test(arguments: ["3M", "0", "32X", "2G", "32K", ""])
    func sandboxRunRefusesABadRingSize(_ size: String) throws {
        let s = Scratch("sandbox-cli")
        let r = try run([Paths.kanshi, "sandbox", "run", "--disk", s.file("none.img"), "--trace", s.file("t.jsonl"),
                         "--ring-size", size, "--", "true"])
        #expect(r.status == 64, "\(r.status) \(r.stderr)")
        #expect(r.stderr.contains("--ring-size \(size): give a power of two from 64K to 1G"), "\(r.stderr)")
    }
}

/// `kanshi trace --process-model`: the shipped process detector follows the log of a program on
/// the host and kills the tree it names; a benign look-alike runs to its end.
struct TraceProcessModelTests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path + "/models/process-detector.json"

    static func corpus(_ s: Scratch) throws -> String {
        let dir = s.file("corpus")
        let b = try run([Paths.kanshi, "corpus", "build", "--dir", dir, "--seed", "4", "--size-mib", "16"])
        guard b.ok else { throw Failure("corpus build: \(b.stderr)") }
        return dir
    }

    @Test(.timeLimit(.minutes(10)))
    func ransomwareOnTheHostIsNamedAndKilled() throws {
        let s = Scratch("trace-pm")
        let dir = try Self.corpus(s)
        let r = try run([Paths.kanshi, "trace", "--quiet", "--log", s.file("t.jsonl"), "--process-model", Self.model, "--watch", dir,
                         "--", Paths.kanshi, "workload", "slow", "--rate-mib", "4", "--dir", dir, "--seed", "2"], timeout: 240)
        #expect(r.status == 3, "\(r.status) \(r.stderr.suffix(1500))")
        #expect(r.stderr.contains("trace: ALERT: pid ") && r.stderr.contains("workload slow"), "\(r.stderr.suffix(1500))")
        // Killed before the end: files it never reached are intact.
        let v = try run([Paths.kanshi, "corpus", "verify", "--dir", dir, "--json"])
        let o = (try? JSONSerialization.jsonObject(with: Data(v.stdout.utf8))) as? [String: Any] ?? [:]
        #expect((o["intact"] as? Int ?? 0) > 0, "\(v.stdout.prefix(400))")
    }

    @Test(.timeLimit(.minutes(10)))
    func aLookAlikeRunsToItsEnd() throws {
        let s = Scratch("trace-pm-benign")
        let dir = try Self.corpus(s)
        let r = try run([Paths.kanshi, "trace", "--quiet", "--log", s.file("t.jsonl"), "--process-model", Self.model, "--watch", dir,
                         "--", Paths.kanshi, "workload", "copy-tree", "--dir", dir, "--seed", "2"], timeout: 240)
        #expect(r.ok, "\(r.status) \(r.stderr.suffix(1500))")
        #expect(!r.stderr.contains("ALERT"), "\(r.stderr.suffix(1500))")
    }

    @Test func aBlockModelIsRefused() throws {
        let s = Scratch("trace-pm-bad")
        let disk = URL(fileURLWithPath: Self.model).deletingLastPathComponent().path + "/sandbox-detector.json"
        let r = try run([Paths.kanshi, "trace", "--quiet", "--log", s.file("t.jsonl"), "--process-model", disk, "--", "true"])
        #expect(r.status == 1 && r.stderr.contains("is a block model"), "\(r.status) \(r.stderr)")
    }
}

/// Bad inputs of the process-model commands, each named before anything runs.
struct BehaviourCLITests {
    static let models = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path + "/models"

    @Test func badInputsAreNamed() throws {
        let s = Scratch("behaviour-cli")
        var r = try run([Paths.kanshi, "sandbox", "run", "--undo", "process", "--", "true"])
        #expect(r.status == 64 && r.stderr.contains("--undo process needs the VM sensor"), "\(r.stderr)")
        r = try run([Paths.kanshi, "sandbox", "run", "--undo", "files", "--", "true"])
        #expect(r.status == 64 && r.stderr.contains("--undo files: give disk or process"), "\(r.stderr)")
        r = try run([Paths.kanshi, "sandbox", "run", "--process-model", Self.models + "/process-detector.json", "--", "true"])
        #expect(r.status == 64 && r.stderr.contains("--process-model needs the VM sensor"), "\(r.stderr)")
        // A dataset without behaviour logs.
        try FileManager.default.createDirectory(atPath: s.file("ds/kanshi-sandbox/kanshi-inplace/kanshi-inplace-1"), withIntermediateDirectories: true)
        try "".write(toFile: s.file("ds/kanshi-sandbox/kanshi-inplace/kanshi-inplace-1/ata_read.csv"), atomically: true, encoding: .utf8)
        try "".write(toFile: s.file("ds/kanshi-sandbox/kanshi-inplace/kanshi-inplace-1/ata_write.csv"), atomically: true, encoding: .utf8)
        r = try run([Paths.kanshi, "behaviour", "train", "--dataset", s.file("ds"), "--model", s.file("m.json")])
        #expect(r.status == 1 && r.stderr.contains("no run has a behaviour.jsonl"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.file("m.json")))
        // A log with a line that is not an event: named by file and line.
        try "{\"seq\":1,\"t\":1,\"pid\":1,\"tid\":1,\"ev\":\"open\",\"path\":\"/mnt/a\"}\n{\"ev\":\"warp\"}\n".write(toFile: s.file("bad.jsonl"), atomically: true, encoding: .utf8)
        r = try run([Paths.kanshi, "behaviour", "detect", "--log", s.file("bad.jsonl"), "--model", Self.models + "/process-detector.json"])
        #expect(r.status == 1 && r.stderr.contains("\(s.file("bad.jsonl")):2: unknown event \"warp\""), "\(r.stderr)")
        // A block model where a process model goes, and the other way round.
        r = try run([Paths.kanshi, "behaviour", "detect", "--log", s.file("bad.jsonl"), "--model", Self.models + "/sandbox-detector.json"])
        #expect(r.status == 1 && r.stderr.contains("is a block model"), "\(r.stderr)")
        r = try run([Paths.kanshi, "detect", "--model", Self.models + "/process-detector.json", "--journal", s.file("none")])
        #expect(r.status != 0 && r.stderr.contains("is a process model"), "\(r.stderr)")
    }

    /// A recorded-style log replayed: the tree that encrypts files it read is named (exit 3).
    @Test func aLogIsReplayedAndTheTreeNamed() throws {
        let s = Scratch("behaviour-detect")
        var lines: [String] = []
        var t: UInt64 = 1_800_000_000_000_000_000
        func add(_ o: [String: Any]) {
            t += 20_000_000
            var e = o; e["t"] = t; e["seq"] = lines.count + 1; e["tid"] = o["pid"]
            lines.append(String(decoding: try! JSONSerialization.data(withJSONObject: e), as: UTF8.self))
        }
        add(["pid": 1, "ev": "spawn", "call": "clone", "child": 40])
        add(["pid": 40, "ev": "exec", "call": "execve", "ret": 0, "path": "/usr/bin/locker", "argv": ["locker", "/mnt/docs"]])
        for i in 0..<60 {
            add(["pid": 40, "ev": "open", "call": "openat", "ret": 3, "fd": 3, "path": "/mnt/docs/f\(i).txt", "flags": "rw"])
            add(["pid": 40, "ev": "close", "call": "close", "ret": 0, "fd": 3, "path": "/mnt/docs/f\(i).txt", "bytes": 30000, "entropy": 7.98])
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: s.file("run.jsonl"), atomically: true, encoding: .utf8)
        let r = try run([Paths.kanshi, "behaviour", "detect", "--log", s.file("run.jsonl"), "--model", Self.models + "/process-detector.json", "--json"])
        #expect(r.status == 3, "\(r.status) \(r.stdout) \(r.stderr)")
        let o = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(o["root"] as? Int == 40 && (o["argv"] as? [String])?.first == "locker", "\(r.stdout)")
    }
}
