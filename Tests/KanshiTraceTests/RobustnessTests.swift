import Foundation
import Testing
@testable import KanshiTrace

/// A misbehaving tracee never crashes the tracer or loses events silently; bad inputs give clear errors.
@Suite(.serialized, .disabled(if: Harness.unavailable != nil, "\(Harness.unavailable ?? "")"))
struct RobustnessTests {
    @Test func badPointersAndOddSyscalls() async throws {
        let run = try await Harness.trace([try Harness.binary("odd"), "badptr"])
        #expect(run.output.contains("done"), "\(run.output)")
        #expect(run.output.contains("x32 -1"))
        #expect(run.result.exitCode == 0)
    }

    @Test func signalsStopContinueAndPtraceByTheTracee() async throws {
        let run = try await Harness.trace([try Harness.binary("odd"), "signals"])
        #expect(run.output.contains("signals done usr1=1"), "\(run.output)")
        #expect(run.output.contains("traceme -1"))
        #expect(run.result.exitCode == 0)
    }

    @Test func exitMidCallWithThreads() async throws {
        let run = try await Harness.trace([try Harness.binary("odd"), "exitmid"])
        #expect(run.result.exitCode == 3)
        #expect(run.events.contains { $0["ev"] as? String == "exit" && $0["ret"] as? Int == 3 })
    }

    @Test func killedMidCall() async throws {
        let run = try await Harness.trace([try Harness.binary("odd"), "killself"])
        #expect(run.result.exitCode == 128 + 9)
    }

    @Test func floodIsLoggedCompletelyOrCounted() async throws {
        let dir = Harness.tempDir()
        let n = 20000
        let run = try await Harness.trace([try Harness.binary("odd"), "flood", dir, "\(n)"], dir: dir)
        #expect(run.output.contains("flood done \(n)"))
        let opens = run.events.filter { $0["ev"] as? String == "open" && ($0["path"] as? String)?.hasSuffix("/flood") == true }.count
        let dropped = run.events.filter { $0["ev"] as? String == "dropped" }.compactMap { $0["bytes"] as? Int }.reduce(0, +)
        #expect(opens + dropped >= n, "opens \(opens) dropped \(dropped)")
        #expect(UInt64(dropped) == run.result.summary.dropped)
    }

    @Test func droppedEventsAreCounted() throws {
        let dir = Harness.tempDir()
        let log = try EventLog(path: dir + "/small.jsonl", capacity: 10)
        for _ in 0..<10_000 { log.append(TraceEvent(kind: .notice)) }
        #expect(log.close() == 0)
        let text = try String(contentsOfFile: dir + "/small.jsonl", encoding: .utf8)
        let lines = text.split(separator: "\n")
        let dropped = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["ev"] as? String == "dropped" }.compactMap { $0["bytes"] as? Int }.reduce(0, +)
        #expect(UInt64(dropped) == log.dropped)
        #expect(lines.count - lines.filter { $0.contains("\"dropped\"") }.count + dropped == 10_000)
    }

    @Test func missingProgramIsAClearError() async throws {
        let dir = Harness.tempDir()
        await #expect(throws: TraceError.self) {
            _ = try await Harness.traceTarget(.spawn(program: "no-such-program-kanshi", arguments: []), options: TraceOptions(),
                                              log: dir + "/x.jsonl", out: nil, setPath: dir + "/x.json")
        }
        #expect(TraceError.programNotFound("x").description.contains("not found"))
    }

    @Test func badPidIsAClearError() async throws {
        let dir = Harness.tempDir()
        do {
            _ = try await Harness.traceTarget(.attach(pid: 999_999_9), options: TraceOptions(), log: dir + "/x.jsonl", out: nil, setPath: dir + "/x.json")
            Issue.record("attach to a missing pid succeeded")
        } catch let e as TraceError {
            #expect(e.description.contains("no such process"))
        }
    }

    @Test func unwritableLogIsAClearError() {
        #expect(throws: TraceError.self) { _ = try EventLog(path: "/nonexistent-dir/x.jsonl") }
        do { _ = try EventLog(path: "/nonexistent-dir/x.jsonl") } catch {
            #expect("\(error)".contains("/nonexistent-dir/x.jsonl"))
        }
    }
}
