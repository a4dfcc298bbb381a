import Foundation
import Testing
@testable import KanshiTrace

@Suite(.serialized, .disabled(if: Harness.unavailable != nil, "\(Harness.unavailable ?? "")"))
struct DecodeTests {
    @Test func pathsAreResolvedAgainstCwdAndDirfd() async throws {
        let dir = Harness.tempDir()
        let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        let run = try await Harness.trace([try Harness.binary("odd"), "paths", dir])
        #expect(run.output.contains("paths done"))
        let ev = run.events
        func has(_ kind: String, _ path: String, _ path2: String? = nil) -> Bool {
            ev.contains { $0["ev"] as? String == kind && $0["path"] as? String == path && (path2 == nil || $0["path2"] as? String == path2) }
        }
        #expect(has("open", real + "/sub/at-file"))
        #expect(has("open", real + "/rel-file"))
        #expect(has("rename", real + "/sub/at-file", real + "/moved-file"))
        #expect(has("link", real + "/moved-file", real + "/sub/linked-file"))
        #expect(has("unlink", real + "/sub/linked-file"))
        #expect(has("truncate", real + "/rel-file"))
        #expect(ev.contains { $0["ev"] as? String == "pipe" && ($0["path"] as? String)?.hasPrefix("pipe:[") == true })
        #expect(ev.contains { $0["ev"] as? String == "dup" && ($0["path"] as? String)?.hasPrefix("pipe:[") == true })
        #expect(run.result.summary.filesDeleted.contains(real + "/sub/linked-file"))
    }

    @Test func followsForkVforkClone3AndExec() async throws {
        let run = try await Harness.trace([try Harness.binary("odd"), "forks", "/tmp", "20"])
        #expect(run.output.contains("forks done clone3=7"), "\(run.output)")
        let spawns = run.events.filter { $0["ev"] as? String == "spawn" }
        #expect(spawns.count >= 23)  // sh, 20 forks, vfork, clone3
        #expect(run.events.contains { $0["ev"] as? String == "exec" && ($0["argv"] as? [String]) == ["true"] })
        let exits = run.events.filter { $0["ev"] as? String == "exit" }
        #expect(exits.count >= 23)
        // Every child opened /etc/hostname and it is logged under the child's pid.
        let openers = Set(run.events.filter { $0["ev"] as? String == "open" && $0["path"] as? String == "/etc/hostname" }.compactMap { $0["pid"] as? Int })
        #expect(openers.count >= 21)
        #expect(run.result.summary.processes.count >= 23)
    }

    @Test func socketsAreDecodedWithAddresses() async throws {
        let l = try Listener()
        let run = try await Harness.trace([try Harness.binary("leak"), "unmanaged", "/dev/null", "\(l.port)"])
        #expect(run.output.contains("unmanaged: send ok"))
        let connect = run.events.first { $0["ev"] as? String == "connect" }
        #expect(connect?["addr"] as? String == "127.0.0.1:\(l.port)")
        #expect((connect?["path"] as? String)?.hasPrefix("socket:[") == true)
        let send = run.events.first { $0["ev"] as? String == "send" }
        #expect(send?["bytes"] as? Int == 5)
        #expect(run.result.summary.peers["127.0.0.1:\(l.port)"] != nil)
        #expect(l.received() == 5)
    }

    @Test func everyLineIsJSONWithStableFields() async throws {
        let run = try await Harness.trace(["/bin/sh", "-c", "echo hi > /dev/null; cat /etc/hostname >/dev/null"])
        #expect(!run.lines.isEmpty)
        for line in run.lines {
            let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(obj?["seq"] is Int && obj?["t"] is Int && obj?["pid"] is Int && obj?["ev"] is String, "\(line)")
        }
        let seqs = run.events.compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(1...seqs.count))
        #expect(run.result.summary.text.contains("processes"))
    }

    @Test func socketAddressDecoding() {
        let v4 = SocketAddress(bytes: [2, 0, 0x1f, 0x90, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(v4?.text == "10.0.0.1:8080")
        #expect(v4?.isExternal(loopbackExternal: false) == true)
        let lo = SocketAddress(bytes: [2, 0, 0, 80, 127, 0, 0, 1])
        #expect(lo?.isExternal(loopbackExternal: false) == false)
        #expect(lo?.isExternal(loopbackExternal: true) == true)
        var v6 = [UInt8](repeating: 0, count: 28)
        v6[0] = 10; v6[3] = 80; v6[23] = 1
        #expect(SocketAddress(bytes: v6)?.text == "[::1]:80")
        #expect(SocketAddress(bytes: v6)?.isExternal(loopbackExternal: false) == false)
        let unix = SocketAddress(bytes: [1, 0] + Array("/run/x.sock".utf8) + [0])
        #expect(unix?.text == "unix:/run/x.sock")
        #expect(unix?.isExternal(loopbackExternal: true) == false)
        #expect(SocketAddress(bytes: [2]) == nil)
        #expect(SocketAddress(bytes: [2, 0, 1]) == nil)
    }

    @Test func eventJSONEscapes() {
        var e = TraceEvent(kind: .open)
        e.path = "/tmp/a\"b\nc"
        e.ret = -2
        let obj = try? JSONSerialization.jsonObject(with: Data(e.json.utf8)) as? [String: Any]
        #expect(obj?["path"] as? String == "/tmp/a\"b\nc")
        #expect(obj?["err"] as? String == "ENOENT")
    }
}
