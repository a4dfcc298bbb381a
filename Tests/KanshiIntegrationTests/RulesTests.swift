import Foundation
import Testing

/// The built-in rules on the workloads: every simulated ransomware caught, no benign workload
/// alerted on, under `kanshi trace` on the host and in the sandbox.
struct RulesWorkloadTests {
    static let ransomware = ["inplace", "copy-delete", "rename", "partial", "slow"]
    static let benign = ["compress", "encrypt-one", "secure-delete", "database", "build", "copy-tree", "edit", "package-install", "save-big"]

    static func alerts(_ path: String) -> [[String: Any]] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test(.timeLimit(.minutes(10)))
    func onTheHostUnderTraceEveryRansomwareIsCaughtAndKilledAndNoBenignWorkloadAlerts() throws {
        let s = Scratch("rules-host")
        let corpus = s.file("corpus")
        let b = try run([Paths.kanshi, "corpus", "build", "--dir", corpus, "--seed", "4", "--size-mib", "16"])
        #expect(b.ok, "\(b.stderr)")
        for w in Self.ransomware + Self.benign {
            let dir = s.file("run-\(w)")
            let cp = try run(["cp", "-a", corpus, dir])
            #expect(cp.ok, "\(cp.stderr)")
            let log = s.file("\(w).jsonl"), alerts = s.file("\(w).alerts.jsonl")
            let r = try run([Paths.kanshi, "trace", "--quiet", "--rules", "builtin", "--alerts", alerts, "--log", log,
                             "--", Paths.kanshi, "workload", w, "--dir", dir, "--seed", "2", "--rate-mib", "8"], timeout: 240)
            let got = Self.alerts(alerts)
            if Self.ransomware.contains(w) {
                let rules = Set(got.compactMap { $0["rule"] as? String })
                #expect(rules.contains { $0.hasPrefix("ransomware-") }, "\(w): \(rules) \(r.stderr.suffix(800))")
                // The kill action: the workload did not finish its corpus.
                #expect(r.stderr.contains("killed"), "\(w): \(r.stderr.suffix(800))")
                // Offline on the finished log: the same alerts.
                let check = try run([Paths.kanshi, "rules", "check", "--log", log, "--quiet"])
                #expect(check.status == 3, "\(w): \(check.stderr)")
                let offline = check.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                #expect(offline.map { $0["rule"] as? String } == got.map { $0["rule"] as? String }, "\(w)")
                #expect(offline.map { ($0["evidence"] as? [[String: Any]])?.count } == got.map { ($0["evidence"] as? [[String: Any]])?.count })
            } else {
                #expect(r.ok, "\(w): status \(r.status) \(r.stderr.suffix(800))")
                #expect(got.isEmpty, "\(w): \(got.map { $0["output"] ?? "" })")
            }
        }
    }

    @Test(.enabled(if: SandboxTests.peers, "needs qemu-system-x86 and e2fsprogs"), .timeLimit(.minutes(15)))
    func inTheSandboxEveryRansomwareIsCaughtAndPausedAndNoBenignWorkloadAlerts() throws {
        let s = Scratch("rules-sandbox")
        let sandbox = s.file("sandbox")
        let b = try run([Paths.kanshi, "sandbox", "build", "--dir", sandbox, "--corpus-mib", "8", "--disk-mib", "64"], timeout: 600)
        #expect(b.ok, "\(b.stderr.suffix(1500))")
        for w in Self.ransomware + Self.benign {
            let disk = s.file("\(w).img")
            #expect(try run(["cp", "--sparse=always", sandbox + "/victim.img", disk]).ok)
            let alerts = s.file("\(w).alerts.jsonl")
            let r = try run([Paths.kanshi, "sandbox", "run", "--dir", sandbox, "--disk", disk, "--rules", "builtin", "--alerts", alerts,
                             "--trace", s.file("\(w).jsonl"), "--",
                             "kanshi", "workload", w, "--dir", "/mnt/corpus", "--seed", "2", "--rate-mib", "8"], timeout: 300)
            let got = Self.alerts(alerts)
            if Self.ransomware.contains(w) {
                #expect(r.status == 3, "\(w): status \(r.status) \(r.stderr.suffix(1500))")
                #expect(r.stderr.contains("paused the guest"), "\(w): \(r.stderr.suffix(1500))")
                #expect(got.contains { ($0["rule"] as? String ?? "").hasPrefix("ransomware-") }, "\(w): \(got)")
            } else {
                #expect(r.ok, "\(w): status \(r.status) \(r.stderr.suffix(1500))")
                #expect(got.isEmpty, "\(w): \(got.map { $0["output"] ?? "" })")
            }
        }
    }

