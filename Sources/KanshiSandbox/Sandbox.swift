import Foundation
import KanshiAnalysis
import KanshiBlock
import KanshiCore
import KanshiExt4
import KanshiHistory
import KanshiJournal
import KanshiML
import KanshiMemory
import KanshiRules
import KanshiSystem
import KanshiTrace
import KanshiVMSensor
import Logging
import NIOCore
import NIOPosix

/// One monitored run: a QEMU guest whose data disk is served by Kanshi's
/// journaling NBD server (in this process), a command run inside it, the
/// live detector on the journal, and on an alert: pause, roll back, stop.
public final class Sandbox: @unchecked Sendable {
    public struct Config: Sendable {
        public var guest: GuestImage
        public var disk: String
        public var journal: String
        /// A shell command run in the guest with /mnt (the data disk) as its directory.
        public var command: String
        public var model: DetectorModel?
        /// A process model (`kanshi behaviour train`): with the VM sensor, it follows the behaviour
        /// log, names the process tree doing the damage and is the one that raises the alert; the
        /// disk detector (`model`) then only watches and its first alert is reported beside it.
        public var processModel: DetectorModel?
        public var timeoutSeconds: Double = 600
        public var qemu = QEMUGuest.Options()
        public var pollMs = 200
        /// Roll back on an alert (otherwise only pause and stop).
        public var rollback = true
        /// What an alert's rollback undoes: the whole disk, or (with the VM sensor) only the
        /// files changed by the process tree the sensor blames.
        public var undo = Undo.wholeDisk
        /// Where the guest mounts the data disk (paths under it are the disk's files).
        public var guestMountPoint = "/mnt"
        /// Watch every system call of the guest (the VM sensor; TCG only).
        public var vmSensor: VMSensor.Config?
        /// Give the guest a network (QEMU user networking; through the VM sensor's relay when it runs).
        public var network = false
        /// With `network` and the VM sensor: every frame the guest sent, as pcap.
        public var pcap: String?
        /// Host files put into the guest before the command runs.
        public var added: [AddedFile] = []
        /// Share the guest's RAM with the memory sensor through a file under /dev/shm (`kanshi
        /// sandbox ps`, `memory` and `dump` read it while the guest runs); when /dev/shm has no
        /// room the run goes on without it and says so.
        public var shareRAM = true
        /// Write a LiME image of the guest's RAM here when the command ends (or at an alert, a
        /// timeout, Ctrl-C: whichever comes first). Needs `shareRAM`.
        public var memoryDump: String?
        /// Take that image while the guest runs on (default: paused for it, a consistent image).
        public var memoryDumpLive = false
        /// Guest processes whose pages go into the journal while they run (`MemoryWatch`).
        public var memoryWatch: [MemoryWatch.Target] = []
        public var memoryWatchIntervalMs = 1000
        /// Rules run live on the VM sensor's behaviour log and on the journal as they are written
        /// (`kanshi rules check` gives the same alerts on them afterwards). An alert goes to
        /// `ruleSinks`; a rule with the pause action pauses the guest and ends the run, with the
        /// rollback action the disk is rolled back too.
        public var rules: RuleSet?
        /// Called before each disk write is journaled; may block (a shipper too far behind the server).
        public var admission: (@Sendable () -> Void)?
        public var ruleSinks: AlertFanout?
        /// Told once the guest runs with its RAM shared: where other processes find it.
        public var sharing: (@Sendable (RunningSandbox) -> Void)?
        public init(guest: GuestImage, disk: String, journal: String, command: String) {
            self.guest = guest; self.disk = disk; self.journal = journal; self.command = command
        }
    }

    public enum Undo: String, Sendable, CaseIterable {
        /// Every block changed since the command started goes back (`disk rollback`).
        case wholeDisk = "disk"
        /// Only the files the blamed process tree changed go back; the VM is stopped first.
        case process
    }

