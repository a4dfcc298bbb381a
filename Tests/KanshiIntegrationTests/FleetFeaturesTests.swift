import Foundation
import KanshiAnalysis
import KanshiCore
import Testing

/// What the fleet's Spark jobs need: Java, and a Python with pyspark and pyarrow.
enum FleetPeers {
    /// KANSHI_PYTHON, else the venv scripts/setup.sh makes (.build/python).
    static let python: String = {
        if let p = ProcessInfo.processInfo.environment["KANSHI_PYTHON"], !p.isEmpty { return p }
        return Paths.root.appendingPathComponent(".build/python/bin/python3").path
    }()

    /// Why Spark jobs cannot run here (nil: they can, or KANSHI_REQUIRE_PEERS=1 makes them fail instead).
    static let sparkMissing: String? = {
        if Tools.requireAll { return nil }
        let java = ProcessInfo.processInfo.environment["JAVA_HOME"].map { $0 + "/bin/java" } ?? Tools.which("java")
        guard let java, FileManager.default.isExecutableFile(atPath: java) else {
            return "no Java runtime for Spark (apt-get install openjdk-17-jre-headless)"
        }
        return pythonMissing(["pyspark", "pyarrow"])
    }()

    /// Why the Python feature port cannot run here (it needs only the standard library).
    static let portMissing: String? = Tools.requireAll ? nil : pythonMissing([])

    static func pythonMissing(_ modules: [String]) -> String? {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return "no Python at \(python) (scripts/setup.sh makes .build/python with pyspark and pyarrow; or set KANSHI_PYTHON)"
        }
        let probe = try? run([python, "-c", (["import sys"] + modules.map { "import \($0)" }).joined(separator: "; ")])
        guard probe?.ok == true else { return "\(python) lacks \(modules.joined(separator: ", ")) (scripts/setup.sh installs them)" }
        return nil
    }

    /// The port of the feature computation the Spark job runs.
    static var port: String { Paths.root.appendingPathComponent("Sources/KanshiFleet/Python/fleet_features.py").path }
}

/// `kanshi fleet features` (Spark) gives `kanshi journal features`' rows on
/// every recording, bit for bit; the Python port the job runs is held against
/// the Swift library on a trace made to reach every branch.
@Suite(.serialized) struct FleetFeaturesTests {
    static let qemu = Tools.available("qemu-io")

    // MARK: Spark against the single-machine command