    /// `kanshi disk serve --rules` follows its journal as it writes it: block records and notes.
    @Test(.enabled(if: Tools.available("qemu-io"), "qemu-io is not installed (apt-get install qemu-utils)"))
    func rulesFollowAJournalBeingWritten() throws {
        let s = Scratch("rules-journal")
        try makeImage(s.file("disk.img"), bytes: 8 << 20)
        let rules = s.file("blocks.yaml"), alerts = s.file("alerts.jsonl")
        try """
            - rule: served
              condition: ev = note and note.event = serve-start
              severity: informational
            - rule: random-writes
              count:
                condition: ev = block_write and entropy > 7.5
                by: vm
                distinct: lba
                window: 10s
                threshold: 4
              severity: high
              output: "%count random-looking writes, the last at sector %lba"
            """.write(toFile: rules, atomically: true, encoding: .utf8)
        var random = [UInt8](repeating: 0, count: 4096)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        try Data(random).write(to: URL(fileURLWithPath: s.file("random.bin")))
        let server = try KanshiServer(image: s.file("disk.img"), journal: s.file("j"), socket: s.file("nbd.sock"),
                                      extra: ["--rules", rules, "--alerts", alerts])
        // Plain writes first (no alert), then random ones at four places.
        var commands = ["-c", "write -P 0x41 0 64k"]
        for k in 0..<4 { commands += ["-c", "write -s \(s.file("random.bin")) \(1 << 20 + k * 8192) 4k"] }
        let r = try run(["qemu-io", "-f", "raw", server.uri] + commands)
        #expect(r.ok, "\(r.stderr)")
        try server.stop()
        let got = Self.alerts(alerts)
        #expect(got.map { $0["rule"] as? String } == ["served", "random-writes"], "\(got) \(server.log.suffix(800))")
        let evidence = got.last?["evidence"] as? [[String: Any]] ?? []
        #expect(evidence.count == 4 && evidence.allSatisfy { $0["ev"] as? String == "block_write" && $0["offset"] != nil })
        #expect((got.last?["output"] as? String)?.hasPrefix("4 random-looking writes, the last at sector 2096") == true, "\(got)")
        // The same alerts from the finished journal.
        let check = try run([Paths.kanshi, "rules", "check", "--rules", rules, "--journal", s.file("j"), "--quiet"])
        #expect(check.status == 3 && check.stdout.split(separator: "\n").count == 2, "\(check.stdout) \(check.stderr)")
        let refused = try run([Paths.kanshi, "disk", "serve", "--image", s.file("disk.img"), "--no-journal", "--socket", s.file("x.sock"), "--rules", "builtin"])
        #expect(refused.status == 64 && refused.stderr.contains("--rules needs the journal being written"), "\(refused.stderr)")
    }