    public struct Detection: Sendable {
        /// When the detector fired (wall clock), and the window it fired on.
        public var alertNs: UInt64
        public var probability: Float
        /// The process detector's alert: the tree it named, and the files it had destroyed.
        public var process: ProcessDetector.Alert?
        /// Since the workload's first write to the disk.
        public var delayNs: UInt64?
        /// Bytes written before the alert: to the disk since the command's first write (the disk
        /// detector), or by the named tree into its files (the process detector, counted by the
        /// VM sensor at each file's close).
        public var bytesWrittenBeforeAlert: UInt64
        /// The process detector: bytes that reached the disk (from any process) since the tree's first destroyed file.
        public var bytesOnDisk: UInt64?
    }

    public struct Result: Sendable {
        /// The command's exit status in the guest (nil if it did not finish).
        public var exitStatus: Int32?
        public var bootSeconds: Double?
        public var runSeconds: Double?
        public var journalBytes: UInt64 = 0
        public var detection: Detection?
        public var rollback: RollbackReport?
        /// The moment rolled back to: just before the command started.
        public var rolledBackTo: TimePoint?
        public var timedOut = false
        public var interrupted = false
        public var guestFailure: String?
        /// When the command started in the guest (wall clock, ns).
        public var commandStartNs: UInt64?
        /// What the VM sensor saw (with `vmSensor`).
        public var vmSensor: VMSensor.Result?
        /// Why the live detector stopped before the run ended (nil: it watched the whole run).
        public var detectorFailure: String?
        /// With a process model: when the disk detector, only watching, would have raised its alert.
        public var diskDetection: Detection?
        /// With `undo: .process`: the tree blamed (from the VM sensor's log) and the next suspects,
        /// what the selective undo did, and why the whole disk was rolled back instead when it could not run.
        public var culprit: ProcessActivity.Suspect?
        public var otherSuspects: [ProcessActivity.Suspect] = []
        public var undo: UndoReport?
        public var undoFallback: String?
        /// After a selective undo: the files other processes changed on the disk since the
        /// command started, and how many of them read the same after the undo as before it.
        public var othersKept: (files: Int, same: Int)?
        /// Why the guest's RAM was not shared (nil: it was).
        public var ramNotShared: String?
        /// With `memoryDump`: what the dump did, or why it failed.
        public var memoryDump: MemoryDump.Report?
        public var memoryDumpFailure: String?
        /// With `memoryWatch`: what the watch did.
        public var memoryWatch: MemoryWatch.Stats?
        /// With `rules`: every alert, the one that stopped the run (pause or rollback action), and
        /// why a rule watch stopped early.
        public var ruleAlerts: [RuleAlert] = []
        public var ruleStop: RuleAlert?
        /// A rule's isolate action: which rule cut the guest's network (or why it could not).
        public var ruleIsolated: String?
        /// A rule's kill action: each guest process killed ("rule NAME: pid N (comm)"), or why not.
        public var ruleKills: [String] = []
        public var ruleFailures: [String] = []
    }

    let config: Config
    let logger: Logger
    let console: @Sendable (String) -> Void
    private let state = NSLock()
    // SAFETY: the fields below are only touched under `state`.
    private var result = Result()
    private var jobStartNs: UInt64?
    private var jobStartSequence: UInt64?
    private var startedNs: UInt64 = 0
    private var finished = false
    private var alerted = false
    /// Held while the guest is paused and resumed around a kill, and while it is paused for good
    /// (an alert that ends the run): a kill never resumes a guest something paused to stop it.
    private let guestControl = NSLock()
    private var pausedForGood = false
    private var ram: GuestRAM?
    private var qmpPath = ""
    private var dumpTaken = false
    /// Appends a note to the run's journal (detector alerts go there, for rules and for the record).
    private var journalNote: ((String) -> Void)?
    /// The VM sensor while it runs (a rule's isolate action cuts the guest's network through it).
    private var runningSensor: VMSensor?

    public init(config: Config, logger: Logger, console: @escaping @Sendable (String) -> Void) {
        self.config = config
        self.logger = logger
        self.console = console
    }

