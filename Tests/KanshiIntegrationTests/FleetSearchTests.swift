import Foundation
import Testing

/// `kanshi journal export --parquet`, the server's fleet export and `kanshi fleet search` on
/// Spark (PySpark from .build/python, Java from Debian): the fleet's answer per recording is
/// `kanshi search`'s on that recording's journal.
@Suite(.serialized) struct FleetSearchTests {
    static let python = Paths.root.appendingPathComponent(".build/python/bin/python3").path
    static let ready = Tools.requireAll
        || (FileManager.default.isExecutableFile(atPath: python) && Tools.available("java", "qemu-io"))
    static let why: Comment = "needs Java, pyspark and pyarrow (scripts/setup.sh) and qemu-io"

    func qemuIO(_ uri: String, _ commands: [String]) throws {
        let r = try run(["qemu-io", "-f", "raw", uri] + commands.flatMap { ["-c", $0] })
        #expect(r.ok && !r.stdout.contains("failed"), "\(r.stdout)\(r.stderr)")
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not JSON: \(text.prefix(500))")
    }

    /// `kanshi search --json`'s reports for these files on one journal.
    func localSearch(_ journal: String, _ files: [String]) throws -> [[String: Any]] {
        let r = try run([Paths.kanshi, "search", "--journal", journal, "--json"] + files)
        try #require(r.ok, "\(r.stderr)")
        return try json(r.stdout)["files"] as! [[String: Any]]
    }

    /// `kanshi fleet search --json`: host/recording → reports.
    func fleetSearch(_ data: String, _ files: [String], extra: [String] = [], master: String = "local[2]") throws -> [String: [[String: Any]]] {
        let r = try run([Paths.kanshi, "fleet", "search", "--spark", master, "--data", data, "--json"] + extra + files, timeout: 400)
        try #require(r.ok, "\(r.stderr.suffix(2000))")
        var out: [String: [[String: Any]]] = [:]
        for rec in try json(r.stdout)["recordings"] as! [[String: Any]] {
            out["\(rec["host"]!)/\(rec["recording"]!)"] = rec["files"] as? [[String: Any]]
        }
        return out
    }

    /// The same reports, as JSON compared byte for byte.
    func expectSame(_ a: [[String: Any]]?, _ b: [[String: Any]]?, _ what: String) throws {
        let ja = String(decoding: try JSONSerialization.data(withJSONObject: a ?? [], options: [.sortedKeys]), as: UTF8.self)
        let jb = String(decoding: try JSONSerialization.data(withJSONObject: b ?? [], options: [.sortedKeys]), as: UTF8.self)
        #expect(ja == jb, "\(what): fleet search differs from kanshi search\nlocal: \(ja.prefix(1500))\nfleet: \(jb.prefix(1500))")
    }

    /// Recordings of a disk: the evidence written twice, partly overwritten, a copy that was on the disk
    /// before recording began (found through the base record of its changed block), reads, trims.
    func record(_ s: Scratch, name: String, evidence: String, at offsets: [String]) throws -> String {
        let image = s.file("\(name).img")
        try makeImage(image, bytes: 64 << 20)
        let ev = readFile(evidence)
        let pre = try FileHandle(forWritingTo: URL(fileURLWithPath: image))
        try pre.seek(toOffset: 40 << 20)
        try pre.write(contentsOf: Data(ev))
        try pre.close()
        let server = try KanshiServer(image: image, journal: s.file("\(name).journal"), socket: s.file("\(name).sock"))
        var cmds = offsets.map { "write -s \(evidence) \($0) \(ev.count)" }
        cmds += ["read 0 64k", "write -P 0x55 \(offsets[0]) 8k", "write -P 0x56 40M 4k", "discard \(offsets.last!) 4k", "flush"]
        try qemuIO(server.uri, cmds)
        try server.stop()
        return s.file("\(name).journal")
    }