    /// A rules file (in the scratch directory) whose rule `trigger-touched` fires on `condition`
    /// with `actions` beside alert, and the rules in `more`.
    static func triggerRules(_ s: Scratch, condition: String = "ev = open and path = /mnt/trigger", actions: String, more: String = "") throws -> String {
        let path = s.file("rules.yaml")
        try """
            - rule: trigger-touched
              condition: \(condition)
              severity: high
              actions: [alert, \(actions)]

            """.appending(more).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A rule with the isolate action cuts the sandbox guest's network: what it sent before gets
    /// through, nothing after.
    @Test(.enabled(if: VMSensorTests.peers, VMSensorTests.why), .timeLimit(.minutes(10)))
    func isolateCutsTheGuestsNetwork() throws {
        let s = Scratch("rules-isolate")
        let listener = try VMSensorTests.Listener(s)
        let rules = try Self.triggerRules(s, actions: "isolate")
        let port = listener.port
        let job = """
            echo BEFORE-11 > /mnt/before; echo AFTER-22 > /mnt/after
            exfil tcp /mnt/before 10.0.2.2 \(port); sleep 1
            echo go > /mnt/trigger; sleep 2
            exfil tcp /mnt/after 10.0.2.2 \(port); exfil udp /mnt/after 10.0.2.2 \(port); true
            """
        let r = try VMSensorTests.sandbox(s, guest: try SandboxTests.guest(),
                                         ["--net", "--add", try VMSensorTests.exfilProgram(s), "--rules", rules, "--alerts", s.file("a.jsonl")], job: job)
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(2000))\(r.result.stderr.suffix(1000))")
        usleep(500_000)
        let got = listener.received
        #expect(got.contains("BEFORE-11"), "the first send did not get through, so the test proves nothing: \(got)")
        #expect(!got.contains("AFTER-22"), "sent after the network was cut: \(got)")
        let rulesJSON = r.json["rules"] as? [String: Any]
        #expect(rulesJSON?["isolated"] as? String == "rule trigger-touched", "\(r.json)")
        #expect(Self.alerts(s.file("a.jsonl")).map { $0["rule"] as? String } == ["trigger-touched"])
    }

