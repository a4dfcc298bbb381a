import Testing
@testable import KanshiTrace

/// The words after `kanshi trace`'s options: help before `--`, a program after it.
struct CommandLineTests {
    @Test func helpFlagsAskForHelp() {
        #expect(TraceCommandLine(passthrough: ["--help"]) == .help)
        #expect(TraceCommandLine(passthrough: ["-h"]) == .help)
        #expect(TraceCommandLine(passthrough: ["--help", "make"]) == .help)
    }

    @Test func afterTheTerminatorHelpIsAProgram() {
        #expect(TraceCommandLine(passthrough: ["--", "--help"]) == .program("--help", arguments: []))
        #expect(TraceCommandLine(passthrough: ["--", "-h", "x"]) == .program("-h", arguments: ["x"]))
    }

    @Test func programArgumentsAreTheProgramsOwn() {
        #expect(TraceCommandLine(passthrough: ["--", "ls", "--help"]) == .program("ls", arguments: ["--help"]))
        #expect(TraceCommandLine(passthrough: ["ls", "-h"]) == .program("ls", arguments: ["-h"]))
    }

    @Test func nothingGiven() {
        #expect(TraceCommandLine(passthrough: []) == .none)
        #expect(TraceCommandLine(passthrough: ["--"]) == .none)
        #expect(TraceCommandLine(passthrough: []).target == nil)
    }
}
