import Foundation
import KanshiAnalysis
import KanshiML
import KanshiTrace
import Testing

/// Process-tree windows from behaviour events, and a process model trained and replayed on them.
struct ProcessWindowsTests {
    /// Events as the sensors log them, 1 ms apart unless told.
    struct Log {
        var events: [TraceEvent] = []
        var t: UInt64 = 1_800_000_000_000_000_000
        mutating func add(_ kind: TraceEvent.Kind, _ pid: Int32, _ path: String? = nil, _ path2: String? = nil, flags: String? = nil,
                          child: Int32? = nil, argv: [String]? = nil, gapNs: UInt64 = 1_000_000) {
            var e = TraceEvent(kind: kind)
            t += gapNs
            e.seq = UInt64(events.count + 1); e.time = t; e.pid = pid; e.tid = pid
            e.path = path; e.path2 = path2; e.flags = flags; e.child = child; e.argv = argv; e.ret = 0
            events.append(e)
        }
        /// The close of a file written with `bytes` of this entropy (as the VM sensor logs it).
        mutating func close(_ pid: Int32, _ path: String, entropy: Double, bytes: Int64 = 20_000) {
            add(.close, pid, path)
            events[events.count - 1].bytes = bytes
            events[events.count - 1].entropy = entropy
        }
        mutating func start(_ pid: Int32, _ workload: String) {
            add(.spawn, 1, child: pid)
            add(.exec, pid, "/bin/kanshi", argv: ["kanshi", "workload", workload, "--dir", "/mnt/corpus"])
        }
    }

    static func file(_ i: Int) -> String { "/mnt/corpus/docs/d\(i / 10)/file\(i).txt" }

    /// Ransomware styles and look-alikes, `files` files, `perFileNs` apart.
    static func run(_ style: String, pid: Int32 = 50, files: Int = 40, perFileNs: UInt64 = 20_000_000) -> Log {
        var log = Log()
        log.start(pid, style)
        for i in 0..<files {
            let f = file(i)
            switch style {
            case "inplace":
                log.add(.open, pid, f, flags: "rw", gapNs: perFileNs)
                log.close(pid, f, entropy: 7.97)
            case "copy-delete":
                log.add(.open, pid, f, flags: "r", gapNs: perFileNs)
                log.add(.open, pid, f + ".enc", flags: "w,creat,trunc")
                log.close(pid, f + ".enc", entropy: 7.97)
                log.add(.unlink, pid, f)
            case "rename":
                log.add(.open, pid, f, flags: "rw", gapNs: perFileNs)
                log.close(pid, f, entropy: 7.97)
                log.add(.rename, pid, f, f + ".locked")
            case "copy-tree":
                log.add(.open, pid, f, flags: "r", gapNs: perFileNs)
                log.add(.open, pid, "/mnt/corpus/docs copy/file\(i).txt", flags: "w,creat,trunc")
                log.close(pid, "/mnt/corpus/docs copy/file\(i).txt", entropy: 4.8)
            case "package-install":
                let p = "/mnt/corpus/Programs/pkg/bin/f\(i)"
                log.add(.open, pid, p, flags: "w,creat,trunc", gapNs: perFileNs)
                log.close(pid, p, entropy: 7.9)
                log.add(.open, pid, p + ".dpkg-new", flags: "w,creat,trunc")
                log.close(pid, p + ".dpkg-new", entropy: 7.9)
                log.add(.rename, pid, p + ".dpkg-new", p)
            case "edit" where i < 5:
                log.add(.open, pid, f, flags: "r", gapNs: perFileNs)
                let tmp = "/mnt/corpus/docs/d\(i / 10)/.file\(i).txt.swp"
                log.add(.open, pid, tmp, flags: "rw,creat,trunc")
                log.close(pid, tmp, entropy: 4.6)
                log.add(.rename, pid, tmp, f)
            default:
                log.add(.open, pid, f, flags: "r", gapNs: perFileNs)
            }
        }
        return log
    }

    static func rows(_ log: Log) -> [ProcessWindows.Row] {
        let w = ProcessWindows(windowNs: 1_000_000_000, under: "/mnt")
        for e in log.events { w.add(e) }
        return w.allRows()
    }

    static func total(_ rows: [ProcessWindows.Row], _ name: String) -> Float {
        let i = ProcessWindows.names.firstIndex(of: name)!
        return rows.reduce(0) { $0 + $1.values[i] }
    }