    @Test(.enabled(if: FleetPeers.sparkMissing == nil, "\(FleetPeers.sparkMissing ?? "")"),
          .enabled(if: qemu, "qemu-io is not installed (apt-get install qemu-utils)"),
          .timeLimit(.minutes(10)))
    func fleetFeaturesEqualJournalFeatures() throws {
        let s = Scratch("fleetfeatures")
        let random = s.file("random.bin")
        _ = FileManager.default.createFile(atPath: random, contents: Data(randomBytes(256 << 10, seed: 16)))
        // Two machines' disks: random and repeated data at several offsets, reads of what is
        // rewritten later, requests in flight together, trims, and pauses of over a second.
        // Two machines' disks, each a qemu-io session with pauses between requests (windows of
        // their own) and one of over a second: random and repeated data at several offsets,
        // reads of what is rewritten later, requests in flight together, trims and zeroing,
        // requests of less than 4 KiB, and a burst of random data written over what was read.
        let sessions: [(host: String, recording: String, commands: [String])] = [
            ("lab-a", "monday",
             ["write -s \(random) 0 64k", "sleep 150", "write -P 0x41 1M 128k", "sleep 150", "read 0 64k", "sleep 150",
              "aio_write -P 0x11 2M 4k", "aio_write -P 0x12 2052k 8k", "aio_read 1M 64k", "aio_write -P 0x13 8M 12k", "aio_flush",
              "sleep 1500",
              "write -s \(random) 64k 32k", "sleep 120", "read 1M 128k", "sleep 120", "write -s \(random) 1M 128k", "sleep 200",
              "discard 4M 64k", "write -z 5M 64k", "sleep 150", "read 3M 1536", "write -P 0x55 3M 512", "write -P 0x56 3073k 1536",
              "flush", "sleep 300", "write -s \(random) 6M 256k", "sleep 110", "read 6M 256k", "sleep 110",
              "aio_read 0 4k", "aio_write -P 0x21 0 4k", "aio_flush"]
                + (0..<6).flatMap { k in ["write -s \(random) \(8192 + 64 * k)k 64k", "sleep 140"] }),
            ("lab-b", "tuesday",
             ["read 0 128k", "sleep 100", "write -P 0x00 0 4k", "write -s \(random) 4k 60k", "sleep 100",
              "aio_write -P 0x77 512k 64k", "aio_read 512k 64k", "aio_flush", "sleep 2500"]
                + (0..<6).flatMap { k in ["read \(128 * k)k 64k", "sleep 60", "write -s \(random) \(128 * k)k 64k", "sleep 120"] }
                + ["write -P 0x99 10M 1M", "sleep 120", "write -s \(random) 12M 192k", "flush"]),
        ]
        let root = s.file("fleet")
        var journals: [String: String] = [:]
        for (i, session) in sessions.enumerated() {
            let image = s.file("disk\(i).img"), journal = s.file("journal-\(session.recording)")
            try makeImage(image, bytes: 16 << 20)
            let server = try KanshiServer(image: image, journal: journal, socket: s.file("nbd\(i).sock"))
            try qemuIO(server.uri, session.commands)
            try server.stop()
            let e = try run([Paths.kanshi, "journal", "export", journal, "--parquet", root, "--host", session.host, "--recording", session.recording])
            #expect(e.ok, "\(e.stdout)\(e.stderr)")
            journals["\(session.host)/\(session.recording)"] = journal
        }

        for set in ["context", "published"] {
            let started = Date()
            let f = try run([Paths.kanshi, "fleet", "features", "--spark", "local[2]", "--data", root, "--features", set, "--json"], timeout: 540)
            let seconds = Date().timeIntervalSince(started)
            #expect(f.ok, "\(f.stderr)")
            guard f.ok else { return }
            let fleet = try #require(try JSONSerialization.jsonObject(with: Data(f.stdout.utf8)) as? [String: Any])
            let recordings = try #require(fleet["recordings"] as? [[String: Any]])
            #expect(recordings.map { "\($0["host"]!)/\($0["recording"]!)" } == ["lab-a/monday", "lab-b/tuesday"])
            #expect(fleet["hosts"] as? [String] == ["lab-a", "lab-b"])
            for r in recordings {
                let key = "\(r["host"]!)/\(r["recording"]!)"
                let j = try run([Paths.kanshi, "journal", "features", journals[key]!, "--features", set, "--json"])
                #expect(j.ok, "\(j.stderr)")
                let single = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
                #expect(fleet["features"] as? [String] == single["features"] as? [String])
                let want = try Rows(single["rows"]), got = try Rows(r["rows"])
                #expect(want.count > 10, "\(key): \(want.count) windows")
                #expect(r["windows"] as? Int == want.count)
                #expect(got.starts == want.starts, "\(key): window starts")
                #expect(got.written == want.written, "\(key): written bytes")
                if let d = got.firstDifference(from: want, names: single["features"] as? [String] ?? []) {
                    Issue.record("\(set), \(key): \(d)")
                }
                // The journals reach what the features look at: high entropy, and a pause the 1 s means forget.
                if set == "context" {
                    let names = single["features"] as! [String]
                    let entropy = names.firstIndex(of: "write_entropy_mean")!, active = names.firstIndex(of: "io_active_5s")!
                    #expect(want.values.contains { $0[entropy] > 0.9 }, "\(key): no high-entropy window")
                    #expect(want.values.contains { $0[active] < 0.5 }, "\(key): no window after a pause")
                    let gaps = zip(want.starts.dropFirst(), want.starts).map { $0 - $1 }
                    #expect(gaps.contains { $0 > 1_000_000_000 }, "\(key): no pause over a second")
                }
            }
            print("fleet features --features \(set) on 2 recordings (\(recordings.map { "\($0["windows"] ?? 0)" }.joined(separator: " + ")) windows): \(String(format: "%.1f", seconds)) s")
        }

        // --out: CSV written by kanshi (the single-machine CSV with host and recording in front),
        // Parquet written by the job.
        let csv = s.file("windows.csv"), parquet = s.file("windows.parquet")
        let c = try run([Paths.kanshi, "fleet", "features", "--data", root, "--host", "lab-b", "--features", "structural", "--out", csv], timeout: 540)
        #expect(c.ok && c.stdout.contains("host lab-b, recording tuesday:") && !c.stdout.contains("lab-a"), "\(c.stdout)\(c.stderr)")
        let j = try run([Paths.kanshi, "journal", "features", journals["lab-b/tuesday"]!, "--features", "structural"])
        let lines = try String(contentsOfFile: csv, encoding: .utf8).split(separator: "\n").map(String.init)
        let single = j.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "host,recording," + (single.first ?? ""))
        #expect(Array(lines.dropFirst()) == single.dropFirst().map { "lab-b,tuesday," + $0 })

