import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Traffic through a Kanshi NBD server from a Python libnbd client:
/// `ransomware` reads blocks and overwrites them with random bytes,
/// `benign` writes and reads low-entropy text; each for `seconds`.
private func traffic(_ kind: String, uri: String, seconds: Double, seed: Int) throws -> Process {
    let script = """
        import nbd, os, random, sys, time
        random.seed(\(seed))
        h = nbd.NBD(); h.connect_uri(sys.argv[1])
        size = h.get_size(); end = time.time() + \(seconds)
        text = (b"quarterly report line, nothing to see here. " * 100)[:4096]
        while time.time() < end:
            off = random.randrange(0, size // 4096) * 4096
            if "\(kind)" == "ransomware":
                h.pread(4096, off); h.pwrite(os.urandom(4096), off)
            else:
                h.pwrite(text, off); h.pread(4096, random.randrange(0, size // 4096) * 4096)
            time.sleep(0.002)
        h.flush()
        """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    p.arguments = ["-c", script, uri]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    return p
}

@Suite(.serialized) struct LiveDetectionTests {
    static let hasLibnbd = FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/nbd.py") || Tools.requireAll

    /// Records a labelled dataset of Kanshi journals, trains on it, then
    /// follows a journal being written: ransomware-like traffic raises a JSON
    /// alert while it runs; benign traffic does not.
    @Test(.enabled(if: hasLibnbd, "python3-libnbd is not installed (apt-get install python3-libnbd)"), .timeLimit(.minutes(10)))
    func recordTrainAndFollow() throws {
        let s = Scratch("live")
        for (family, kind) in [("Ransom", "ransomware"), ("Benign", "benign")] {
            try FileManager.default.createDirectory(atPath: s.file("data/\(family)"), withIntermediateDirectories: true)
            try makeImage(s.file("\(family).img"), bytes: 32 << 20)
            let server = try KanshiServer(image: s.file("\(family).img"), journal: s.file("data/\(family)/run1"), socket: s.file("\(family).sock"))
            let p = try traffic(kind, uri: server.uri, seconds: 4, seed: 1)
            p.waitUntilExit()
            try server.stop()
            #expect(p.terminationStatus == 0)
        }
        _ = FileManager.default.createFile(atPath: s.file("labels.csv"), contents: Data("Ransom,ransomware\nBenign,benign\n".utf8))
        let train = try run([Paths.kanshi, "train", "--dataset", s.file("data"), "--labels", s.file("labels.csv"),
                             "--classifier", "gbdt", "--model", s.file("model.json")])
        try #require(train.ok, "\(train.stderr)")

        for (kind, expectAlert) in [("ransomware", true), ("benign", false)] {
            try makeImage(s.file("live-\(kind).img"), bytes: 32 << 20)
            let server = try KanshiServer(image: s.file("live-\(kind).img"), journal: s.file("live-\(kind)"), socket: s.file("live-\(kind).sock"))
            let detector = Process()
            detector.executableURL = URL(fileURLWithPath: Paths.kanshi)
            detector.arguments = ["detect", "--model", s.file("model.json"), "--journal", s.file("live-\(kind)"), "--follow",
                                  "--exit-on-alert", "--poll-ms", "100"]
            _ = FileManager.default.createFile(atPath: s.file("alerts-\(kind)"), contents: nil)
            detector.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: s.file("alerts-\(kind)")))
            detector.standardError = FileHandle.nullDevice
            try detector.run()
            let start = Date()
            let client = try traffic(kind, uri: server.uri, seconds: 6, seed: 2)
            var alertAfter: Double?
            while client.isRunning || detector.isRunning {
                if alertAfter == nil, let text = try? String(contentsOfFile: s.file("alerts-\(kind)"), encoding: .utf8), text.contains("\"alert\"") {
                    alertAfter = Date().timeIntervalSince(start)
                }
                if !client.isRunning { break }
                usleep(50_000)
            }
            client.waitUntilExit()
            usleep(500_000)
            if detector.isRunning { kill(detector.processIdentifier, SIGTERM) }
            detector.waitUntilExit()
            try server.stop()
            let text = try String(contentsOfFile: s.file("alerts-\(kind)"), encoding: .utf8)
            if expectAlert {
                let line = try #require(text.split(separator: "\n").first, "no alert for ransomware-like traffic")
                let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                #expect(o["event"] as? String == "alert")
                #expect((o["bytesWrittenBeforeAlert"] as? Int ?? 0) > 0)
                let after = try #require(alertAfter, "the alert came only after the traffic ended")
                #expect(after < 6, "alert after \(after) s, while the traffic was still running")
            } else {
                #expect(text.isEmpty, "benign traffic raised: \(text)")
            }
        }
    }
}
