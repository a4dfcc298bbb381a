import CKanshiVMIRing
import Foundation
import KanshiTrace
import Testing
@testable import KanshiVMSensor

/// The behaviour model on records laid out byte for byte as the plugin writes them.
@Suite struct GuestBehaviourTests {
    /// Feeds `records`, returns the log's events (as JSON objects) and the managed set.
    func run(_ records: [[UInt8]], protect: [String] = [], allCalls: Bool = false) throws -> (events: [[String: Any]], set: ManagedSet, model: GuestBehaviour) {
        let path = NSTemporaryDirectory() + "kanshi-vm-test-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try EventLog(path: path)
        var options = GuestBehaviourOptions()
        options.protect = protect
        options.allCalls = allCalls
        options.vm = "test-vm"
        let model = GuestBehaviour(options: options, log: log, managed: ManagedSet())
        for r in records { model.consume(try RecordBytes.decode(r)) }
        let (_, set) = model.finish()
        log.close()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let events = try text.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        return (events, set, model)
    }

    let openat: Int64 = 257, read: Int64 = 0, write: Int64 = 1, fork: Int64 = 57, execve: Int64 = 59, pipe2: Int64 = 293

    @Test func decodesWhatThePluginWrites() throws {
        let bytes = RecordBytes.entry(cookie: 7, tid: 12, pid: 10, ppid: 1, comm: "cat", nr: openat,
                                      args: [UInt64(bitPattern: -100), 0x1000, 0], items: [RecordBytes.path("/etc/hostname")])
        guard case .entry(let e) = try RecordBytes.decode(bytes) else { Issue.record("not an entry"); return }
        #expect(e.who.tid == 12 && e.who.pid == 10 && e.who.comm == "cat" && e.cookie == 7 && e.nr == openat)
        #expect(e.args[0] == UInt64(bitPattern: -100) && e.item(.path1)?.text == "/etc/hostname")
        #expect(e.name == "openat")
        guard case .ret(let r) = try RecordBytes.decode(RecordBytes.ret(cookie: 7, -2)) else { Issue.record("not a return"); return }
        #expect(r.cookie == 7 && r.ret == -2)
    }

