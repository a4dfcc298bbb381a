import Foundation
import Testing
@testable import KanshiTrace
#if canImport(Glibc)
import Glibc
#endif

@Suite(.serialized, .disabled(if: Harness.unavailable != nil, "\(Harness.unavailable ?? "")"))
struct AttachTests {
    /// Attaches to a running python3 that is asleep (a restarted call), then reads a protected file and tries to send it.
    @Test(.enabled(if: access("/usr/bin/python3", X_OK) == 0, "needs /usr/bin/python3 as the process to attach to"))
    func attachToRunningProcess() async throws {
        let dir = Harness.tempDir()
        let secret = dir + "/secret.txt"
        try "SECRET\n".write(toFile: secret, atomically: true, encoding: .utf8)
        let l = try Listener()
        let out = dir + "/out.txt"
        let go = dir + "/go"
        // The program waits (in restarted sleeps) until the tracer has attached,
        // however long a loaded machine takes to get there.
        let code = """
            import socket,time,sys,os
            open('\(dir)/ready','w').close()
            t=time.time()
            while not os.path.exists('\(go)') and time.time()-t < 300: time.sleep(0.05)
            data=open('\(secret)').read()
            try:
                s=socket.create_connection(('127.0.0.1',\(l.port))); s.sendall(data.encode()); print('sent')
            except OSError as e:
                print('refused', e.errno)
            sys.stdout.flush()
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", code]
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: out)
        try p.run()
        let pid = p.processIdentifier
        // Attach once the program runs (not while it is still being exec'd).
        let readyBy = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: dir + "/ready") && Date() < readyBy { usleep(20_000) }
        Thread {
            // Once /proc says the process has a tracer, let it go on.
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
                if let line = status.split(separator: "\n").first(where: { $0.hasPrefix("TracerPid:") }),
                   line.split(separator: "\t").last.map({ $0 != "0" }) == true {
                    break
                }
                usleep(20_000)
            }
            _ = FileManager.default.createFile(atPath: go, contents: Data())
        }.start()
        var o = TraceOptions()
        o.protect = [secret]
        o.loopbackExternal = true
        let run = try await Harness.traceTarget(.attach(pid: p.processIdentifier), options: o, log: dir + "/a.jsonl", out: nil, setPath: dir + "/a.json")
        p.waitUntilExit()
        let text = try String(contentsOfFile: out, encoding: .utf8)
        #expect(text.contains("refused 1"), "\(text)")
        #expect(l.received() == 0)
        #expect(run.events.contains { $0["ev"] as? String == "blocked" })
    }
}