    /// Runs the command; `stopRequested` is polled (Ctrl-C).
    public func run(stopRequested: @escaping @Sendable () -> Bool) async throws -> Result {
        let work = NSTemporaryDirectory() + "kanshi-vm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let writer = try JournalWriter(directory: config.journal, options: .init(staged: true), logger: logger)
        var writerClosed = false
        defer { if !writerClosed { try? writer.close() } }
        let disk: JournaledDisk
        do { disk = try JournaledDisk(imagePath: config.disk, journal: writer, readOnly: false) } catch {
            throw SandboxError.badDisk(path: config.disk, reason: "\(error)")
        }
        disk.admission = config.admission
        disk.note("{\"event\":\"serve-start\",\"image\":\"\(FileSystem.absolutePath(config.disk).jsonEscaped)\",\"size\":\(disk.size),\"readOnly\":false,\"sandbox\":true}")
        withState { journalNote = { disk.note($0) } }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let server = NBDServer(backend: disk, group: group, threadPool: pool, handshakeTimeout: .seconds(30), logger: logger)
        let socketPath = work + "/nbd.sock"
        let channel = try await server.listen(on: .unix(path: socketPath))
        let jobPath = work + "/job.img"
        try JobDisk.write(script: config.command + "\n", files: config.added, to: jobPath)

        var qemu = config.qemu
        // The guest's RAM, shared with the memory sensor.
        var ram: GuestRAM?
        if config.shareRAM {
            do { ram = try GuestRAM(size: UInt64(qemu.memoryMiB) << 20) } catch {
                if config.memoryDump != nil { throw SandboxError.memory("\(error); the memory dump needs it") }
                logger.warning("the guest's RAM is not shared: kanshi sandbox ps, memory and dump cannot see this run", metadata: ["why": "\(error)"])
                withState { result.ramNotShared = "\(error)" }
            }
        } else if config.memoryDump != nil {
            throw SandboxError.memory("a memory dump needs the guest's RAM shared")
        }
        let sidecar = ram.map { RunningSandbox.sidecar(ram: $0.path) }
        defer {
            ram?.removeFile()
            if let sidecar { try? FileSystem.remove(sidecar) }
        }
        // The page time series: the kernel's facts now (a kernel the sensor cannot read fails here, before the boot).
        var watch: MemoryWatch?
        if !config.memoryWatch.isEmpty {
            guard let ram else { throw SandboxError.memory("--memory-watch needs the guest's RAM shared") }
            let facts: MemoryKernelFacts
            do { facts = try MemoryKernelFacts.cached(guestDirectory: config.guest.directory, vmlinuz: config.guest.kernel) } catch {
                throw SandboxError.memory("\(error)")
            }
            watch = MemoryWatch(memory: ram, facts: facts, targets: config.memoryWatch, journal: writer, intervalMs: config.memoryWatchIntervalMs)
        }
        defer { watch?.stop() }
        let qmpPath = work + "/qmp.sock"
        withState { self.ram = ram; self.qmpPath = qmpPath }
        var sensor: VMSensor?
        if config.network { qemu.kernelArguments.append("kanshi.net=1") }
        if var s = config.vmSensor {
            if config.network { s.network = .init(directory: work, pcap: config.pcap) }
            s.guestMemoryMiB = s.guestMemoryMiB ?? qemu.memoryMiB
            if let ram, s.guestMemoryMiB == qemu.memoryMiB { s.ramBackend = ram.qemuArguments }
            s.vcpus = qemu.vcpus
            let vm = try VMSensor(config: s)
            qemu.extraArguments += vm.qemuArguments
            sensor = vm
            withState { runningSensor = vm }
        } else if config.network {
            qemu.extraArguments += ["-netdev", "user,id=kanshi-net", "-device", "virtio-net-pci,netdev=kanshi-net"]
        }
        if let ram, sensor == nil { qemu.extraArguments += ram.qemuArguments }
        // Even a kill -9 of this process leaves no socket, work file or ring behind (QEMU dies with us too).
        let reaper = LeftoverReaper(paths: [work] + (sensor.map { [$0.ringPath] } ?? []) + (ram.map { [$0.path] } ?? []) + (sidecar.map { [$0] } ?? []))
        defer { reaper?.stop() }
        startedNs = FileSystem.monotonicNs()
        let guest = try QEMUGuest(guest: config.guest, nbdURI: "nbd+unix:///?socket=\(socketPath)", jobDisk: jobPath,
                                  qmpPath: qmpPath, options: qemu) { [self] line in
            self.consoleLine(line, writer: writer)
        }
        defer { guest.terminate() }
        if let ram {
            let description = RunningSandbox(kanshiPid: Host.processID, qemuPid: guest.pid, ram: ram.path, ramBytes: ram.size, qmp: qmpPath,
                                             vmlinuz: FileSystem.absolutePath(config.guest.kernel),
                                             guestDirectory: FileSystem.absolutePath(config.guest.directory),
                                             command: config.command, startedNs: FileSystem.nowNs())
            do {
                try description.write()
                config.sharing?(description)
            } catch {
                logger.warning("cannot describe the run for kanshi sandbox ps", metadata: ["path": "\(sidecar ?? "")", "why": "\(error)"])
            }
        }
        watch?.start()
        if let sensor {
            sensor.start()
            guard sensor.waitForPlugin(seconds: 30) else {
                guest.terminate()
                let r = sensor.stop()
                throw VMSensorError.pluginFailed(r.stats.error ?? "QEMU did not load it within 30 s (see the console above)")
            }
        }

        var ruleWatches: [RuleWatch] = []
        if let rules = config.rules {
            let fanout = config.ruleSinks ?? AlertFanout([], report: { _ in })
            let sources: [RuleSource] = (config.vmSensor.map { [.log($0.logPath)] } ?? []) + [.journal(config.journal)]
            for source in sources {
                let engine = RuleEngine(rules, world: RuleWorld(protected: config.vmSensor?.behaviour.protect ?? []))
                let w = RuleWatch(engine: engine, source: source, fanout: fanout) { [self] alert in
                    self.ruleAlert(alert, guest: guest, world: engine.world)
                }
                w.start()
                ruleWatches.append(w)
            }
        }
        // Each detector's thread signals `detectorDone` when it returns.
        let detectorDone = DispatchSemaphore(value: 0)
        var detectors = 0
        let processAlerts = config.processModel != nil && config.vmSensor != nil
        if let model = config.model {
            detectors += 1
            Thread { [self] in
                self.detect(model: model, guest: guest, acting: !processAlerts)
                detectorDone.signal()
            }.start()
        }
        if let model = config.processModel, let log = config.vmSensor?.logPath {
            detectors += 1
            Thread { [self] in
                self.detectProcesses(model: model, log: log, guest: guest)
                detectorDone.signal()
            }.start()
        }

        let deadline = FileSystem.monotonicNs() + UInt64(config.timeoutSeconds * 1e9)
        while guest.isRunning {
            if stopRequested() { withState { result.interrupted = true }; break }
            if FileSystem.monotonicNs() > deadline { withState { result.timedOut = true }; break }
            if withState({ alerted }) { break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        // An alert pauses the guest; then the damage is rolled back while no I/O is issued.
        func stopGuestAndSensor() {
            guest.terminate()
            if let sensor, withState({ result.vmSensor == nil }) {
                let r = sensor.stop()
                withState { result.vmSensor = r }
            }
        }
        let alert = withState { alerted }
        // The memory dump when the command did not end (at JOB-END it is taken as the line comes).
        if config.memoryDump != nil {
            let moment = alert ? "alert" : withState { result.timedOut ? "timeout" : result.interrupted ? "interrupted" : "guest-ended" }
            takeMemoryDump(moment: moment, qemuRunning: guest.isRunning)
        }
        if alert {
            try await Task.sleep(nanoseconds: 300_000_000)  // let in-flight requests finish
            // Before blaming a process: the guest's processes stop for good (its page cache with
            // them) and the sensor's log is complete.
            if config.undo == .process { stopGuestAndSensor() }
        }
        // A rule that stopped the run rolls back only when it asks to.
        let rollbackWanted = withState { result.ruleStop.map { $0.actions.contains(.rollback) } ?? config.rollback }
        if alert, rollbackWanted, let seq = withState({ jobStartSequence }) {
            var undone = false
            if config.undo == .process {
                do { undone = try undoCulprit(disk: disk, jobStart: seq) } catch {
                    logger.warning("the selective undo failed; rolling the whole disk back", metadata: ["why": "\(error)"])
                    withState { result.undoFallback = "\(error)" }
                }
            }
            if !undone {
                let point = TimePoint.sequence(seq)
                let report = try disk.rollBack(to: point)
                withState { result.rollback = report; result.rolledBackTo = point }
            }
        }
        stopGuestAndSensor()
        for w in ruleWatches {
            w.finish()
            if let f = w.failure { withState { result.ruleFailures.append("\(w.source.path): \(f)") } }
        }
        if !ruleWatches.isEmpty { (config.ruleSinks)?.close() }
        if let watch {
            let stats = watch.stop()
            withState { result.memoryWatch = stats }
        }
        withState { finished = true }
        for _ in 0..<detectors { detectorDone.wait() }
        try? await channel.close()
        try? await group.shutdownGracefully()
        try? await pool.shutdownGracefully()
        disk.note("{\"event\":\"serve-stop\",\"sandbox\":true}")
        try disk.image.syncData()
        try writer.close()
        writerClosed = true
        var r = withState { result }
        r.journalBytes = (try? FileSystem.list(config.journal).filter { $0.hasPrefix("segment-") }
            .reduce(UInt64(0)) { $0 + ((try? SystemFile(path: config.journal + "/" + $1, mode: .readOnly).size()) ?? 0) }) ?? 0
        return r
    }

    /// Blames a process tree from the VM sensor's log and puts back only the files it changed,
    /// as they were just before its first change. False (and `undoFallback` says why) when no
    /// process can be blamed: the caller rolls the whole disk back instead.
    private func undoCulprit(disk: JournaledDisk, jobStart: UInt64) throws -> Bool {
        guard let log = config.vmSensor?.logPath else {
            withState { result.undoFallback = "no VM sensor: no process to blame" }
            return false
        }
        guard let journal = disk.journal, let startNs = withState({ jobStartNs }) else { return false }
        try journal.sync()
        let before = try Ext4FileSystem(reader: PastImageReader(past: PastImage(index: VersionIndex(journal: journal.directory),
                                                                                 at: .sequence(jobStart), imagePath: disk.image.path)))
        let activity = ProcessActivity()
        try BehaviourLogReader.read(path: log) { activity.add($0) }
        let prefix = config.guestMountPoint
        let suspects = activity.suspects(sinceNs: startNs, under: prefix) { path in
            (try? before.lookup(path: String(path.dropFirst(prefix.count)))) != nil
        }
        // The process detector's tree when it named one; else the tree that destroyed most.
        let named = withState { result.detection?.process?.root }
        let chosen = named.flatMap { root in suspects.first { $0.tree.contains(root) } } ?? suspects.first
        guard let top = chosen, top.existingChanged > 0 || top.filesRead > 0 else {
            withState { result.undoFallback = "the VM sensor saw no process touch the disk's files since the command started" }
            return false
        }
        withState {
            result.culprit = top
            result.otherSuspects = Array(suspects.filter { $0.pid != top.pid }.prefix(3))
        }
        // Just before its first change (and never before the command started).
        let point = TimePoint.time(ns: max(top.firstChangeNs ?? startNs, startNs + 1) - 1)
        let paths = top.changes.map { String($0.path.dropFirst(prefix.count)) }
        let report = try SelectiveUndo.run(disk: disk, paths: paths, to: point, logger: logger)
        withState { result.undo = report }
        // What the other processes changed must read the same before and after the undo.
        let blamed = Set(top.tree)
        let others = Set(activity.processes.keys.filter { !blamed.contains($0) })
        let theirs = Set(activity.changes(ofTree: Array(others), sinceNs: startNs, under: prefix).map { String($0.path.dropFirst(prefix.count)) })
            .subtracting(paths)
        if !theirs.isEmpty {
            let index = try VersionIndex(journal: journal.directory)
            let beforeUndo = try Ext4FileSystem(reader: PastImageReader(past: PastImage(index: index, at: .sequence(report.startSequence - 1),
                                                                                       imagePath: disk.image.path)))
            let now = try Ext4FileSystem(reader: FileImageReader(path: disk.image.path))
            func content(_ fs: Ext4FileSystem, _ path: String) -> [UInt8]? {
                guard let i = try? fs.lookup(path: path), i.type == .regular else { return nil }
                return try? fs.contents(of: i)
            }
            let same = theirs.filter { content(beforeUndo, $0) == content(now, $0) }.count
            withState { result.othersKept = (theirs.count, same) }
        }
        return true
    }

    /// Writes the run's memory dump, once: paused through QMP unless live (or QEMU is gone:
    /// then its RAM as it was left). A failure is logged and reported; the run goes on.
    private func takeMemoryDump(moment: String, qemuRunning: Bool) {
        guard let path = config.memoryDump else { return }
        let ram: GuestRAM? = withState {
            guard !dumpTaken else { return nil }
            dumpTaken = true
            return self.ram
        }
        guard let ram else { return }
        let qmp = withState { qemuRunning ? qmpPath : nil }
        do {
            let r = try MemoryDump.take(memory: ram, to: path, qmp: qmp, live: config.memoryDumpLive, moment: moment)
            logger.info("memory dump written", metadata: ["path": "\(path)", "moment": "\(moment)", "bytes": "\(r.written.ramBytes)",
                                                         "seconds": "\(r.written.seconds)"])
            withState { result.memoryDump = r }
        } catch {
            logger.error("the memory dump failed", metadata: ["path": "\(path)", "why": "\(error)"])
            withState { result.memoryDumpFailure = "\(error)" }
        }
    }

    private func withState<R>(_ body: () throws -> R) rethrows -> R {
        state.lock(); defer { state.unlock() }
        return try body()
    }

    private func consoleLine(_ line: String, writer: JournalWriter) {
        console(line)
        let now = FileSystem.monotonicNs()
        if line.hasPrefix("KANSHI-GUEST-JOB-START") {
            let seq = try? writer.appendNote("{\"event\":\"guest-job-start\"}")
            withState {
                jobStartSequence = seq
                jobStartNs = FileSystem.nowNs()
                result.commandStartNs = jobStartNs
                result.bootSeconds = Double(now - startedNs) / 1e9
            }
        } else if line.hasPrefix("KANSHI-GUEST-JOB-END ") {
            let status = Int32(line.dropFirst("KANSHI-GUEST-JOB-END ".count).trimmingCharacters(in: .whitespaces))
            _ = try? writer.appendNote("{\"event\":\"guest-job-end\",\"status\":\(status.map(String.init) ?? "null")}")
            withState {
                result.exitStatus = status
                if let b = result.bootSeconds { result.runSeconds = Double(now - startedNs) / 1e9 - b }
            }
            if config.memoryDump != nil { takeMemoryDump(moment: "job-end", qemuRunning: true) }
        } else if line.hasPrefix("KANSHI-GUEST-FAIL ") {
            withState { result.guestFailure = String(line.dropFirst("KANSHI-GUEST-FAIL ".count)) }
        }
    }

    /// Follows the journal and runs the live detector over it; on the first alert after the
    /// command started, pauses the guest. A detector that cannot go on (the journal unreadable,
    /// the model failing) says so in the result and the log: detection is never silently off.
    private func detect(model: DetectorModel, guest: QEMUGuest, acting: Bool) {
        let live: LiveDetector
        let tail: JournalTail
        do {
            live = try LiveDetector(model: model)
            tail = try JournalTail(directory: config.journal)
        } catch {
            detectorFailed("cannot start: \(error)")
            return
        }
        // Writes since the command started: the first one's time and the bytes
        // (those seen before the start time is known wait in `early`).
        var early: [(timeNs: UInt64, bytes: UInt64)] = []
        var firstWrite: UInt64?
        var written: UInt64 = 0
        func count(_ w: (timeNs: UInt64, bytes: UInt64), since start: UInt64) {
            guard w.timeNs >= start else { return }
            firstWrite = firstWrite ?? w.timeNs
            written += w.bytes
        }
        while !withState({ finished || alerted }) {
            var added = 0
            let known = withState { jobStartNs }
            do {
                try tail.poll { r in
                    guard let (e, _) = try BlockRecords.decode(r) else { return }
                    live.append(e)
                    added += 1
                    guard e.operation == .write else { return }
                    if let start = known { count((e.timeNs, UInt64(e.length)), since: start) } else { early.append((e.timeNs, UInt64(e.length))) }
                }
            } catch {
                detectorFailed("cannot read the journal: \(error)")
                return
            }
            if added > 0, let start = withState({ jobStartNs }) {
                for w in early { count(w, since: start) }
                early.removeAll()
                do {
                    if let alert = try live.evaluate(sinceNs: start) {
                        if acting { pauseForGood(guest) }
                        withState { journalNote }?(DetectorNote.blocks(probability: alert.probability, windowStartNs: alert.windowStartNs, acting: acting))
                        let now = FileSystem.nowNs()
                        let d = Detection(alertNs: now, probability: alert.probability,
                                          delayNs: firstWrite.map { now > $0 ? now - $0 : 0 }, bytesWrittenBeforeAlert: written)
                        withState {
                            if acting {
                                alerted = true
                                result.detection = d
                            } else {
                                result.diskDetection = d
                            }
                        }
                        return
                    }
                } catch {
                    detectorFailed("the model failed: \(error)")
                    return
                }
            }
            usleep(useconds_t(config.pollMs * 1000))
        }
    }

    /// Follows the VM sensor's behaviour log with the process detector; on its first alert after
    /// the command started, pauses the guest. Besides the named tree's own bytes, the result
    /// says how much reached the disk (from any process) since the tree's first destroyed file.
    private func detectProcesses(model: DetectorModel, log: String, guest: QEMUGuest) {
        let watch: ProcessWatch
        let journal: JournalTail
        do {
            watch = try ProcessWatch(model: model, log: log, under: config.guestMountPoint, pollMs: config.pollMs)
            journal = try JournalTail(directory: config.journal)
        } catch {
            detectorFailed("the process detector cannot start: \(error)")
            return
        }
        // The disk's writes (the disk-level columns of the process windows), from the journal;
        // kept to count what reached the disk before the alert.
        var seen: [Access] = []
        func diskWrites() throws -> [Access] {
            var out: [Access] = []
            try journal.poll { r in
                guard let (e, _) = try BlockRecords.decode(r), e.operation == .write else { return }
                let entropy = e.entropies.isEmpty ? 0 : e.entropies.reduce(0, +) / Float(e.entropies.count)
                out.append(Access(timeNs: e.timeNs, lba: e.lba, size: e.length, entropy: entropy))
            }
            seen += out
            return out
        }
        do {
            guard let alert = try watch.run(since: { withState { jobStartNs } }, now: { FileSystem.nowNs() },
                                            stop: { withState { finished || alerted } }, diskWrites: diskWrites) else { return }
            pauseForGood(guest)
            withState { journalNote }?(DetectorNote.processes(alert))
            let now = FileSystem.nowNs()
            let first = alert.firstDestroyNs ?? alert.atNs
            _ = try? diskWrites()  // what the journal got since the last look
            let onDisk = seen.reduce(UInt64(0)) { $1.timeNs >= first ? $0 + UInt64($1.size) : $0 }
            withState {
                alerted = true
                result.detection = Detection(alertNs: now, probability: alert.probability, process: alert,
                                             delayNs: now > first ? now - first : 0,
                                             bytesWrittenBeforeAlert: UInt64(max(0, alert.bytesWritten)), bytesOnDisk: onDisk)
            }
        } catch {
            detectorFailed("the process detector stopped: \(error)")
        }
    }

    /// A rule's alert during the run: kept; with pause or rollback, the guest pauses and the run
    /// ends; with kill, the process (its tree for tree-keyed rules) is killed while the guest is paused.
    private func ruleAlert(_ alert: RuleAlert, guest: QEMUGuest, world: RuleWorld) {
        withState { result.ruleAlerts.append(alert) }
        let stops = alert.actions.contains(.pause) || alert.actions.contains(.rollback)
        if alert.actions.contains(.kill) {
            let victims = world.processes(actedOnBy: alert)
            if !victims.isEmpty { killInGuest(victims, rule: alert.rule, guest: guest, resume: !stops) }
        }
        if alert.actions.contains(.isolate), withState({ result.ruleIsolated == nil }) {
            let why = "rule \(alert.rule)"
            let cut = withState { runningSensor }?.isolate(why: why) ?? false
            withState { result.ruleIsolated = cut ? why : "\(why) asked to isolate the guest, which has no network through the VM sensor (--net)" }
            if cut { withState { journalNote }?("{\"event\":\"isolated\",\"rule\":\"\(alert.rule.jsonEscaped)\"}") }
        }
        guard stops else { return }
        pauseForGood(guest)
        withState {
            guard !alerted else { return }
            alerted = true
            result.ruleStop = alert
        }
    }

    /// Pauses the guest for the rest of the run (an alert that ends it).
    private func pauseForGood(_ guest: QEMUGuest) {
        guestControl.withLock {
            pausedForGood = true
            try? guest.pause()
        }
    }

    /// The guest kernel as seen in the shared RAM, found once (the kernel does not move).
    private var kernelView: GuestKernelView?

    /// Kills guest processes from outside (`GuestSignals`): pauses the guest, marks SIGKILL
    /// pending for each, resumes it unless the run is ending; a journal note records it.
    private func killInGuest(_ pids: [Int32], rule: String, guest: QEMUGuest, resume: Bool) {
        var lines: [String] = [], killed: [Int32] = []
        func failed(_ why: String) { lines.append("rule \(rule): \(why)") }
        if let ram = withState({ ram }) {
            guestControl.lock()
            defer { guestControl.unlock() }
            do {
                try guest.pause()
                defer { if resume && !pausedForGood { try? guest.resume() } }
                let view = try withState({ kernelView }) ?? {
                    let facts = try MemoryKernelFacts.cached(guestDirectory: config.guest.directory, vmlinuz: config.guest.kernel)
                    let v = try GuestKernelView(memory: ram, facts: facts)
                    withState { kernelView = v }
                    return v
                }()
                for pid in pids {
                    do {
                        let sent = try GuestSignals.kill(pid: pid, view: view, ram: ram)
                        killed.append(pid)
                        lines.append("rule \(rule): killed pid \(pid) (\(sent.process.name))")
                    } catch {
                        failed("\(error)")
                    }
                }
            } catch {
                failed("cannot kill \(pids.map(String.init).joined(separator: " ")): \(error)")
            }
        } else {
            failed("cannot kill \(pids.map(String.init).joined(separator: " ")): the guest's RAM is not shared")
        }
        withState { result.ruleKills += lines }
        for l in lines { logger.warning("\(l)") }
        if !killed.isEmpty {
            withState { journalNote }?("{\"event\":\"killed\",\"rule\":\"\(rule.jsonEscaped)\",\"pids\":[\(killed.map(String.init).joined(separator: ","))]}")
        }
    }

    private func detectorFailed(_ why: String) {
        logger.error("the live detector stopped", metadata: ["why": "\(why)"])
        withState { result.detectorFailure = why }
    }
}

/// A detector's alert as a journal note (`"event":"detector-alert"`): rules see it as `ev = note`
/// with the `verdict.*` fields, live and when the journal is checked afterwards.
enum DetectorNote {
    static func blocks(probability: Float, windowStartNs: UInt64, acting: Bool) -> String {
        "{\"event\":\"detector-alert\",\"detector\":\"blocks\",\"probability\":\(probability),\"windowStartNs\":\(windowStartNs),\"acting\":\(acting)}"
    }

    static func processes(_ a: ProcessDetector.Alert) -> String {
        let argv = a.argv.map { "\"\($0.jsonEscaped)\"" }.joined(separator: ",")
        return "{\"event\":\"detector-alert\",\"detector\":\"processes\",\"probability\":\(a.probability),\"windowStartNs\":\(a.windowStartNs),\"pid\":\(a.root),\"argv\":[\(argv)],\"destroyed\":\(a.destroyed),\"acting\":true}"
    }
}
