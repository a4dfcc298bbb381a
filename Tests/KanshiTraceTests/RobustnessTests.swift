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

    @Test func aLogWrittenByItsAppenderKeepsEveryEventInOrder() throws {
        let dir = Harness.tempDir()
        let path = dir + "/caller.jsonl"
        // Capacity is no limit here: the appender writes, it never drops.
        let log = try EventLog(path: path, capacity: 10, writer: .caller)
        let n = EventLog.chunkEvents * 3 + 7
        for i in 0..<n { var e = TraceEvent(kind: .notice); e.reason = "event \(i)"; log.append(e) }
        // Whole chunks are in the file already; the last few only after a flush.
        let before = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count
        #expect(before == EventLog.chunkEvents * 3)
        log.flush()
        let after = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(after.count == n)
        #expect(log.close() == 0)
        #expect(log.dropped == 0)
        let seqs = after.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }.compactMap { $0["seq"] as? Int }
        #expect(seqs.count == n && seqs.elementsEqual(1...n), "sequence numbers out of order or missing")
    }

    @Test(arguments: [EventLog.Writer.thread, .caller])
    func aFullDeviceIsReportedAtClose(_ writer: EventLog.Writer) throws {
        let log = try EventLog(path: "/dev/full", writer: writer)
        for _ in 0..<(EventLog.chunkEvents + 1) { log.append(TraceEvent(kind: .notice)) }
        #expect(log.close() == ENOSPC)
    }

    @Test func aThreadWrittenLogReusesItsChunks() throws {
        let dir = Harness.tempDir()
        let path = dir + "/thread.jsonl"
        let log = try EventLog(path: path)
        let n = EventLog.chunkEvents * 20 + 3
        for _ in 0..<n { log.append(TraceEvent(kind: .notice)) }
        #expect(log.close() == 0)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == n)
        #expect(log.dropped == 0)
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
