import Foundation
import Testing

/// The dashboard in a real browser: Debian's Chromium driven by Playwright (both installed by
/// scripts/setup.sh), against a real `kanshi server` that a disk server and a sandbox ship to.
@Suite(.serialized) struct DashboardTests {
    static let python = Paths.root.appendingPathComponent(".build/python/bin/python3").path
    static let script = Paths.root.appendingPathComponent("Tests/KanshiIntegrationTests/Fixtures/dashboard.py").path
    static let browser = FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
        && (try? run([python, "-c", "import playwright"]).ok) == true
    static let ready = Tools.requireAll || (browser && SandboxTests.peers && Tools.available("qemu-io"))
    static let why: Comment = "needs Chromium and Playwright (scripts/setup.sh), qemu-io and the sandbox's QEMU"

    @Test(.enabled(if: ready, why), .timeLimit(.minutes(15)))
    func aRecordingRendersAndASandboxAlertAppearsOnTheOpenPage() throws {
        let s = Scratch("dashboard")
        let data = s.file("srv")
        let token = try run([Paths.kanshi, "server", "token", "add", "lab", "--data", data])
        try token.stdout.write(toFile: s.file("lab.token"), atomically: true, encoding: .utf8)
        #expect(try run([Paths.kanshi, "server", "user", "add", "alice", "--data", data], input: Data("a long password\n".utf8)).ok)
        let server = try ServerProcess(data: data, log: s.file("server.log"))

        // A disk recording: a real NBD client writes and reads through a disk server that ships.
        try makeImage(s.file("d.img"), bytes: 64 << 20)
        let nbd = try KanshiServer(image: s.file("d.img"), journal: s.file("d.journal"), socket: s.file("nbd"), tcp: true,
                                   extra: ["--ship", server.url, "--ship-token-file", s.file("lab.token"), "--ship-as", "disk1"])
        for (i, op) in ["write -P 0x41 0 4M", "write -P 0x42 32M 2M", "read 0 1M", "write -P 0x43 48M 4M", "read 32M 2M"].enumerated() {
            #expect(try run(["qemu-io", "-f", "raw", "-c", op, nbd.uri]).ok, "step \(i)")
            usleep(200_000)
        }
        try nbd.stop()

        // The browser opens it, then waits on the page for the sandbox's alert.
        let out = s.file("browser")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let browser = Process()
        browser.executableURL = URL(fileURLWithPath: Self.python)
        browser.arguments = [Self.script, server.url, "alice", "a long password", "lab/disk1", out, "400"]
        browser.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let errors = Pipe()
        browser.standardError = errors
        try browser.run()
        defer { if browser.isRunning { browser.terminate() } }
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: out + "/ready") && browser.isRunning && Date() < deadline { usleep(100_000) }
        try #require(FileManager.default.fileExists(atPath: out + "/ready"),
                     "the browser never got to the page: \(String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self))")

        // A sandbox that ships its disk and behaviour log; its guest forges a file's timestamps.
        let job = "touch /mnt/implant; touch /mnt/implant; touch -d '2019-03-01 10:00:00' /mnt/implant; sleep 2"
        let sandbox = try VMSensorTests.sandbox(s, guest: try SandboxTests.guest(),
                                                ["--ship", server.url, "--ship-token-file", s.file("lab.token"), "--ship-as", "sandbox1"], job: job)
        #expect(sandbox.result.status == 0, "\(sandbox.result.stderr.suffix(1500))")
        #expect(sandbox.result.stderr.contains("kanshi: shipped") && !sandbox.result.stderr.contains("NOT acknowledged"), "\(sandbox.result.stderr.suffix(800))")
        FileManager.default.createFile(atPath: out + "/shipped", contents: nil)
        browser.waitUntilExit()
        // KANSHI_TEST_ARTIFACTS=DIR keeps the screenshots and the browser's findings.
        if let keep = ProcessInfo.processInfo.environment["KANSHI_TEST_ARTIFACTS"] {
            try? FileManager.default.removeItem(atPath: keep + "/dashboard")
            try? FileManager.default.createDirectory(atPath: keep, withIntermediateDirectories: true)
            try? FileManager.default.copyItem(atPath: out, toPath: keep + "/dashboard")
        }
        let text = try #require(try? String(contentsOfFile: out + "/result.json", encoding: .utf8),
                                "the browser script stopped early: \(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).suffix(2000))")
        let r = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])

        #expect((r["errors"] as? [String])?.isEmpty == true, "page errors: \(r["errors"] ?? "")")
        #expect((r["wrongPassword"] as? String)?.contains("wrong user or password") == true)
        #expect((r["recordings"] as? [String]) == ["lab/disk1"])
        // Writes in red and reads in blue, in both charts' screenshots.
        let timeline = r["timelineColours"] as? [Int] ?? [], heat = r["heatmapColours"] as? [Int] ?? []
        #expect(timeline.count == 2 && timeline[0] > 50 && timeline[1] > 50, "timeline red/blue pixels: \(timeline)")
        #expect(heat.count == 2 && heat[0] > 20 && heat[1] > 20, "heat-map red/blue pixels: \(heat)")
        #expect((r["blockRows"] as? Int ?? 0) >= 5)
        #expect((r["gadf"] as? [String] ?? []).contains("write-bytes"), "\(r["gadf"] ?? "")")
        #expect((r["drillRange"] as? String)?.contains("LBA") == true && !(r["drillOps"] as? [String] ?? []).isEmpty, "\(r)")
        #expect((r["filteredOps"] as? [String]) == ["read"], "\(r["filteredOps"] ?? "")")
        #expect((r["gadfDrill"] as? String)?.isEmpty == false && (r["gadfDrillRows"] as? Int ?? 0) > 0, "GADF click: \(r["gadfDrill"] ?? "none")")

        // The sandbox's alert: on the open page within 2 s of the server keeping it.
        #expect(r["alertRule"] as? String == "timestamp-forged", "\(r)")
        let api = r["apiSeen"] as? Double, page = r["pageSeen"] as? Double
        #expect(api != nil && page != nil, "the alert never showed: \(r)")
        if let api, let page { #expect(page - api <= 2, "the page showed the alert \(page - api) s after the API listed it") }
        #expect((r["toast"] as? String)?.contains("sandbox1") == true)

        // The sandbox's recording: its process tree, a second page of system calls that starts
        // after the first, a filter, and the alert's evidence followed to the event behind it.
        let tree = r["tree"] as? String ?? ""
        #expect(tree.contains("sh /tmp/job.sh") && tree.contains("mount -t ext4 /dev/vda /mnt"), "\(tree)")
        let first = r["eventsFirst"] as? [Int] ?? [], second = r["eventsSecond"] as? [Int] ?? []
        #expect(first.count == 100 && !second.isEmpty && second.first! > first.last!, "paging: \(first.suffix(3)) then \(second.prefix(3))")
        #expect((r["filteredKinds"] as? [String]) == ["utime"], "\(r["filteredKinds"] ?? "")")
        #expect(r["alertsShownNoMatch"] as? Int == 0 && r["alertsShownMatch"] as? Int == 1, "alerts filter: \(r["alertsShownNoMatch"] ?? "") / \(r["alertsShownMatch"] ?? "")")
        let hit = r["evidenceRow"] as? [String] ?? []
        #expect(hit.count == 1 && hit[0].contains("utime") && hit[0].contains("/mnt/implant"), "evidence #\(r["evidenceSeq"] ?? ""): \(hit)")

        // The report: one self-contained HTML file.
        let login = try run(["curl", "-s", "-c", s.file("cookies"), "-H", "Content-Type: application/json",
                             "-d", #"{"user":"alice","password":"a long password"}"#, server.url + "/api/login"])
        #expect(login.ok)
        let report = try run(["curl", "-s", "-b", s.file("cookies"), "-o", s.file("report.html"), "-w", "%{http_code}", server.url + "/api/recordings/lab/sandbox1/report"])
        #expect(report.stdout == "200")
        let html = (try? String(contentsOfFile: s.file("report.html"), encoding: .utf8)) ?? ""
        #expect(html.contains("window.KANSHI_REPORT") && html.contains("Chart.js v3") && !html.contains("src=\"/"), "the report is not self-contained")
        #expect(html.contains("timestamp-forged"))
    }
}