    @Test func ransomwareStylesDestroyWhatWasThereAndLookAlikesDoNot() {
        let inplace = Self.rows(Self.run("inplace"))
        #expect(Self.total(inplace, "destroyed") == 40 && Self.total(inplace, "read_then_replaced") == 40)
        let copyDelete = Self.rows(Self.run("copy-delete"))
        #expect(Self.total(copyDelete, "destroyed") == 40 && Self.total(copyDelete, "copies_of_read") == 40
                && Self.total(copyDelete, "deleted_after_read") == 40)
        let rename = Self.rows(Self.run("rename"))
        #expect(Self.total(rename, "renames_appending") == 40 && Self.total(rename, "destroyed") == 40)
        let copy = Self.rows(Self.run("copy-tree"))
        #expect(Self.total(copy, "destroyed") == 0 && Self.total(copy, "created") == 40 && Self.total(copy, "copies_of_read") == 0)
        let package = Self.rows(Self.run("package-install"))
        #expect(Self.total(package, "destroyed") == 0, "it replaces only files it made itself")
        let edit = Self.rows(Self.run("edit"))
        #expect(Self.total(edit, "destroyed") == 5 && Self.total(edit, "read_then_replaced") == 5)
        // 40 files 20 ms apart: windows of 1 s, with running totals.
        #expect(inplace.count == 1 && inplace[0].destroyedTotal == 40)
        let slow = Self.rows(Self.run("inplace", perFileNs: 300_000_000))
        #expect(slow.count >= 11 && slow.last?.destroyedTotal == 40)
        #expect(slow.map(\.destroyedTotal) == slow.map(\.destroyedTotal).sorted())
    }

    @Test func aForkedWorkerIsPartOfItsParentsTree() {
        var log = Self.run("inplace", pid: 60, files: 0)
        log.add(.spawn, 60, child: 61)
        for i in 0..<10 { log.add(.open, 61, Self.file(i), flags: "rw") }
        let rows = Self.rows(log)
        #expect(rows.count == 1 && rows[0].root == 60 && rows[0].destroyedTotal == 10)
    }

    @Test func openWindowsAreSeenBeforeTheyClose() {
        let w = ProcessWindows(windowNs: 1_000_000_000, under: "/mnt")
        for e in Self.run("inplace", files: 5).events { w.add(e) }
        #expect(w.drainClosed().isEmpty)
        let open = w.openRows()
        #expect(open.count == 1 && open[0].open && open[0].destroyedTotal == 5)
        w.advance(to: w.nowNs + 2_000_000_000)
        #expect(w.drainClosed().count == 1 && w.openRows().isEmpty)
    }

    /// Trained on runs of each style and look-alike, a model never shown a run names its
    /// workload when it is ransomware and stays quiet on the look-alikes.
    @Test func aTrainedProcessModelNamesTheRansomwareAndNotTheLookAlikes() throws {
        var runs: [ProcessTraining.RecordedRun] = []
        for (style, label) in [("inplace", Label.ransomware), ("copy-delete", .ransomware), ("rename", .ransomware),
                               ("copy-tree", .benign), ("package-install", .benign), ("edit", .benign), ("read-only", .benign)] {
            for k in 0..<3 {
                let log = Self.run(style, files: 30 + 10 * k, perFileNs: UInt64(10_000_000 + 15_000_000 * k))
                runs.append(.init(name: "\(style)-\(k)", label: label, events: log.events, workload: style))
            }
        }
        let replays = try ProcessTraining.crossValidate(runs, folds: 3)
        #expect(replays.count == runs.count)
        for r in replays where r.label == .ransomware {
            #expect(r.namedTheWorkload, "\(r.run)")
            #expect((r.delaySeconds ?? 99) < 1.5, "\(r.run): \(r.delaySeconds ?? -1)")
        }
        for r in replays where r.label == .benign { #expect(r.alert == nil, "\(r.run) flagged") }

        // A model trained on every run, saved and loaded, replays a fresh run the same way.
        let m = try ProcessTraining.train(runs).model
        let path = NSTemporaryDirectory() + "kanshi-process-model-\(UUID().uuidString.prefix(6)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try m.save(to: path)
        let loaded = try DetectorModel.load(from: path, for: .processes)
        let fresh = ProcessTraining.RecordedRun(name: "fresh", label: .ransomware, events: Self.run("rename", pid: 77, files: 50).events, workload: "rename")
        let r = try ProcessTraining.replay(fresh, model: loaded)
        #expect(r.alert?.root == 77 && r.namedTheWorkload)
        #expect { try DetectorModel.load(from: path, for: .blocks) } throws: { "\($0)".contains("is a process model") }
        #expect { try LiveDetector(model: loaded) } throws: { "\($0)".contains("a process model reads behaviour logs") }
    }
}

/// The entropy of written data, as the VM sensor puts it on close events.
struct WrittenEntropyTests {
    @Test func closeEventsCarryEntropyThroughTheLog() throws {
        var e = TraceEvent(kind: .close)
        e.pid = 5; e.path = "/mnt/a"; e.bytes = 4096; e.entropy = 7.9876
        #expect(e.json.contains("\"entropy\":7.988"))
        e.entropy = 0.004
        #expect(e.json.contains("\"entropy\":0.004"))
        e.entropy = 5.06
        let back = try BehaviourLogReader.event(fromJSON: Data(e.json.utf8))
        #expect(back.entropy == 5.06 && back.bytes == 4096)
    }

    @Test func encryptedReplacementsAreCountedAndCompressedNewFilesAreNot() {
        var log = ProcessWindowsTests.Log()
        log.start(50, "inplace")
        for i in 0..<10 {
            let f = ProcessWindowsTests.file(i)
            log.add(.open, 50, f, flags: "rw")
            var c = TraceEvent(kind: .close)
            log.t += 1000
            c.time = log.t; c.pid = 50; c.tid = 50; c.path = f; c.bytes = 10_000; c.entropy = 7.97; c.ret = 0
            log.events.append(c)
        }
        log.start(60, "compress")
        log.add(.open, 60, "/mnt/corpus/Backups/docs.zip", flags: "w,creat,trunc")
        var z = TraceEvent(kind: .close)
        z.time = log.t + 1000; z.pid = 60; z.tid = 60; z.path = "/mnt/corpus/Backups/docs.zip"; z.bytes = 1 << 20; z.entropy = 7.99; z.ret = 0
        log.events.append(z)
        let rows = ProcessWindowsTests.rows(log)
        let i = ProcessWindows.names.firstIndex(of: "high_entropy_files")!, m = ProcessWindows.names.firstIndex(of: "written_entropy")!
        let ransomware = rows.filter { $0.root == 50 }, compress = rows.filter { $0.root == 60 }
        #expect(ransomware.reduce(0) { $0 + $1.values[i] } == 10)
        #expect(compress.reduce(0) { $0 + $1.values[i] } == 0)
        #expect(compress.allSatisfy { $0.values[m] == 0 || abs($0.values[m] - 7.99) < 0.01 })
    }
}
