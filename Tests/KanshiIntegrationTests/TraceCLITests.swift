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
}
