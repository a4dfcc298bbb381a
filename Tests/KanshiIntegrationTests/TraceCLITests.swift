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

    @Test(.timeLimit(.minutes(5)))
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

    @Test(.timeLimit(.minutes(5)))
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
