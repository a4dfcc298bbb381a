import Foundation
import Testing

/// `kanshi server` as a child process.
final class ServerProcess {
    let process = Process()
    let logPath: String
    private(set) var port = 0
    var url: String { "http://127.0.0.1:\(port)" }

    /// Starts on `port` (0: a free one, read back from what the server prints).
    init(data: String, port: Int = 0, extra: [String] = [], log: String) throws {
        logPath = log
        process.executableURL = URL(fileURLWithPath: Paths.kanshi)
        process.arguments = ["server", "--data", data, "--listen", "127.0.0.1:\(port)"] + extra
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        h.seekToEndOfFile()
        let start = h.offsetInFile
        process.standardOutput = h
        process.standardError = h
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while true {
            let text = String(decoding: (FileManager.default.contents(atPath: log) ?? Data()).dropFirst(Int(start)), as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("kanshi: server at http://") }),
               let p = line.split(separator: " ")[3].split(separator: ":").last.flatMap({ Int($0) }) {
                self.port = p
                break
            }
            if !process.isRunning { throw Failure("kanshi server exited (\(process.terminationStatus)): \(text)") }
            if Date() > deadline { throw Failure("kanshi server did not start within 20 s: \(text)") }
            usleep(20_000)
        }
    }

    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { if process.isRunning { crash() } }
}

@Suite(.serialized) struct ServerCLITests {
    static let peers = Tools.requireAll || Tools.available("qemu-io")