    @Test func badRecordsAreRefusedWithTheirPlace() throws {
        var bad = RecordBytes.ret(cookie: 1, 0)
        bad[4] = 99  // unknown type
        #expect(throws: GuestRecordError.self) { try RecordBytes.decode(bad) }
        var short = RecordBytes.entry(cookie: 1, tid: 1, nr: 0)
        short.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(24), toByteOffset: 0, as: UInt32.self) }
        #expect(throws: GuestRecordError.self) { try RecordBytes.decode(Array(short.prefix(24))) }
        var overlong = RecordBytes.entry(cookie: 1, tid: 1, nr: 2, items: [RecordBytes.path("/x")])
        overlong[overlong.count - 6] = 0xff  // an item longer than its record
        let e = try? RecordBytes.decode(overlong)
        #expect(e == nil || { if case .entry = e! { return true }; return false }())
    }

    @Test func readingAProtectedFileMakesTheProcessAndItsOutputManaged() throws {
        let r = try run([
            RecordBytes.entry(cookie: 1, tid: 20, comm: "sh", nr: openat, args: [UInt64(bitPattern: -100), 0, 0], items: [RecordBytes.path("/mnt/secret.txt")]),
            RecordBytes.ret(cookie: 1, 3),
            RecordBytes.entry(cookie: 2, tid: 20, comm: "sh", nr: openat, args: [UInt64(bitPattern: -100), 0, 0o1101], items: [RecordBytes.path("out.txt")]),
            RecordBytes.ret(cookie: 2, 4),
            RecordBytes.entry(cookie: 3, tid: 20, comm: "sh", nr: write, args: [4, 0, 10]),
            RecordBytes.ret(cookie: 3, 10),
        ], protect: ["/mnt/secret.txt"])
        let managed = r.events.filter { $0["ev"] as? String == "managed" }
        #expect(managed.first?["reason"] as? String == "read protected file /mnt/secret.txt")
        // cwd unknown for a process first seen without its parent: the relative path stays as given.
        #expect(r.set.processes.map(\.pid) == [20])
        #expect(r.events.allSatisfy { $0["vm"] as? String == "test-vm" })
        #expect(r.events.contains { $0["ev"] as? String == "write" && $0["bytes"] as? Int == 10 && $0["managed"] as? Bool == true })
    }

    @Test func childrenExecAndPipesCarryTheTaint() throws {
        let r = try run([
            // pid 1 (cwd /) reads the secret, makes a pipe, forks 30, which execs cat.
            RecordBytes.entry(cookie: 1, tid: 1, ppid: 0, comm: "init", nr: pipe2, args: [0x2000, 0]),
            RecordBytes.ret(cookie: 1, 0, items: [RecordBytes.item(.fdPair, [3, 0, 0, 0, 4, 0, 0, 0])]),
            RecordBytes.entry(cookie: 2, tid: 1, ppid: 0, comm: "init", nr: fork),
            RecordBytes.ret(cookie: 2, 30),
            RecordBytes.entry(cookie: 3, tid: 30, ppid: 1, comm: "init", nr: execve, args: [0x3000, 0x4000],
                              items: [RecordBytes.path("/bin/cat"), RecordBytes.item(.argv, Array("cat".utf8))]),
            // exec worked: no return; the next call of thread 30 completes it.
            RecordBytes.entry(cookie: 4, tid: 30, ppid: 1, comm: "cat", nr: read, args: [3, 0, 100]),
            RecordBytes.ret(cookie: 4, 0),
            RecordBytes.entry(cookie: 5, tid: 1, ppid: 0, comm: "init", nr: openat, args: [UInt64(bitPattern: -100), 0, 0],
                              items: [RecordBytes.path("secret")]),
            RecordBytes.ret(cookie: 5, 5),
            RecordBytes.entry(cookie: 6, tid: 1, ppid: 0, comm: "init", nr: write, args: [4, 0, 6]),
            RecordBytes.ret(cookie: 6, 6),
            RecordBytes.exit(tid: 30, code: 3 << 8),
        ], protect: ["/secret"])
        let exec = r.events.first { $0["ev"] as? String == "exec" }
        #expect(exec?["path"] as? String == "/bin/cat" && exec?["ret"] as? Int == 0 && (exec?["argv"] as? [String]) == ["cat"])
        let spawn = r.events.first { $0["ev"] as? String == "spawn" && $0["child"] as? Int == 30 }
        #expect(spawn?["pid"] as? Int == 1 && spawn?["call"] as? String == "fork")
        #expect(r.set.processes.map(\.pid).sorted() == [1, 30])
        let why30: String = r.set.processes.first(where: { $0.pid == 30 }).map { $0.reason.why } ?? ""
        #expect(why30.hasPrefix("received data through pipe:[vm:1] from managed pid 1"), "\(why30)")
        let exit = r.events.first { $0["ev"] as? String == "exit" }
        #expect(exit?["pid"] as? Int == 30 && exit?["ret"] as? Int == 3)
        #expect(r.model.unreturned == 1)
    }

    @Test func managedChildrenAreManagedFromTheStart() throws {
        let r = try run([
            RecordBytes.entry(cookie: 1, tid: 40, ppid: 1, nr: 2, args: [0x1000, 0], items: [RecordBytes.path("/data/keys/a.pem")]),
            RecordBytes.ret(cookie: 1, 3),
            RecordBytes.entry(cookie: 2, tid: 40, ppid: 1, nr: 56, args: [0x11, 0]),  // clone without CLONE_THREAD
            // the child runs before the parent's return
            RecordBytes.entry(cookie: 3, tid: 41, ppid: 40, nr: 42, args: [3, 0x5000, 16],
                              items: [RecordBytes.item(.sockaddr, [2, 0, 0x1f, 0x90, 93, 184, 216, 34, 0, 0, 0, 0, 0, 0, 0, 0])]),
            RecordBytes.ret(cookie: 3, -101),
            RecordBytes.ret(cookie: 2, 41),
        ], protect: ["/data/keys"])
        #expect(r.set.processes.map(\.pid).sorted() == [40, 41])
        #expect(r.model.egressAttempts == ["pid 41 (prog): connect to 93.184.216.34:8080"])
        let connect = r.events.first { $0["ev"] as? String == "connect" }
        #expect(connect?["addr"] as? String == "93.184.216.34:8080" && connect?["err"] as? String == "ENETUNREACH")
        #expect(r.events.filter { $0["ev"] as? String == "spawn" && $0["child"] as? Int == 41 }.count == 1)
    }

    @Test func i386CallsAreDecodedToo() throws {
        // socketcall(SYS_CONNECT, args) from a 32-bit process, then open (5) of a protected file.
        let scArgs: [UInt8] = [3, 0, 0, 0, 0, 0x60, 0, 0, 16, 0, 0, 0] + [UInt8](repeating: 0, count: 12)
        let r = try run([
            RecordBytes.entry(cookie: 1, tid: 50, nr: 5, args: [0x1000, 0], items: [RecordBytes.path("/secret")], i386: true),
            RecordBytes.ret(cookie: 1, 3),
            RecordBytes.entry(cookie: 2, tid: 50, nr: 102, args: [3, 0x7000], items: [
                RecordBytes.item(.socketcall, scArgs),
                RecordBytes.item(.sockaddr, [2, 0, 0, 80, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0])], i386: true),
            RecordBytes.ret(cookie: 2, 0),
        ], protect: ["/secret"])
        #expect(r.set.processes.map(\.pid) == [50])
        let open = r.events.first { $0["ev"] as? String == "open" }
        #expect(open?["call"] as? String == "open" && open?["path"] as? String == "/secret")
        #expect(r.events.contains { $0["ev"] as? String == "connect" && $0["addr"] as? String == "10.1.2.3:80" && $0["call"] as? String == "socketcall" })
    }

    @Test func everyCallIsLoggedWithAllCalls() throws {
        let r = try run([
            RecordBytes.entry(cookie: 1, tid: 60, nr: 110),  // getppid
            RecordBytes.ret(cookie: 1, 1),
            RecordBytes.entry(cookie: 2, tid: 60, nr: 4, args: [0x1000, 0x2000], items: [RecordBytes.path("/etc/passwd")]),  // stat
            RecordBytes.ret(cookie: 2, 0),
            RecordBytes.entry(cookie: 3, tid: 60, nr: 231, args: [0]),  // exit_group: no return
        ], allCalls: true)
        let names = r.events.filter { $0["ev"] as? String == "call" }.compactMap { $0["call"] as? String }
        #expect(names == ["getppid", "stat", "exit_group"])
        #expect(r.events.contains { $0["call"] as? String == "stat" && $0["path"] as? String == "/etc/passwd" })
    }

    /// A whole call written at its return (--all-calls, a call that read nothing at entry) is logged
    /// with its result; a call of the same thread that never came back is completed before it.
    @Test func wholeCallsAreLoggedWithTheirResult() throws {
        let r = try run([
            RecordBytes.call(cookie: 1, tid: 61, nr: 110, ret: 1),  // getppid
            RecordBytes.entry(cookie: 2, tid: 61, nr: 35, args: [0x1000]),  // nanosleep, interrupted by a handler
            RecordBytes.call(cookie: 3, tid: 61, nr: 39, ret: 61, time: 5),  // getpid
        ], allCalls: true)
        let calls = r.events.filter { $0["ev"] as? String == "call" }
        #expect(calls.compactMap { $0["call"] as? String } == ["getppid", "nanosleep", "getpid"])
        #expect(calls.first?["ret"] as? Int == 1 && calls.last?["ret"] as? Int == 61)
        #expect(calls[1]["ret"] == nil, "the interrupted call has no result: \(calls[1])")
    }

    @Test func aShortWholeCallIsRefusedWithItsPlace() throws {
        let short = MemoryLayout<kvmi_entry>.size
        var bytes = Array(RecordBytes.call(cookie: 1, tid: 61, nr: 110, ret: 1).prefix(short))
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(short), toByteOffset: 0, as: UInt32.self) }
        let error = #expect(throws: GuestRecordError.self) { try RecordBytes.decode(bytes) }
        #expect(error?.description.contains("type 5 of \(short) bytes, needs \(MemoryLayout<kvmi_call>.size)") == true, "\(String(describing: error))")
    }
}