    /// A rule with the kill action kills the guest process from outside (SIGKILL marked pending in
    /// the guest kernel's own task state, written into the shared RAM while the guest is paused):
    /// the loop it ran stops early, its parent sees status 137, the guest runs on.
    @Test(.enabled(if: VMSensorTests.peers, VMSensorTests.why), .timeLimit(.minutes(10)))
    func killEndsTheGuestProcess() throws {
        let s = Scratch("rules-kill-guest")
        let rules = try Self.triggerRules(s, actions: "kill", more: """
            - rule: gone-read
              condition: ev = open and path = /mnt/gone and proc.name = cat
              severity: high
              actions: [alert, kill]
            """)
        // cat has exited (or is exiting) by the time its rule fires: that kill is reported as not done.
        let job = """
            echo x > /mnt/gone; cat /mnt/gone > /dev/null; sleep 1
            sh -c 'echo go > /mnt/trigger; i=0; while [ $i -lt 100 ]; do i=$((i+1)); echo $i > /mnt/count; sleep 0.1; done; echo LOOP-FINISHED'
            echo "LOOP-STATUS $?"; echo "COUNT $(cat /mnt/count)"; echo GUEST-RAN-ON
            """
        let r = try VMSensorTests.sandbox(s, guest: try SandboxTests.guest(), ["--rules", rules, "--alerts", s.file("a.jsonl")], job: job)
        let out = r.result.stdout
        #expect(r.result.status == 0, "\(out.suffix(2000))\(r.result.stderr.suffix(1000))")
        #expect(out.contains("LOOP-STATUS 137") && !out.contains("LOOP-FINISHED"), "\(out.suffix(2000))")
        #expect(out.contains("GUEST-RAN-ON"), "\(out.suffix(2000))")
        let count = out.split(separator: "\n").first { $0.hasPrefix("COUNT ") }.flatMap { Int($0.dropFirst(6)) }
        #expect((count ?? 100) < 60, "the loop ran \(count.map(String.init) ?? "?") of 100 rounds")
        let kills = (r.json["rules"] as? [String: Any])?["kills"] as? [String] ?? []
        #expect(kills.count == 2 && kills[0].hasPrefix("rule gone-read: cannot signal guest process ") && kills[0].hasSuffix("(it has ended)")
                && kills[1].hasPrefix("rule trigger-touched: killed pid "), "\(r.json["rules"] ?? "none")")
        // The VM sensor saw the process end by SIGKILL.
        let pid = (Self.alerts(s.file("a.jsonl")).last?["pid"] as? NSNumber)?.intValue
        let exit = r.events.first { $0["ev"] as? String == "exit" && ($0["pid"] as? NSNumber)?.intValue == pid }
        #expect(pid != nil && (exit?["ret"] as? NSNumber)?.intValue == 137 && exit?["flags"] as? String == "killed by signal 9",
                "pid \(pid ?? -1): \(exit ?? [:])")
    }

    /// Under `kanshi trace`, a rule with the isolate action cuts the process's network from its
    /// next call on: what it sent before gets through, nothing after, by any call, nor from a
    /// child it starts later; a Unix socket still works.
    @Test(.timeLimit(.minutes(10)))
    func isolateCutsAProcesssNetworkUnderTrace() throws {
        let s = Scratch("rules-isolate-host")
        let listener = try VMSensorTests.Listener(s)
        let rules = try Self.triggerRules(s, condition: "ev = open and path.name = trigger", actions: "isolate")
        let alerts = s.file("a.jsonl"), log = s.file("t.jsonl")
        let program = s.file("sender.py")
        try """
            import os, socket, subprocess, sys, time
            port = int(sys.argv[1])
            def attempt(name, f):
                try: f(); print(name, 'sent', flush=True)
                except OSError as e: print(name, 'refused', e.errno, flush=True)
            tcp = socket.create_connection(('127.0.0.1', port)); tcp.sendall(b'EARLY-TCP')
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            local, other = socket.socketpair()
            open(sys.argv[2], 'w').write('go')
            time.sleep(3)
            attempt('sendall', lambda: tcp.sendall(b'LATE-SENDALL'))
            attempt('write', lambda: os.write(tcp.fileno(), b'LATE-WRITE'))
            attempt('sendto', lambda: udp.sendto(b'LATE-UDP', ('127.0.0.1', port)))
            attempt('connect', lambda: socket.create_connection(('::1', port)).sendall(b'LATE-IPV6'))
            attempt('unix', lambda: local.sendall(b'local'))
            child = "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1]))).sendall(b'LATE-CHILD')"
            print('child', subprocess.run([sys.executable, '-c', child, str(port)], stderr=subprocess.DEVNULL).returncode, flush=True)
            """.write(toFile: program, atomically: true, encoding: .utf8)
        let r = try run([Paths.kanshi, "trace", "--rules", rules, "--alerts", alerts, "--log", log, "--",
                         "python3", program, "\(listener.port)", s.file("trigger")], timeout: 120)
        #expect(r.ok, "\(r.stdout) \(r.stderr.suffix(1500))")
        usleep(300_000)
        let got = listener.received
        #expect(got.contains("EARLY-TCP"), "the first send did not get through, so the test proves nothing: \(got)")
        #expect(!got.contains("LATE"), "sent after the network was cut: \(got)")
        for call in ["sendall", "write", "sendto", "connect"] {
            #expect(r.stdout.contains("\(call) refused 1"), "\(call): \(r.stdout)")
        }
        #expect(r.stdout.contains("unix sent"), "\(r.stdout)")
        #expect(r.stdout.contains("child 1"), "the child's connect should have failed: \(r.stdout)")
        #expect(r.stderr.contains("rule trigger-touched cut the network of"), "\(r.stderr.suffix(800))")
        #expect(r.stderr.contains("NETWORK CUT: rule trigger-touched"), "\(r.stderr.suffix(1500))")
        // The child started after the cut is marked in the summary's process tree too.
        #expect(r.stderr.components(separatedBy: "NETWORK CUT: rule trigger-touched").count - 1 >= 2, "\(r.stderr.suffix(1500))")
        let events = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(events.contains { $0["ev"] as? String == "notice" && $0["reason"] as? String == "network cut: rule trigger-touched" })
        let refused = events.filter { $0["ev"] as? String == "blocked" }
        #expect(refused.count >= 5 && refused.allSatisfy { ($0["reason"] as? String ?? "").hasSuffix("network cut: rule trigger-touched") }, "\(refused)")
        #expect(Self.alerts(alerts).map { $0["rule"] as? String } == ["trigger-touched"])
    }

    /// The tracer logs utime calls (given times or now); the timestamp rule tells them apart.
    @Test func forgedTimestampsAreCaughtOnTheHost() throws {
        let s = Scratch("rules-utime")
        let f = s.file("implant"), log = s.file("t.jsonl"), alerts = s.file("a.jsonl")
        let r = try run([Paths.kanshi, "trace", "--quiet", "--rules", "builtin", "--alerts", alerts, "--log", log, "--",
                         "sh", "-c", "touch \(f); touch \(f); touch -d '2019-03-01 10:00:00 UTC' \(f)"])
        #expect(r.ok, "\(r.stderr)")
        let events = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["ev"] as? String == "utime" && $0["path"] as? String == f }
        #expect(events.map { $0["flags"] as? String } == ["now", "now", "set"], "\(events)")
        #expect(events.last?["reason"] as? String == "mtime 1551434400")
        let got = Self.alerts(alerts)
        #expect(got.map { $0["rule"] as? String } == ["timestamp-forged"], "\(got)")
    }

    /// The VM sensor reads a utime call's times from guest memory: the same fields as the host
    /// tracer, so the timestamp rule tells `touch` from `touch -d` in the guest too.
    @Test(.enabled(if: VMSensorTests.peers, VMSensorTests.why), .timeLimit(.minutes(10)))
    func forgedTimestampsAreCaughtInTheGuest() throws {
        let s = Scratch("rules-utime-guest")
        let job = "touch /mnt/implant; touch /mnt/implant; touch -d '2019-03-01 10:00:00' /mnt/implant"
        let r = try VMSensorTests.sandbox(s, guest: try SandboxTests.guest(), ["--rules", "builtin", "--alerts", s.file("a.jsonl")], job: job)
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(2000))\(r.result.stderr.suffix(1000))")
        let events = r.events.filter { $0["ev"] as? String == "utime" && $0["path"] as? String == "/mnt/implant" }
        let flags = events.map { $0["flags"] as? String ?? "?" }
        #expect(flags.count >= 3 && flags.dropLast().allSatisfy { $0 == "now" } && flags.last == "set", "\(events)")
        #expect(events.last?["reason"] as? String == "mtime 1551434400", "\(events)")
        let got = Self.alerts(s.file("a.jsonl"))
        #expect(got.map { $0["rule"] as? String } == ["timestamp-forged"], "\(got)")
    }

    @Test func aBadRulesFileIsRefusedBeforeAnythingRuns() throws {
        let s = Scratch("rules-bad")
        let rules = s.file("bad.yaml")
        try "- rule: x\n  condition: ev = open and pth = /etc\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let marker = s.file("ran")
        let r = try run([Paths.kanshi, "trace", "--quiet", "--rules", rules, "--log", s.file("t.jsonl"), "--", "touch", marker])
        #expect(r.status == 1 && r.stderr.contains("\(rules):2:28: unknown field 'pth'"), "\(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker))
        let v = try run([Paths.kanshi, "rules", "validate", rules])
        #expect(v.status == 1 && v.stderr.contains("\(rules):2:28:"), "\(v.stderr)")
        let c = try run([Paths.kanshi, "rules", "check", "--rules", rules, "--log", s.file("t.jsonl")])
        #expect(c.status == 1 && c.stderr.contains("\(rules):2:28:"), "\(c.stderr)")
        let neither = try run([Paths.kanshi, "rules", "check"])
        #expect(neither.status == 64 && neither.stderr.contains("give --log FILE or --journal DIR"), "\(neither.stderr)")
    }
}
