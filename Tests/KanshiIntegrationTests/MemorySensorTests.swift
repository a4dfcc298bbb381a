import Foundation
import KanshiJournal
import KanshiMemory
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The memory sensor on a real QEMU guest: its RAM shared with kanshi, LiME dumps,
/// processes and their pages read from outside with no helper in the guest.
@Suite(.serialized) struct MemorySensorTests {
    static let peers = Tools.available("qemu-system-x86_64", "mkfs.ext4", "cc")
    static let why: Comment = "needs QEMU 10 (bookworm-backports), e2fsprogs and a C compiler (scripts/setup.sh)"

    static func patternProgram(_ s: Scratch) throws -> String {
        let out = s.file("pattern")
        let cc = try run(["cc", "-static", "-O2", "-o", out, Paths.root.appendingPathComponent("Tests/KanshiIntegrationTests/Fixtures/pattern.c").path])
        try #require(cc.ok, "cc -static pattern.c: \(cc.stderr)")
        return out
    }

    /// "PATTERN-AT 0x... BYTES pid N" from the guest's console: (address, bytes, pid).
    static func patternLine(_ console: String) -> (address: UInt64, bytes: Int, pid: Int32)? {
        for line in console.split(separator: "\n") where line.hasPrefix("PATTERN-AT ") {
            let f = line.split(separator: " ")
            guard f.count >= 5, let a = UInt64(f[1].dropFirst(2), radix: 16), let n = Int(f[2]), let p = Int32(f[4]) else { continue }
            return (a, n, p)
        }
        return nil
    }