    @Test(.enabled(if: ready, why), .timeLimit(.minutes(10)))
    func fleetSearchGivesKanshiSearchsAnswerPerRecording() throws {
        let s = Scratch("fleet-search")
        let evidence = s.file("evidence.bin"), other = s.file("other.bin"), absent = s.file("absent.bin")
        _ = FileManager.default.createFile(atPath: evidence, contents: Data(randomBytes(200_000, seed: 31)))
        _ = FileManager.default.createFile(atPath: other, contents: Data(randomBytes(40_960, seed: 32)))
        _ = FileManager.default.createFile(atPath: absent, contents: Data(randomBytes(8192, seed: 33)))
        let j1 = try record(s, name: "a", evidence: evidence, at: ["3M", "7M"])
        let j2 = try record(s, name: "b", evidence: other, at: ["1M"])
        let store = s.file("store")
        for (j, host, rec) in [(j1, "host-a", "run1"), (j2, "host-b", "run2")] {
            let e = try run([Paths.kanshi, "journal", "export", j, "--parquet", store, "--host", host, "--recording", rec])
            #expect(e.ok && e.stdout.contains("exported"), "\(e.stdout)\(e.stderr)")
        }
        let files = [evidence, other, absent]
        let fleet = try fleetSearch(store, files)
        #expect(Set(fleet.keys) == ["host-a/run1", "host-b/run2"])
        try expectSame(try localSearch(j1, files), fleet["host-a/run1"], "host-a/run1")
        try expectSame(try localSearch(j2, files), fleet["host-b/run2"], "host-b/run2")
        // What the reports hold (so equal answers are not equally empty).
        let a = try #require(fleet["host-a/run1"])
        #expect(a[0]["coverage"] as? Double == 1)
        #expect(((a[0]["blocks"] as! [[String: Any]])[0]["wholeBlock"] as! [[String: Any]]).contains { $0["written"] as? String == "before recording" })
        #expect((a[0]["completeCopies"] as! [Any]).count >= 1)
        #expect(a[2]["coverage"] as? Double == 0)

        // One host only; the text report names hosts and recordings.
        let only = try fleetSearch(store, files, extra: ["--host", "host-b"])
        #expect(Set(only.keys) == ["host-b/run2"])
        let text = try run([Paths.kanshi, "fleet", "search", "--spark", "local[1]", "--data", store, evidence, absent], timeout: 400)
        #expect(text.ok && text.stdout.contains("found in 1 recording on 1 host") && text.stdout.contains("== host host-a, recording run1")
                && text.stdout.contains("absent.bin: not found on any host"), "\(text.stdout)\(text.stderr.suffix(1000))")