        let p = try run([Paths.kanshi, "fleet", "features", "--data", root, "--window-ms", "250", "--out", parquet, "--json"], timeout: 540)
        #expect(p.ok, "\(p.stderr)")
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any])
        let check = try run([FleetPeers.python, "-c", """
            import sys, pyarrow.parquet as pq
            t = pq.read_table(sys.argv[1])
            print(t.num_rows, ",".join(t.column_names), t.schema.field("write_bps").type)
            """, parquet])
        #expect(check.ok, "\(check.stderr)")
        let extended = ["host", "recording", "window_start_ns", "written_bytes"] + WindowFeatures.extendedNames
        #expect(check.stdout == "\(summary["rows"] as? Int ?? -1) \(extended.joined(separator: ",")) float\n")
        let w = try run([Paths.kanshi, "journal", "features", journals["lab-a/monday"]!, "--window-ms", "250"])
        let b = try run([Paths.kanshi, "journal", "features", journals["lab-b/tuesday"]!, "--window-ms", "250"])
        #expect(summary["rows"] as? Int == w.stdout.split(separator: "\n").count - 1 + b.stdout.split(separator: "\n").count - 1)
    }

    /// A journal's rows as --json prints them.
    struct Rows {
        var starts: [UInt64] = [], written: [UInt64] = [], values: [[Float]] = []
        var count: Int { starts.count }

        init(_ json: Any?) throws {
            guard let rows = json as? [[String: Any]] else { throw Failure("no rows in \(String(describing: json).prefix(200))") }
            for r in rows {
                guard let s = (r["windowStartNs"] as? NSNumber)?.uint64Value, let w = (r["writtenBytes"] as? NSNumber)?.uint64Value,
                      let v = r["values"] as? [NSNumber] else { throw Failure("a row kanshi should not print: \(r)") }
                starts.append(s)
                written.append(w)
                values.append(v.map { Float($0.doubleValue) })
            }
        }

        /// Where the values first differ, as float32 bit patterns.
        func firstDifference(from other: Rows, names: [String]) -> String? {
            guard values.count == other.values.count else { return "\(values.count) rows, expected \(other.values.count)" }
            for (r, (a, b)) in zip(values, other.values).enumerated() {
                guard a.count == b.count else { return "row \(r): \(a.count) values, expected \(b.count)" }
                for (c, (x, y)) in zip(a, b).enumerated() where x.bitPattern != y.bitPattern {
                    return "row \(r) (window \(starts[r])) \(c < names.count ? names[c] : "#\(c)"): \(x) (0x\(String(x.bitPattern, radix: 16))), expected \(y) (0x\(String(y.bitPattern, radix: 16)))"
                }
            }
            return nil
        }
    }

    func qemuIO(_ uri: String, _ commands: [String]) throws {
        let r = try run(["qemu-io", "-f", "raw", uri] + commands.flatMap { ["-c", $0] })
        #expect(r.ok && !r.stdout.contains("failed"), "\(r.stdout)\(r.stderr)")
    }

    // MARK: The Python port against the library

    /// Thousands of random requests (sizes not all whole 4 KiB pieces, writes
    /// without all their entropies), times with ties, going back in journal
    /// order (late accesses), bursts, pauses of seconds and of minutes, and
    /// reads of what is rewritten later: every feature, every window length,
    /// the same float32 bits as `WindowFeatures.compute`.
    @Test(.enabled(if: FleetPeers.portMissing == nil, "\(FleetPeers.portMissing ?? "")"))
    func pythonPortEqualsTheLibrary() throws {
        let events = Self.syntheticJournal(count: 6000, seed: 0x5EED)
        var trace = BlockTrace(reads: [], writes: [])
        for e in events { trace.append(e) }  // as BlockTrace.fromJournal: journal order
        #expect(trace.reads.count > 2000 && trace.writes.count > 2000)
        func late(_ a: [Access]) -> Bool { zip(a, a.dropFirst()).contains { $0.timeNs > $1.timeNs } }
        #expect(late(trace.writes) && late(trace.reads), "some accesses arrive late")
        var records = "["
        for (i, e) in events.enumerated() {
            let op = e.operation == .read ? "read" : e.operation == .write ? "write" : "trim"
            records += (i > 0 ? "," : "") + "{\"op\":\"\(op)\",\"timeNs\":\(e.timeNs),\"lba\":\(e.lba),\"length\":\(e.length),\"entropies\":[\(e.entropies.map { "\(Double($0))" }.joined(separator: ","))]}"
        }
        records += "]"
        for windowNs: UInt64 in [100_000_000, 7_000_000, 1_000_000_000] {
            for set in FeatureSet.blockSets {
                let names = WindowFeatures.names(set)
                let want = WindowFeatures.compute(trace, windowNs: windowNs, names: names)
                let job = "{\"windowNs\":\(windowNs),\"names\":[\(names.map { "\"\($0)\"" }.joined(separator: ","))],\"records\":\(records)}"
                let r = try run([FleetPeers.python, FleetPeers.port], input: Data(job.utf8))
                #expect(r.ok, "\(r.stderr)")
                guard r.ok else { return }
                let got = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
                let starts = (got["windowStart"] as? [NSNumber])?.map(\.uint64Value)
                let written = (got["writtenBytes"] as? [NSNumber])?.map(\.uint64Value)
                let values = ((got["values"] as? [[NSNumber]]) ?? []).flatMap { $0.map { Float($0.doubleValue) } }
                #expect(want.rows > 200, "\(set), \(windowNs) ns: \(want.rows) windows")
                #expect(starts == want.windowStart, "\(set), \(windowNs) ns: window starts")
                #expect(written == want.writtenBytes, "\(set), \(windowNs) ns: written bytes")
                #expect(values.count == want.values.count, "\(set), \(windowNs) ns: \(values.count) values, expected \(want.values.count)")
                if let i = values.indices.first(where: { $0 < want.values.count && values[$0].bitPattern != want.values[$0].bitPattern }) {
                    let row = i / want.columns, name = want.names[i % want.columns]
                    Issue.record("\(set), \(windowNs) ns, row \(row), \(name): \(values[i]), expected \(want.values[i])")
                }
            }
        }
    }

    /// A journal's block events, made to reach every branch of the features.
    static func syntheticJournal(count: Int, seed: UInt64) -> [BlockEvent] {
        var rng = SplitMix64(seed)
        let start: UInt64 = 1_765_000_000_000_000_000
        var t = start
        var events: [BlockEvent] = []
        var recentReads: [UInt64] = []
        var nextSequential: UInt64 = 0
        let sizes: [UInt32] = [512, 1024, 1536, 4096, 4096, 4096, 6144, 8192, 12288, 16384, 65536, 131_072]
        let special: [Float] = [0, 0.9, 0.9, Float(0.9).nextUp, Float(0.9).nextDown, 1]
        for i in 0..<count {
            // Ties (the same time as the last request), small steps, bursts, pauses of seconds and one of minutes.
            switch rng.next() % 100 {
            case 0..<25: break
            case 25..<75: t += rng.next() % 20_000_000
            case 75..<95: t += rng.next() % 400_000_000
            case 95..<99: t += 1_000_000_000 + rng.next() % 4_000_000_000
            default: t += i == count / 2 ? 180_000_000_000 : 12_000_000_000
            }
            // Now and then one stamped earlier than the one before it (a request that waited for the
            // journal); early on, one earlier than the very first (before the windows' origin).
            let time = i == 3 ? start - 50_000_000 : rng.next() % 20 == 0 ? t - min(t, rng.next() % 300_000_000) : t
            let size = sizes[Int(rng.next() % UInt64(sizes.count))]
            let lba: UInt64
            switch rng.next() % 10 {
            case 0..<3 where !recentReads.isEmpty: lba = recentReads[Int(rng.next() % UInt64(recentReads.count))]
            case 3..<5: lba = nextSequential
            case 5: lba = (UInt64(1) << 40) + rng.next() % 1000 * 8  // far away: a wide spread and big squares
            default: lba = rng.next() % (1 << 22)
            }
            let kind = rng.next() % 20
            if kind < 8 {
                events.append(BlockEvent(operation: .read, timeNs: time, lba: lba, length: size, connection: 0))
                recentReads.append(lba)
                if recentReads.count > 64 { recentReads.removeFirst() }
            } else if kind < 19 {
                var e = BlockEvent(operation: .write, timeNs: time, lba: lba, length: size, connection: 0)
                let pieces = Int((size + 4095) / 4096)
                // Most writes carry an entropy per piece; some fewer (the rest count as 0).
                let n = rng.next() % 10 == 0 ? Int(rng.next() % UInt64(pieces)) : pieces
                e.entropies = (0..<n).map { _ in
                    rng.next() % 8 == 0 ? special[Int(rng.next() % UInt64(special.count))] : Float(Double(rng.next() >> 11) / Double(1 << 53))
                }
                events.append(e)
                nextSequential = lba + UInt64(size + 511) / 512
            } else {
                events.append(BlockEvent(operation: rng.next() % 2 == 0 ? .trim : .flush, timeNs: time, lba: lba, length: size, connection: 0))
            }
        }
        return events
    }

    // MARK: Bad input

    @Test func badFeatureInputsAreNamed() throws {
        let s = Scratch("fleetfeaturesbad")
        // A store with one host's (empty) blocks: enough for kanshi to check the hosts asked for before Spark starts.
        try FileManager.default.createDirectory(atPath: s.file("fleet/blocks/host=lab-a"), withIntermediateDirectories: true)
        let cases: [([String], String)] = [
            (["fleet", "features", "--data", s.file("fleet"), "--host", "lab-z"], "host lab-z has no data in \(s.file("fleet")) (hosts with data: lab-a)"),
            (["fleet", "features", "--data", s.file("fleet"), "--window-ms", "0"], "--window-ms 0: give 1 to 60000 ms"),
            (["fleet", "features", "--data", s.file("fleet"), "--window-ms", "soon"], "--window-ms"),
            (["fleet", "features", "--data", s.file("fleet"), "--features", "everything"], "'everything' is invalid"),
            (["fleet", "features", "--data", s.file("fleet"), "--features", "process"], "from behaviour logs, not blocks"),
            (["fleet", "features", "--data", s.file("fleet"), "--out", s.file("windows.txt")], "name a .csv, .parquet or .jsonl file"),
            (["fleet", "features", "--data", s.file("fleet"), "--out", s.file("fleet/windows.parquet")], "inside the store"),
            (["fleet", "features", "--data", s.file("fleet"), "--out", s.file("fleet/blocks/../windows.csv")], "inside the store"),
            (["fleet", "features", "--data", s.file("fleet"), "--out", s.file("no/windows.csv")], "no directory"),
            (["fleet", "features", "--data", s.file("nowhere")], "\(s.file("nowhere")): no such directory"),
            (["fleet", "features", "--spark", "yarn", "--data", s.file("fleet")], "--spark yarn: give local"),
            (["journal", "features", s.file("nowhere")], "journal features: \(s.file("nowhere")): not a usable journal: no such directory"),
            (["journal", "features", s.path, "--window-ms", "60001"], "--window-ms 60001: give 1 to 60000 ms"),
        ]
        // kanshi looks for a Python before it checks the store (none is started): one that exists.
        let python = FileManager.default.isExecutableFile(atPath: FleetPeers.python) ? [:] : ["KANSHI_PYTHON": "python3"]
        for (args, message) in cases {
            let r = try run([Paths.kanshi] + args, environment: python)
            #expect(r.status != 0 && r.stderr.contains(message), "\(args.joined(separator: " ")): exit \(r.status), \(r.stderr)")
        }
    }
}

/// A small seeded generator (SplitMix64), so a failing trace can be made again.
struct SplitMix64 {
    private var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