    /// busybox ps in the guest ("PID USER TIME COMMAND"): pid -> name as the kernel keeps it
    /// ([kthread], {comm} argv..., or argv[0]'s base name).
    static func guestPS(_ console: String) -> [Int32: String] {
        var out: [Int32: String] = [:]
        var inTable = false
        for line in console.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("PID") && t.contains("COMMAND") { inTable = true; continue }
            guard inTable else { continue }
            let f = t.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
            guard f.count == 3, let pid = Int32(f[0]) else { if t.hasPrefix("KANSHI-GUEST") { break } else { continue } }
            let command = f[2].trimmingCharacters(in: .whitespaces)
            let name: String
            if command.hasPrefix("["), let end = command.firstIndex(of: "]") {
                name = String(command[command.index(after: command.startIndex)..<end])
            } else if command.hasPrefix("{"), let end = command.firstIndex(of: "}") {
                name = String(command[command.index(after: command.startIndex)..<end])
            } else {
                name = String(command.split(separator: " ")[0].split(separator: "/").last ?? "")
            }
            out[pid] = name
        }
        return out
    }

    static func kanshiPS(_ args: [String]) throws -> [Int32: String] {
        let r = try run([Paths.kanshi, "sandbox", "ps", "--json"] + args, timeout: 120)
        try #require(r.ok, "kanshi sandbox ps \(args): \(r.stderr)")
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        var out: [Int32: String] = [:]
        for p in o["processes"] as? [[String: Any]] ?? [] {
            if let pid = p["pid"] as? Int, let name = p["name"] as? String { out[Int32(pid)] = name }
        }
        return out
    }

    /// Volatility 3's CLI from the venv scripts/setup.sh makes (.build/python); nil (the check
    /// skipped, with a note) when it is missing, unless KANSHI_REQUIRE_PEERS=1, where that fails.
    static func volatility() throws -> String? {
        let vol = Paths.root.appendingPathComponent(".build/python/bin/vol").path
        if FileManager.default.isExecutableFile(atPath: vol) { return vol }
        if Tools.requireAll { throw Failure("\(vol) is missing: scripts/setup.sh installs Volatility 3 there") }
        print("note: Volatility 3 is not installed (\(vol); scripts/setup.sh): its check is skipped")
        return nil
    }

    /// One Volatility plugin's rows (its JSON renderer), with a cache of its own.
    static func vol(_ vol: String, _ s: Scratch, dump: String, symbols: String, _ plugin: [String]) throws -> [[String: Any]] {
        let r = try run([vol, "-q", "-r", "json", "-f", dump, "-s", symbols] + plugin, timeout: 600,
                        environment: ["XDG_CACHE_HOME": s.file("vol-cache")])
        try #require(r.ok, "vol \(plugin): \(r.stderr.suffix(2000))")
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]], "vol \(plugin): \(r.stdout.prefix(500))")
        return rows
    }

    /// The sandbox's result object (pretty-printed JSON after the console), and its text.
    static func result(_ stdout: String) throws -> (String, [String: Any]) {
        let lines = stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let json = lines.lastIndex(of: "{").map { lines[$0...].joined(separator: "\n") } ?? "{}"
        return (json, try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]))
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func pattern(_ text: String, count: Int) -> [UInt8] {
        let t = Array(text.utf8)
        return (0..<count).map { t[$0 % t.count] }
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func aDumpAtTheCommandsEndHoldsTheGuestsProcessesAndPages() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("memory-dump")
        let disk = try SandboxTests.disk(s)
        let dump = s.file("guest.lime")
        let job = "echo hi > f; pattern KANSHI-PATTERN-7 600 /mnt/f & sleep 600 & sleep 601 & sleep 2; ps"
        let r = try run([Paths.kanshi, "sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", g, "--timeout", "240",
                         "--add", try Self.patternProgram(s), "--memory-dump", dump, "--json", "--", job], timeout: 300,
                        environment: SandboxTests.tmp(s))
        #expect(r.status == 0, "\(r.stdout.suffix(1500))\(r.stderr.suffix(800))")
        let (json, o) = try Self.result(r.stdout)
        let m = try #require(o["memoryDump"] as? [String: Any], "no memory dump in the result: \(json)")
        #expect(m["moment"] as? String == "job-end" && m["paused"] as? Bool == true)
        #expect(m["ramBytes"] as? Int == (512 << 20) - 0x60000)
        let (address, bytes, patternPid) = try #require(Self.patternLine(r.stdout), "no PATTERN-AT line: \(r.stdout.suffix(2000))")

        // The task list from the dump against ps in the guest, just before the command ended.
        let guest = Self.guestPS(r.stdout)
        let kanshi = try Self.kanshiPS(["--image", dump, "--guest", g])
        let listed = guest.filter { !$0.value.hasPrefix("kworker") }.filter { $0.key != 0 }
        #expect(guest[patternPid] == "pattern" && kanshi[patternPid] == "pattern", "guest \(guest), kanshi \(kanshi)")
        #expect(kanshi[1] == "init" && kanshi[2] == "kthreadd")
        #expect(kanshi.values.filter { $0 == "sleep" }.count >= 2)
        // Everything ps saw is still there at the dump but the job's shell and ps itself (they had ended).
        let missing = listed.filter { kanshi[$0.key] != $0.value && $0.value != "sh" && $0.value != "ps" }
        #expect(missing.isEmpty, "in the guest's ps, not in kanshi's: \(missing)")

        // Volatility 3 on the same dump, with the symbol table kanshi wrote from the vmlinuz alone:
        // linux.pslist lists exactly what kanshi's ps does; linux.lsof shows the file the program holds.
        let symbols = s.file("symbols")
        let sym = try run([Paths.kanshi, "sandbox", "symbols", "--out", symbols, "--guest", g])
        try #require(sym.ok, "\(sym.stderr)")
        if let vol = try Self.volatility() {
            let pslist = try Self.vol(vol, s, dump: dump, symbols: symbols, ["linux.pslist"])
            var listed: [Int32: String] = [:]
            for row in pslist { if let pid = row["PID"] as? Int, let comm = row["COMM"] as? String { listed[Int32(pid)] = comm } }
            #expect(listed == kanshi, "Volatility's linux.pslist and kanshi sandbox ps differ: only Volatility \(listed.filter { kanshi[$0.key] != $0.value }), only kanshi \(kanshi.filter { listed[$0.key] != $0.value })")
            let lsof = try Self.vol(vol, s, dump: dump, symbols: symbols, ["linux.lsof", "--pid", "\(patternPid)"])
            let paths = lsof.compactMap { $0["Path"] as? String }
            #expect(paths.contains("/mnt/f"), "linux.lsof for the pattern program: \(paths)")
        }

        // The pattern at its virtual address, through the process's page tables.
        let read = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "\(patternPid)",
                            "--read", String(format: "0x%llx", address), "--length", "\(bytes)", "--json"])
        try #require(read.ok, "\(read.stderr)")
        let got = try #require(try JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: Any])
        #expect(got["hex"] as? String == Self.hex(Self.pattern("KANSHI-PATTERN-7", count: bytes)))
        let find = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "\(patternPid)",
                            "--find", "KANSHI-PATTERN-7", "--json"])
        let hits = (try? JSONSerialization.jsonObject(with: Data(find.stdout.utf8)) as? [String: Any])?["addresses"] as? [String] ?? []
        #expect(hits.first == String(format: "0x%llx", address), "\(find.stdout)\(find.stderr)")
        // Its map: the buffer is a resident, writable, non-executable run.
        let map = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "\(patternPid)"])
        #expect(map.stdout.contains(String(format: "%016llx-%016llx rw- resident", address, address + UInt64(bytes))), "\(map.stdout)")

        // Bad reads name what is wrong.
        let gone = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "99999"])
        #expect(!gone.ok && gone.stderr.contains("no process 99999"), "\(gone.stderr)")
        let unmapped = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "\(patternPid)",
                                "--read", "0x10", "--length", "8"])
        #expect(!unmapped.ok && unmapped.stderr.contains("0x10 is not mapped"), "\(unmapped.stderr)")
        let kthread = try run([Paths.kanshi, "sandbox", "memory", "--image", dump, "--guest", g, "--pid", "2"])
        #expect(!kthread.ok && kthread.stderr.contains("kernel thread"), "\(kthread.stderr)")
        try SandboxTests.nothingLeft(s)
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func aRunningSandboxIsReadAndDumpedFromAnotherProcess() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("memory-live")
        let disk = try SandboxTests.disk(s)
        let out = s.file("run.out")
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Paths.kanshi)
        p.arguments = ["sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", g, "--timeout", "200",
                       "--add", try Self.patternProgram(s), "--", "pattern KANSHI-LIVE-3 25"]
        p.environment = ProcessInfo.processInfo.environment.merging(SandboxTests.tmp(s)) { $1 }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        var text = ""
        let deadline = Date().addingTimeInterval(120)
        while Self.patternLine(text) == nil && p.isRunning && Date() < deadline {
            usleep(200_000)
            text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        }
        let (address, _, pid) = try #require(Self.patternLine(text), "the guest did not print PATTERN-AT: \(text.suffix(2000))")
        let marker = "the guest's RAM is shared at "
        let line = try #require(text.split(separator: "\n").first { $0.contains(marker) }, "no shared-RAM line: \(text.suffix(2000))")
        let ram = String(line[line.range(of: marker)!.upperBound...].split(separator: " ")[0])
        #expect(ram.hasPrefix("/dev/shm/kanshi-ram-"))

        // ps and the pattern, live.
        let live = try Self.kanshiPS(["--ram", ram])
        #expect(live[pid] == "pattern" && live[1] == "init", "\(live)")
        let read = try run([Paths.kanshi, "sandbox", "memory", "--ram", ram, "--pid", "\(pid)", "--read", String(format: "0x%llx", address),
                            "--length", "64", "--json"])
        let got = (try? JSONSerialization.jsonObject(with: Data(read.stdout.utf8)) as? [String: Any])?["hex"] as? String
        #expect(got == Self.hex(Self.pattern("KANSHI-LIVE-3", count: 64)), "\(read.stdout)\(read.stderr)")

        // A dump on demand (paused, then resumed), and one live; both read back.
        let dump = s.file("ondemand.lime"), liveDump = s.file("live.lime")
        let d = try run([Paths.kanshi, "sandbox", "dump", "--ram", ram, "--out", dump, "--json"])
        try #require(d.ok, "\(d.stderr)")
        let dj = try #require(try JSONSerialization.jsonObject(with: Data(d.stdout.utf8)) as? [String: Any])
        #expect(dj["paused"] as? Bool == true && dj["ramBytes"] as? Int == (512 << 20) - 0x60000)
        #expect(try Self.kanshiPS(["--image", dump, "--guest", g])[pid] == "pattern")
        let l = try run([Paths.kanshi, "sandbox", "dump", "--ram", ram, "--out", liveDump, "--live"])
        #expect(l.ok && l.stderr.contains("live"), "\(l.stderr)")
        #expect(try Self.kanshiPS(["--image", liveDump, "--guest", g])[pid] == "pattern")
        // Never over an existing file.
        let again = try run([Paths.kanshi, "sandbox", "dump", "--ram", ram, "--out", dump])
        #expect(!again.ok && again.stderr.contains("already exists"), "\(again.stderr)")
        // The guest went on after the dumps: the command ends by itself.
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: ram) && !FileManager.default.fileExists(atPath: ram + ".json"),
                "the shared RAM outlived the run")
        let after = try run([Paths.kanshi, "sandbox", "ps", "--ram", ram])
        #expect(!after.ok && after.stderr.contains("not the shared RAM of a running sandbox"), "\(after.stderr)")
        try SandboxTests.nothingLeft(s)
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func aWatchedProcessesPagesFormATimeSeriesInTheJournal() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("memory-watch")
        let disk = try SandboxTests.disk(s)
        let job = "echo hi > f; pattern KANSHI-BEFORE-1 3 /mnt/f KANSHI-AFTER-22 3"
        let r = try run([Paths.kanshi, "sandbox", "run", "--log-level", "warning", "--disk", disk, "--guest", g, "--timeout", "240",
                         "--add", try Self.patternProgram(s), "--memory-watch", "pattern", "--memory-interval", "250", "--json", "--", job],
                        timeout: 300, environment: SandboxTests.tmp(s))
        #expect(r.status == 0, "\(r.stdout.suffix(1500))\(r.stderr.suffix(800))")
        let (address, bytes, pid) = try #require(Self.patternLine(r.stdout), "no PATTERN-AT line: \(r.stdout.suffix(2000))")
        let (json, o) = try Self.result(r.stdout)
        let w = try #require(o["memoryWatch"] as? [String: Any], "no memoryWatch in the result: \(json)")
        #expect((w["processes"] as? [Int])?.contains(Int(pid)) == true, "\(w)")
        #expect((w["scans"] as? Int ?? 0) >= 8 && w["failure"] == nil, "\(w)")

        // The buffer's first page: stored with the first pattern, then again with the second, later.
        let journal = disk + ".journal"
        var versions: [(timeNs: UInt64, data: [UInt8])] = []
        var memoryRecords = 0
        try JournalReader(directory: journal).forEachRecord { rec in
            guard let p = try MemoryRecords.decode(rec) else { return }
            memoryRecords += 1
            if p.pid == pid && p.virtual == address && !p.gone { versions.append((p.timeNs, Array(p.data))) }
        }
        let before = Self.pattern("KANSHI-BEFORE-1", count: 4096), after = Self.pattern("KANSHI-AFTER-22", count: 4096)
        let first = try #require(versions.firstIndex { $0.data == before }, "the first pattern's page is not in the journal (\(versions.count) versions)")
        let second = try #require(versions.firstIndex { $0.data == after }, "the changed page is not in the journal (\(versions.count) versions)")
        #expect(first < second && versions[first].timeNs < versions[second].timeNs)
        // Stored again only when it changed: two contents, (about) two versions, not one per scan.
        #expect(versions.count <= 3, "the page was stored \(versions.count) times")
        #expect(bytes == 256 * 1024)

        // journal info, verify and export see them.
        #expect(try run([Paths.kanshi, "journal", "verify", journal]).ok)
        let csv = s.file("memory.csv")
        let e = try run([Paths.kanshi, "journal", "export", journal, "--memory", csv, "--memory-pages", s.file("pages")])
        try #require(e.ok, "\(e.stderr)")
        let rows = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n")
        #expect(rows.count == memoryRecords + 1)
        #expect(rows.contains { $0.contains(",\(pid),\(String(format: "0x%llx", address)),") && $0.contains(",rw-,") })
        // Per-window memory features: the second pattern rewrote the whole 256 KiB buffer (64 pages).
        let f = try run([Paths.kanshi, "journal", "memory-features", journal, "--pid", "\(pid)", "--json"])
        let windows = (try? JSONSerialization.jsonObject(with: Data(f.stdout.utf8)) as? [[String: Any]]) ?? []
        let written = windows.reduce(0.0) { $0 + ($1["mem_pages_written"] as? Double ?? 0) }
        #expect(written >= 64, "\(f.stdout.prefix(2000))\(f.stderr)")
        // Asked for nothing to export, or features of a journal with no memory records: said so.
        let nothing = try run([Paths.kanshi, "journal", "export", journal])
        #expect(!nothing.ok && nothing.stderr.contains("--memory FILE"), "\(nothing.stderr)")
        let other = try run([Paths.kanshi, "journal", "memory-features", journal, "--pid", "99999"])
        #expect(other.ok && other.stderr.contains("no memory records of pid 99999"), "\(other.stdout)\(other.stderr)")
        try SandboxTests.nothingLeft(s)
    }

    /// Execution samples: the user instruction each guest timer interrupt stopped, per second.
    /// A shell that counts for a while is sampled at about the guest's tick rate, in a few pages
    /// of its code; bad values are refused before the guest boots.
    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func userCodeRunningIsSampledAtTheTimerTick() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("memory-exec")
        let log = s.file("t.jsonl")
        let disk = try SandboxTests.disk(s)
        let r = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--trace", log, "--exec-sample", "1", "--json",
                         "--", "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done; sleep 2"], timeout: 300)
        #expect(r.ok, "\(r.stderr.suffix(1500))")
        let rows = ((try? String(contentsOfFile: log + ".exec.csv", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        #expect(rows.first == "window_start_ns,exec_samples,exec_pages,exec_spaces", "\(rows)")
        let windows = rows.dropFirst().map { $0.split(separator: ",").compactMap { Int($0) } }
        // The busiest second: about the tick rate (the Debian kernel's HZ is 250), in a handful of pages.
        let busiest = windows.max { $0[1] < $1[1] } ?? []
        #expect(busiest.count == 4 && busiest[1] >= 100 && busiest[1] <= 1100 && busiest[2] >= 1 && busiest[2] < busiest[1], "\(rows)")
        let quiet = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--exec-sample", "0", "--trace", log, "--", "true"])
        #expect(quiet.status == 64 && quiet.stderr.contains("--exec-sample must be at least 1"), "\(quiet.stderr)")
        let noSensor = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--exec-sample", "5", "--", "true"])
        #expect(noSensor.status == 64 && noSensor.stderr.contains("--exec-sample needs the VM sensor"), "\(noSensor.stderr)")
    }

    @Test(.enabled(if: peers, why), .timeLimit(.minutes(10)))
    func memoryThatHoldsNoKnownKernelIsRefusedClearly() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("memory-bad")
        // RAM of random bytes: a LiME image with no kernel in it.
        let ram = try GuestRAM(creatingIn: s.path, size: 8 << 20)
        var x: UInt64 = 7
        let words = UnsafeMutableRawBufferPointer(mutating: ram.bytes(at: 0x100000, count: 7 << 20)!).bindMemory(to: UInt64.self)
        for i in 0..<words.count { x = x &* 6364136223846793005 &+ 1; words[i] = x }
        try LiME.write(ram, to: s.file("random.lime"))
        let r = try run([Paths.kanshi, "sandbox", "ps", "--image", s.file("random.lime"), "--guest", g])
        #expect(!r.ok && r.stderr.contains("not found in memory") && r.stderr.contains("banner"), "\(r.stderr)")
        try Data("not a memory image".utf8).write(to: URL(fileURLWithPath: s.file("text.lime")))
        let t = try run([Paths.kanshi, "sandbox", "ps", "--image", s.file("text.lime"), "--guest", g])
        #expect(!t.ok && t.stderr.contains("not a LiME image"), "\(t.stderr)")
        let missing = try run([Paths.kanshi, "sandbox", "ps", "--ram", s.file("kanshi-ram-none")])
        #expect(!missing.ok && missing.stderr.contains("not the shared RAM of a running sandbox"), "\(missing.stderr)")
        // --memory-dump onto an existing file is refused before the guest boots.
        _ = FileManager.default.createFile(atPath: s.file("exists.lime"), contents: Data("keep".utf8))
        let disk = try SandboxTests.disk(s)
        let e = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--memory-dump", s.file("exists.lime"), "--", "true"])
        #expect(!e.ok && e.stderr.contains("already exists"), "\(e.stderr)")
        #expect(FileManager.default.contents(atPath: s.file("exists.lime")) == Data("keep".utf8))
    }
}
