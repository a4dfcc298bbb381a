import Foundation
import Testing
@testable import KanshiTrace

@Suite(.serialized, .disabled(if: Harness.unavailable != nil, "\(Harness.unavailable ?? "")"))
struct ManagedSetTests {
    @Test func writtenRenamedLinkedFilesBecomeManagedAndPersist() async throws {
        let dir = Harness.tempDir()
        let secret = dir + "/secret.txt"
        try "TOP-SECRET\n".write(toFile: secret, atomically: true, encoding: .utf8)
        var o = TraceOptions()
        o.protect = [dir + "/secret.txt"]
        o.loopbackExternal = true
        let setFile = dir + "/set.json"
        let run = try await Harness.trace([try Harness.binary("leak"), "copy", secret, "1"], options: o, dir: dir, managedSetFile: setFile)
        #expect(run.output.contains("copy: link ok"), "\(run.output)")
        let files = run.result.managed.files
        #expect(files[secret + ".copy"] != nil)
        #expect(files[secret + ".moved"]?.reason.why.contains("renamed") == true)
        #expect(files[secret + ".linked"] != nil)
        let procs = run.result.managed.processes
        #expect(procs.contains { $0.reason.why == "read protected file \(secret)" })

        // A later run starts with the saved set: reading the moved copy (not protected itself) makes a process managed.
        let listener = try Listener()
        var o2 = TraceOptions()
        o2.loopbackExternal = true
        let run2 = try await Harness.trace([try Harness.binary("leak"), "send", secret + ".moved", "\(listener.port)"],
                                           options: o2, dir: dir, managedSetFile: setFile)
        #expect(run2.output.contains("send: connect EPERM"), "\(run2.output)")
        #expect(listener.received() == 0)
        let managedEvent = run2.events.first { $0["ev"] as? String == "managed" && $0["path"] == nil }
        #expect((managedEvent?["reason"] as? String)?.contains("read managed file \(secret).moved") == true)
    }

    @Test func protectedDirectoryCoversItsFiles() {
        let set = ManagedSet(protected: ["/srv/secret/"])
        #expect(set.taint(of: "/srv/secret/a/b.txt") != nil)
        #expect(set.taint(of: "/srv/secretive.txt") == nil)
        #expect(set.taint(of: "/srv/secret") != nil)
    }

    @Test func normalizesPaths() {
        #expect(ManagedSet.normalize("a/../b/./c", cwd: "/x/y") == "/x/y/b/c")
        #expect(ManagedSet.normalize("/../..//etc/passwd") == "/etc/passwd")
    }

    @Test func badManagedSetFileIsAClearError() throws {
        let dir = Harness.tempDir()
        try "not json".write(toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
        #expect(throws: TraceError.self) { try ManagedSet.load(path: dir + "/bad.json", protect: []) }
    }
}