    /// A disk served with --ship while a real NBD client writes, the server killed with -9 and
    /// restarted twice on the way: everything arrives, verifies, and equals the sensor's journal;
    /// a stored copy changed afterwards is caught.
    @Test(.enabled(if: peers, "needs qemu-io"), .timeLimit(.minutes(10)))
    func aDiskShipsThroughServerCrashes() throws {
        let s = Scratch("server-cli")
        let data = s.file("srv")
        let token = try run([Paths.kanshi, "server", "token", "add", "vm1", "--data", data])
        #expect(token.ok && token.stdout.hasPrefix("ks1."), "\(token.stderr)")
        try token.stdout.write(toFile: s.file("vm1.token"), atomically: true, encoding: .utf8)
        var server: ServerProcess? = try ServerProcess(data: data, log: s.file("server.log"))
        let port = server!.port
        try makeImage(s.file("d.img"), bytes: 64 << 20)
        let nbd = try KanshiServer(image: s.file("d.img"), journal: s.file("d.journal"), socket: s.file("nbd"), tcp: true,
                                   extra: ["--segment-mib", "1", "--ship", server!.url, "--ship-token-file", s.file("vm1.token"), "--ship-as", "disk1"])
        for (i, pattern) in ["0x41", "0x42", "0x43"].enumerated() {
            let w = try run(["qemu-io", "-f", "raw", "-c", "write -P \(pattern) \(i * 6)M 6M", nbd.uri])
            #expect(w.ok, "\(w.stderr)")
            if i < 2 {
                usleep(300_000)
                server?.crash()
                server = nil
                usleep(300_000)
                server = try ServerProcess(data: data, port: port, log: s.file("server.log"))
            }
        }
        try nbd.stop()
        #expect(nbd.log.contains("kanshi: shipped") && !nbd.log.contains("NOT acknowledged"), "\(nbd.log)")
        let verify = try run([Paths.kanshi, "server", "verify", "--data", data, "--json"])
        #expect(verify.ok, "\(verify.stdout)\(verify.stderr)")
        let findings = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [[String: Any]]
        #expect(findings?.count == 1 && findings?[0]["ok"] as? Bool == true && (findings?[0]["bytes"] as? Int ?? 0) > 18 << 20, "\(verify.stdout)")
        let local = try run([Paths.kanshi, "server", "verify", "--data", data, "--recording", "vm1/disk1", "--journal", s.file("d.journal")])
        #expect(local.ok, "\(local.stdout)\(local.stderr)")

        // A byte of the stored copy changed: caught, named.
        let seg = data + "/recordings/vm1/disk1/journal/segment-0000000000000002.kjs"
        var bytes = [UInt8](FileManager.default.contents(atPath: seg) ?? Data())
        try #require(bytes.count > 5000)
        bytes[5000] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: seg))
        let bad = try run([Paths.kanshi, "server", "verify", "--data", data])
        #expect(bad.status == 1 && bad.stdout.contains("vm1/disk1: FAILED") && bad.stdout.contains("segment-0000000000000002"), "\(bad.stdout)")
    }

    /// The rules and the process detector run on a behaviour log as it arrives: a ransomware
    /// workload traced on the host raises both; a benign one, neither.
    @Test(.timeLimit(.minutes(10)))
    func rulesAndDetectorsRunOnArrival() throws {
        let s = Scratch("server-detect")
        let data = s.file("srv")
        let token = try run([Paths.kanshi, "server", "token", "add", "host1", "--data", data])
        try token.stdout.write(toFile: s.file("t"), atomically: true, encoding: .utf8)
        #expect(try run([Paths.kanshi, "server", "user", "add", "a", "--data", data], input: Data("password1\n".utf8)).ok)
        #expect(try run([Paths.kanshi, "corpus", "build", "--dir", s.file("corpus"), "--seed", "4", "--size-mib", "4"]).ok)
        let server = try ServerProcess(data: data, extra: ["--process-prefix", s.file("run")], log: s.file("server.log"))
        #expect(String(decoding: FileManager.default.contents(atPath: s.file("server.log")) ?? Data(), as: UTF8.self).contains("detectors: disk, process"))
        for workload in ["inplace", "compress"] {
            try? FileManager.default.removeItem(atPath: s.file("run"))
            try FileManager.default.copyItem(atPath: s.file("corpus"), toPath: s.file("run"))
            let log = s.file("\(workload).jsonl")
            _ = try run([Paths.kanshi, "trace", "--quiet", "--log", log, "--", Paths.kanshi, "workload", workload, "--dir", s.file("run"), "--seed", "2", "--rate-mib", "8"])
            let up = try run([Paths.kanshi, "server", "upload", "--log", log, "--ship", server.url, "--ship-token-file", s.file("t"), "--ship-as", workload])
            #expect(up.ok, "\(up.stderr)")
        }
        #expect(try run(["curl", "-s", "-c", s.file("c"), "-H", "Content-Type: application/json", "-d", #"{"user":"a","password":"password1"}"#,
                         server.url + "/api/login"]).ok)
        let list = try run(["curl", "-s", "-b", s.file("c"), server.url + "/api/alerts?limit=1000"])
        let alerts = (try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]) ?? []
        let by = Dictionary(grouping: alerts, by: { $0["recording"] as? String ?? "?" }).mapValues { Set($0.compactMap { $0["rule"] as? String }) }
        #expect(by["inplace"]?.contains("ransomware-encrypts-files-in-place") == true, "\(by)")
        #expect(by["inplace"]?.contains("process-detector") == true, "\(by)")
        #expect(by["compress"] == nil, "the benign workload raised \(by["compress"] ?? [])")
    }

    /// `kanshi trace --ship`: the behaviour log arrives whole while the program runs.
    @Test(.timeLimit(.minutes(10)))
    func aTraceShipsItsLog() throws {
        let s = Scratch("server-trace")
        let data = s.file("srv")
        let token = try run([Paths.kanshi, "server", "token", "add", "host2", "--data", data])
        try token.stdout.write(toFile: s.file("t"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(data: data, log: s.file("server.log"))
        let log = s.file("run.jsonl")
        let r = try run([Paths.kanshi, "trace", "--quiet", "--log", log, "--ship", server.url, "--ship-token-file", s.file("t"), "--ship-as", "traced",
                         "--", "sh", "-c", "for i in 1 2 3; do cat /etc/hostname > /dev/null; sleep 0.3; done"])
        #expect(r.ok && r.stderr.contains("kanshi: shipped") && !r.stderr.contains("NOT acknowledged"), "\(r.stderr)")
        let stored = FileManager.default.contents(atPath: data + "/recordings/host2/traced/behaviour.jsonl")
        #expect(stored != nil && stored == FileManager.default.contents(atPath: log), "the server's copy differs from the log")
        #expect(String(decoding: stored ?? Data(), as: UTF8.self).contains("/etc/hostname"))
    }

    @Test func badServerInputsAreNamed() throws {
        let s = Scratch("server-bad")
        var r = try run([Paths.kanshi, "server", "token", "add", "bad name", "--data", s.file("srv")])
        #expect(r.status != 0 && r.stderr.contains("sensor name"), "\(r.stderr)")
        r = try run([Paths.kanshi, "server", "verify", "--data", s.file("missing")])
        #expect(r.status != 0 && r.stderr.contains("no such data directory"), "\(r.stderr)")
        r = try run([Paths.kanshi, "server", "--data", s.file("srv"), "--listen", "nowhere"])
        #expect(r.status != 0 && r.stderr.contains("ADDRESS:PORT"), "\(r.stderr)")
        r = try run([Paths.kanshi, "server", "--data", s.file("srv"), "--tls-cert", s.file("c.pem")])
        #expect(r.status != 0 && r.stderr.contains("--tls-key"), "\(r.stderr)")
        r = try run([Paths.kanshi, "server", "upload", "--journal", s.file("j"), "--ship", "http://127.0.0.1:1"], environment: ["KANSHI_SHIP_TOKEN": ""])
        #expect(r.status != 0 && r.stderr.contains("token"), "\(r.stderr)")
        r = try run([Paths.kanshi, "server", "user", "add", "alice", "--data", s.file("srv")], input: Data("short\n".utf8))
        #expect(r.status != 0 && r.stderr.contains("at least 8"), "\(r.stderr)")
    }
}
