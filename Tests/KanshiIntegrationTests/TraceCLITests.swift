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