        // Exporting a recording again replaces its files (no duplicate hits).
        let again = try run([Paths.kanshi, "journal", "export", j1, "--parquet", store, "--host", "host-a", "--recording", "run1"])
        #expect(again.ok, "\(again.stderr)")
        try expectSame(try localSearch(j1, files), try fleetSearch(store, files)["host-a/run1"], "host-a/run1 exported twice")
    }

    /// A sandbox run's journal: the guest writes a file; the fleet finds it where `kanshi search` does,
    /// and gives the window features `kanshi journal features` gives.
    @Test(.enabled(if: ready && SandboxTests.peers, why), .timeLimit(.minutes(10)))
    func aSandboxRecordingIsSearchedAsOnOneMachine() throws {
        let g = try SandboxTests.guest()
        let s = Scratch("fleet-sandbox")
        let disk = try SandboxTests.disk(s)
        let r = try run([Paths.kanshi, "sandbox", "run", "--disk", disk, "--guest", g, "--timeout", "240", "--",
                         // (then small writes a second apart: windows enough to compare, however fast the guest runs)
                         "dd if=/dev/urandom of=blob bs=64k count=8 2>/dev/null; cp blob blob2; sync; "
                            + "for i in 1 2 3 4 5 6; do dd if=/dev/urandom of=f$i bs=4k count=4 2>/dev/null; sync; sleep 1; done"], timeout: 300,
                        environment: SandboxTests.tmp(s))
        try #require(r.ok, "\(r.stderr.suffix(1500))")
        let blob = s.file("blob.bin")
        #expect(try run(["debugfs", "-R", "dump /blob \(blob)", disk]).ok)
        #expect(readFile(blob).count == 512 << 10)
        let store = s.file("store")
        let e = try run([Paths.kanshi, "journal", "export", disk + ".journal", "--parquet", store, "--host", "sandbox", "--recording", "blob"])
        #expect(e.ok, "\(e.stderr)")
        let local = try localSearch(disk + ".journal", [blob])
        #expect(local[0]["coverage"] as? Double == 1)
        try expectSame(local, try fleetSearch(store, [blob])["sandbox/blob"], "sandbox/blob")

        // The detectors' window features of the same recording, on Spark and on one machine.
        let f = try run([Paths.kanshi, "fleet", "features", "--spark", "local[2]", "--data", store, "--features", "context", "--json"], timeout: 400)
        try #require(f.ok, "\(f.stderr.suffix(1500))")
        let j = try run([Paths.kanshi, "journal", "features", disk + ".journal", "--features", "context", "--json"])
        try #require(j.ok, "\(j.stderr)")
        let fleetRows = try #require((try json(f.stdout)["recordings"] as? [[String: Any]])?.first?["rows"])
        let singleRows = try #require(try json(j.stdout)["rows"] as? [[String: Any]])
        #expect(singleRows.count > 5, "\(singleRows.count) windows")
        try expectSame([["rows": fleetRows]], [["rows": singleRows]], "sandbox/blob features")
        try SandboxTests.nothingLeft(s)
    }

    /// The server writes the fleet's tables as a recording arrives; a search over them equals one on the sensor's journal.
    @Test(.enabled(if: ready, why), .timeLimit(.minutes(10)))
    func theServerWritesTheFleetsTablesAsRecordingsArrive() throws {
        let s = Scratch("fleet-server")
        let data = s.file("srv")
        let token = try run([Paths.kanshi, "server", "token", "add", "lab-vm", "--data", data])
        try #require(token.ok, "\(token.stderr)")
        try token.stdout.trimmingCharacters(in: .whitespacesAndNewlines).write(toFile: s.file("token"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(data: data, extra: ["--fleet-export", "1", "--model", "none", "--process-model", "none"], log: s.file("server.log"))
        let evidence = s.file("evidence.bin")
        _ = FileManager.default.createFile(atPath: evidence, contents: Data(randomBytes(100_000, seed: 41)))
        let image = s.file("disk.img")
        try makeImage(image, bytes: 32 << 20)
        let disk = try KanshiServer(image: image, journal: s.file("j"), socket: s.file("nbd.sock"),
                                    extra: ["--ship", server.url, "--ship-token-file", s.file("token"), "--ship-as", "live"])
        try qemuIO(disk.uri, ["write -s \(evidence) 2M 100000", "write -s \(evidence) 9M 100000", "write -P 0x31 2M 4k", "flush"])
        // Arrival and export: the rows appear without anything else being run.
        let deadline = Date().addingTimeInterval(60)
        var rows = 0
        while Date() < deadline {
            let count = try run([Self.python, "-c", "import pyarrow.dataset as d; print(d.dataset('\(data)/fleet/hashes', format='parquet', partitioning='hive').count_rows())"])
            rows = Int(count.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            if rows >= 2 * 195 { break }
            usleep(500_000)
        }
        let log = (try? String(contentsOfFile: s.file("server.log"), encoding: .utf8)) ?? ""
        #expect(rows >= 2 * 195, "the server's fleet tables hold \(rows) sector hashes: \(log)")
        try disk.stop()
        try expectSame(try localSearch(s.file("j"), [evidence]), try fleetSearch(data, [evidence])["lab-vm/live"], "lab-vm/live")
        server.crash()
    }

    /// A Spark standalone cluster (a master and a worker started from pyspark's own scripts, on this
    /// machine): `--spark spark://HOST:PORT` runs the same jobs and gives the same answers as `local[1]`.
    @Test(.enabled(if: ready, why), .timeLimit(.minutes(10)))
    func aSparkClusterGivesTheSameAnswers() throws {
        let s = Scratch("fleet-cluster")
        let evidence = s.file("evidence.bin")
        _ = FileManager.default.createFile(atPath: evidence, contents: Data(randomBytes(60_000, seed: 61)))
        let j = try record(s, name: "c", evidence: evidence, at: ["2M", "5M"])
        let store = s.file("store")
        #expect(try run([Paths.kanshi, "journal", "export", j, "--parquet", store, "--host", "node-1", "--recording", "r"]).ok)

        let sparkHome = try #require(try run([Self.python, "-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"])
            .stdout.split(separator: "\n").first.map(String.init))
        let env = ["SPARK_HOME": sparkHome, "SPARK_WORKER_DIR": s.file("worker"), "SPARK_LOG_DIR": s.file("logs"), "SPARK_NO_DAEMONIZE": "1"]
        func start(_ args: [String], log: String) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: sparkHome + "/bin/spark-class")
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(env) { _, b in b }
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            p.standardOutput = h
            p.standardError = h
            try p.run()
            return p
        }
        func waitFor(_ log: String, _ text: String) throws -> String {
            let deadline = Date().addingTimeInterval(90)
            while Date() < deadline {
                let t = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if let line = t.split(separator: "\n").first(where: { $0.contains(text) }) { return String(line) }
                usleep(200_000)
            }
            throw Failure("\(text) not in \(log) after 90 s: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        let master = try start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"], log: s.file("master.log"))
        defer { kill(master.processIdentifier, SIGTERM); master.waitUntilExit() }
        let line = try waitFor(s.file("master.log"), "Starting Spark master at spark://")
        let url = try #require(line.split(separator: " ").last.map(String.init))
        let worker = try start(["org.apache.spark.deploy.worker.Worker", url, "--cores", "2", "--memory", "1g", "--host", "127.0.0.1",
                                "--webui-port", "0", "--work-dir", s.file("worker")], log: s.file("worker.log"))
        defer { kill(worker.processIdentifier, SIGTERM); worker.waitUntilExit() }
        _ = try waitFor(s.file("worker.log"), "Successfully registered with master")

        let local = try fleetSearch(store, [evidence], master: "local[1]")
        let cluster = try fleetSearch(store, [evidence], master: url)
        #expect(Set(cluster.keys) == ["node-1/r"])
        try expectSame(local["node-1/r"], cluster["node-1/r"], "spark:// vs local[1]")
        try expectSame(try localSearch(j, [evidence]), cluster["node-1/r"], "spark:// vs kanshi search")

        let f = try run([Paths.kanshi, "fleet", "features", "--spark", url, "--data", store, "--features", "context", "--json"], timeout: 400)
        try #require(f.ok, "\(f.stderr.suffix(1500))")
        let single = try run([Paths.kanshi, "journal", "features", j, "--features", "context", "--json"])
        let clusterRows = try #require((try json(f.stdout)["recordings"] as? [[String: Any]])?.first?["rows"])
        try expectSame([["rows": clusterRows]], [["rows": try json(single.stdout)["rows"] ?? []]], "spark:// features")
    }

    @Test(.enabled(if: ready, why), .timeLimit(.minutes(10)))
    func badInputsAreNamedAndChangeNothing() throws {
        let s = Scratch("fleet-bad")
        let evidence = s.file("evidence.bin")
        _ = FileManager.default.createFile(atPath: evidence, contents: Data(randomBytes(20_000, seed: 51)))
        let j = try record(s, name: "a", evidence: evidence, at: ["1M"])
        let store = s.file("store")
        #expect(try run([Paths.kanshi, "journal", "export", j, "--parquet", store, "--host", "h1", "--recording", "r1"]).ok)
        func listing() -> [String: Data] {
            var out: [String: Data] = [:]
            for p in (FileManager.default.enumerator(atPath: store)?.allObjects as? [String]) ?? [] {
                out[p] = FileManager.default.contents(atPath: store + "/" + p) ?? Data()
            }
            return out
        }
        let before = listing()
        #expect(before.keys.contains { $0.hasSuffix(".parquet") })

        // A journal that fails verification: named, nothing exported, the store as it was.
        let damaged = s.file("damaged")
        #expect(try run(["cp", "-r", j, damaged]).ok)
        let segment = damaged + "/segment-0000000000000001.kjs"
        var bytes = readFile(segment)
        bytes[bytes.count / 2] ^= 0x40
        #expect(FileManager.default.createFile(atPath: segment, contents: Data(bytes)))
        let bad = try run([Paths.kanshi, "journal", "export", damaged, "--parquet", store, "--host", "h1", "--recording", "r1"])
        #expect(bad.status != 0 && bad.stderr.contains("fails verification") && bad.stderr.contains("segment-0000000000000001.kjs"), "\(bad.stderr)")
        #expect(listing() == before, "a refused export changed the store")

        // Names that cannot be partitions; a Python without pyarrow.
        let name = try run([Paths.kanshi, "journal", "export", j, "--parquet", store, "--host", "h=1"])
        #expect(name.status != 0 && name.stderr.contains("host name \"h=1\""), "\(name.stderr)")
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
           !(try run(["/usr/bin/python3", "-c", "import pyarrow"]).ok) {
            let nopy = try run([Paths.kanshi, "journal", "export", j, "--parquet", store, "--host", "h1", "--python", "/usr/bin/python3"])
            #expect(nopy.status != 0 && nopy.stderr.contains("pyarrow") && nopy.stderr.contains("scripts/setup.sh"), "\(nopy.stderr)")
        }

        // Options that go with --parquet alone; a server export period that is not one.
        let stray = try run([Paths.kanshi, "journal", "export", j, "--out", s.file("csv"), "--host", "h1"])
        #expect(stray.status != 0 && stray.stderr.contains("--host, --recording and --python go with --parquet DIR"), "\(stray.stderr)")
        let period = try run([Paths.kanshi, "server", "--data", s.file("srv"), "--fleet-export=-1"])
        #expect(period.status != 0 && period.stderr.contains("--fleet-export must be 0 (never) or a number of seconds"), "\(period.stderr)")
        #expect(listing() == before)

        // A host with no data; a directory with no fleet tables; a bad master; no Java.
        let cases: [([String], [String: String], String)] = [
            (["--data", store, "--host", "nowhere"], [:], "host nowhere has no data in \(store) (hosts with data: h1)"),
            (["--data", s.path + "/a.journal"], [:], "no fleet tables here"),
            (["--data", s.file("none")], [:], "no such directory"),
            (["--data", store, "--spark", "yarn"], [:], "--spark yarn: give local"),
            (["--data", store], ["JAVA_HOME": s.file("no-java")], "Spark cannot start: JAVA_HOME=\(s.file("no-java")) has no bin/java"),
        ]
        for (args, env, message) in cases {
            let r = try run([Paths.kanshi, "fleet", "search"] + args + [evidence], environment: env)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args) \(env): \(r.stderr)")
        }

        // A partition written by another format: refused, naming the file; the job changes nothing.
        let old = store + "/hashes/host=h0/day=2020-01-01/old.s1.parquet"
        try FileManager.default.createDirectory(atPath: (old as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let w = try run([Self.python, "-c", """
            import pyarrow as pa, pyarrow.parquet as pq
            t = pa.table({"recording": ["old"], "seq": [1], "hash": [7]}).replace_schema_metadata({"kanshi.fleet.format": "0"})
            pq.write_table(t, "\(old)")
            """])
        #expect(w.ok, "\(w.stderr)")
        let withOld = listing()
        let refused = try run([Paths.kanshi, "fleet", "search", "--spark", "local[1]", "--data", store, evidence], timeout: 400)
        #expect(refused.status != 0 && refused.stderr.contains("old.s1.parquet: written in fleet format 0, this kanshi reads format 1"), "\(refused.stderr.suffix(1500))")
        #expect(listing() == withOld, "a failed job changed the store")
    }
}
