import ArgumentParser
import Foundation
import KanshiML
import KanshiMemory
import KanshiRules
import KanshiSandbox
import KanshiSystem
import KanshiTrace
import KanshiVMSensor

struct SandboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run a command in a monitored VM whose disk goes through Kanshi; catch ransomware and undo it.",
        subcommands: [SandboxBuild.self, SandboxRun.self, SandboxKernel.self, SandboxPS.self, SandboxMemory.self, SandboxDump.self, SandboxSymbols.self])
}

struct SandboxRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot the sandbox guest on a journaled disk and run COMMAND in it.",
        discussion: """
            The guest (QEMU, TCG unless --accel kvm) mounts DISK (ext4) at /mnt and runs \
            COMMAND there with sh; its console streams to standard output. Every block it \
            reads and writes is journaled by Kanshi's NBD server, in this process. With \
            --model, the live detector follows the journal; on an alert the guest is paused, \
            the disk is rolled back to just before COMMAND started, and the VM is stopped. \
            Exit status: COMMAND's; 3 after an alert; 124 on --timeout; 125 if the guest \
            failed before reporting a status; 130 on Ctrl-C.

            The VM sensor (--trace LOG, or --protect): a QEMU plugin hooks every system call \
            of every guest process from inside the VMM (64-bit and 32-bit entries), identifies \
            the caller from the guest kernel's own structures (offsets from the kernel image's \
            BTF and kallsyms; KASLR and page-table isolation are handled), and kanshi writes the \
            behaviour log (the JSON lines of kanshi trace, plus "vm") and keeps the managed set: \
            a process that reads a --protect path (a guest path) becomes managed, and so does \
            every file it writes, its children, and the readers of its pipes. A summary (process \
            tree, files, peers, managed set) follows the run. TCG only: with --accel kvm the \
            sensor cannot run and says so.

            Detection that knows processes (--trace LOG --process-model M --undo process): the \
            process detector follows the behaviour log, names the process tree that destroys \
            files which were there before it (overwritten, renamed away, deleted) and raises the \
            alert; the VM is stopped; only that tree's files are put back as they were just \
            before its first change (their content from the journal, read with Kanshi's ext4 \
            reader, written through a journaled mount: root and /dev/fuse), while what other \
            processes changed stays. --model then only watches. Without a process model, \
            --undo process blames the tree that destroyed most files when the disk detector \
            fires. When no tree can be blamed or the mount fails, the whole disk is rolled back.

            The memory sensor: the guest's RAM is shared with kanshi through a file under             /dev/shm while it runs (kanshi sandbox ps, memory and dump read it from another             shell). --memory-dump FILE writes a LiME image of it when COMMAND ends (or at an             alert, a timeout, Ctrl-C), the guest paused for it; kanshi sandbox symbols writes             the Volatility 3 symbol table to read it with. --memory-watch PID|NAME journals             that process's pages whenever they change (every --memory-interval ms; kanshi             journal export --memory reads them).
            """)

    @Option(help: "The data disk image (ext4), changed in place (default: a fresh copy of the sandbox's victim disk, DIR/runs/<time>.img).")
    var disk: String?

    @Option(help: "Journal directory (default: DISK.journal).")
    var journal: String?

    @Option(help: "Detector model (from kanshi train): watch the run and roll back on an alert.")
    var model: String?

    @Option(help: "Guest directory (vmlinuz, initramfs.cpio.gz; default: the one kanshi sandbox build made).")
    var guest: String?

    @Option(help: "Sandbox directory (of kanshi sandbox build).")
    var dir: String = SandboxLayout.defaultDirectory

    @Option(help: "Stop the VM after this many seconds.")
    var timeout: Double = 600

    @Option(help: "QEMU accelerator: tcg, or kvm on a machine with hardware virtualization.")
    var accel: String = "tcg"

    @Option(help: "Guest memory in MiB.")
    var memory: Int = 512

    @Flag(help: "On an alert, only pause and stop the VM; do not roll the disk back.")
    var noRollback = false

    @Option(help: ArgumentHelp("Rules (a file, or builtin) run live on the VM sensor's log and the journal; alerts as JSON lines on standard error (and --alerts, --webhook, --syslog). A rule with the pause action pauses the guest and ends the run; with rollback the disk is rolled back; with isolate the guest's network is cut (--net); with kill the guest process is killed from outside. Turns the VM sensor on (its log beside the disk unless --trace).", valueName: "file|builtin"))
    var rules: String?
    @OptionGroup var alertSinks: AlertSinkOptions
    @OptionGroup var shipping: ShipOptions

    @Option(help: "Process model (kanshi behaviour train; needs the VM sensor, --trace): it names the process tree doing ransomware-like damage and raises the alert; --model then only watches and its first alert is reported beside it.")
    var processModel: String?

    @Option(help: ArgumentHelp("What an alert undoes: disk (every block changed since the command started) or process (only the files changed by the process tree the VM sensor blames, put back as they were just before its first change; other processes' changes stay). process needs the VM sensor (--trace) and root (the disk is mounted through Kanshi to put files back); when no process can be blamed or the mount fails, the whole disk is rolled back.", valueName: "disk|process"))
    var undo: String = "disk"

    @Flag(help: "Print the result as JSON (after the console).")
    var json = false

    @Option(help: "Watch every system call in the guest (the VM sensor) and write the behaviour log here (JSON lines).")
    var trace: String?

    @Option(help: "A confidential guest path, file or directory (repeatable): its readers become managed. Turns the VM sensor on (log: DISK.trace.jsonl unless --trace).")
    var protect: [String] = []

    @Flag(help: "Log every guest system call, as strace would (`call` events, reads and writes of every process; large logs).")
    var allCalls = false

    @Option(help: ArgumentHelp("Sample user code running in the guest: the user instruction each Nth timer interrupt of a vCPU stopped (1: every tick, the guest kernel's HZ per busy vCPU); per second, the samples, the distinct code pages and the address spaces they fell in go to LOG.exec.csv. Needs the VM sensor (--trace LOG).", valueName: "N"))
    var execSample: Int?

    @Option(help: ArgumentHelp("The VM sensor's ring between QEMU and kanshi: a power of two from 64K to 1G (K, M or G). When kanshi falls behind and it fills, the guest waits: no record is lost.", valueName: "size"))
    var ringSize: String = "32M"

    @Option(help: "The managed set to load and save (default: LOG.managed.json).")
    var managedSet: String?

    @Option(help: "The VM's name in the behaviour log.")
    var vmName: String = "sandbox"

    @Option(help: "Virtual CPUs of the guest.")
    var smp: Int = 1

    @Option(help: "QEMU CPU model, e.g. qemu64,vendor=GenuineIntel (the guest kernel then turns page-table isolation on).")
    var cpu: String?

    @Flag(help: "Do not print the VM sensor's summary.")
    var quiet = false

    @Flag(help: "Give the guest a network (QEMU user networking: the host is 10.0.2.2 and fec0::2). With the VM sensor every frame the guest sends passes through kanshi, and frames of managed processes are dropped.")
    var net = false

    @Flag(help: "With --net and the VM sensor: let frames no process explains pass even while managed processes run (default: dropped, fail closed).")
    var allowUnattributed = false

    @Option(help: "With --net and the VM sensor: write every frame the guest sends to this pcap file.")
    var pcap: String?

    @Option(parsing: .unconditionalSingleValue, help: "An extra QEMU argument, for experiments and benchmarks (repeatable; e.g. --qemu-arg -gdb --qemu-arg tcp:127.0.0.1:1234).")
    var qemuArg: [String] = []

    @Option(help: "An extra guest kernel command line option (repeatable; e.g. nokaslr).")
    var kernelArg: [String] = []

    @Option(help: "Put a host file into the guest before COMMAND runs: HOSTFILE[:GUESTPATH] (default /usr/local/bin/NAME for executables, /root/NAME otherwise; repeatable).")
    var add: [String] = []

    @Option(help: "Write a LiME image of the guest's RAM here when COMMAND ends (or at an alert, a timeout, Ctrl-C), the guest paused for it; read it with kanshi sandbox ps --image, or Volatility 3 with kanshi sandbox symbols.")
    var memoryDump: String?

    @Flag(help: "With --memory-dump: do not pause the guest for it.")
    var memoryDumpLive = false

    @Option(help: ArgumentHelp("Record a guest process's pages into the journal while it runs (repeatable): a pid, or a name (every process of that name, as they come). A page is stored when it appears or changes; read them with kanshi journal export --memory.", valueName: "pid|name"))
    var memoryWatch: [String] = []

    @Option(help: "With --memory-watch: milliseconds between scans.")
    var memoryInterval: Int = 1000

    @Argument(parsing: .captureForPassthrough, help: "The command to run in the guest (after --).")
    var command: [String] = []

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        // Passthrough capture swallows --help and -h before '--'; they still ask for help.
        if TraceCommandLine(passthrough: command) == .help { throw CleanExit.helpRequest(self) }
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        if cmd.isEmpty { throw ValidationError("give the command to run in the guest after --") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if !["tcg", "kvm"].contains(accel) { throw ValidationError("--accel must be tcg or kvm") }
        if smp < 1 || smp > 64 { throw ValidationError("--smp must be between 1 and 64") }
        for p in protect where !p.hasPrefix("/") {
            throw ValidationError("--protect \(p): give an absolute path in the guest (the command runs in /mnt, the data disk)")
        }
        if allCalls && trace == nil && protect.isEmpty { throw ValidationError("--all-calls needs --trace LOG") }
        if let n = execSample {
            if n < 1 { throw ValidationError("--exec-sample must be at least 1, not \(n)") }
            if trace == nil && protect.isEmpty { throw ValidationError("--exec-sample needs the VM sensor (--trace LOG)") }
        }
        guard let u = Sandbox.Undo(rawValue: undo) else { throw ValidationError("--undo \(undo): give disk or process") }
        if u == .process && trace == nil && protect.isEmpty { throw ValidationError("--undo process needs the VM sensor (--trace LOG): it names the process to undo") }
        if processModel != nil && trace == nil && protect.isEmpty { throw ValidationError("--process-model needs the VM sensor (--trace LOG): it reads the behaviour log") }
        if u == .process && noRollback { throw ValidationError("give --undo process or --no-rollback, not both") }
        _ = try Self.ringBytes(ringSize)
        if (pcap != nil || allowUnattributed) && !net { throw ValidationError("--pcap and --allow-unattributed need --net") }
        if pcap != nil && trace == nil && protect.isEmpty { throw ValidationError("--pcap needs the VM sensor (--trace or --protect): the frames pass through it") }
        for a in add { _ = try AddedFile(argument: a) }
        if memoryInterval < 10 || memoryInterval > 3_600_000 { throw ValidationError("--memory-interval must be from 10 ms to an hour") }
        for w in memoryWatch where w.isEmpty || w.count > 15 {
            throw ValidationError("--memory-watch \(w): give a pid or a process name of 1 to 15 characters (the kernel keeps 15)")
        }
        if memoryDumpLive && memoryDump == nil { throw ValidationError("--memory-dump-live needs --memory-dump FILE") }
        if let memoryDump {
            if FileSystem.exists(memoryDump) { throw ValidationError("--memory-dump \(memoryDump) already exists: a memory image is never overwritten") }
            let parent = (FileSystem.absolutePath(memoryDump) as NSString).deletingLastPathComponent
            if !FileSystem.exists(parent) { throw ValidationError("--memory-dump \(memoryDump): its directory \(parent) does not exist") }
        }
    }

    /// `--ring-size`: 64K, 32M, 1G or plain bytes; a power of two in `VMSensor.ringSizes`.
    static func ringBytes(_ text: String) throws -> Int {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        let unit = text.last.flatMap { units[Character($0.uppercased())] }
        let digits = unit == nil ? Substring(text) : text.dropLast()
        guard let n = Int(digits), n > 0, case let (bytes, overflow) = n.multipliedReportingOverflow(by: unit ?? 1), !overflow,
              VMSensor.ringSizes.contains(bytes), bytes & (bytes - 1) == 0 else {
            throw ValidationError("--ring-size \(text): give a power of two from 64K to 1G (e.g. 64K, 32M, 1G)")
        }
        return bytes
    }

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.sandbox", level: global.logLevel)
        let stopped = try LockedFlag.setOnStopSignal()
        let cmd = (command.first == "--" ? Array(command.dropFirst()) : command).joined(separator: " ")
        let image: GuestImage
        do { image = try GuestImage(directory: guest ?? SandboxLayout.guest(dir)) } catch { throw CLIError("\(error)") }
        let disk: String
        if let given = self.disk {
            guard FileSystem.exists(given) else { throw CLIError("\(given): no such disk image") }
            disk = given
        } else {
            disk = try Self.freshVictimDisk(dir: dir)
            Output.error("sandbox: disk \(disk) (a fresh copy of the victim disk)")
        }
        var config = Sandbox.Config(guest: image, disk: disk, journal: journal ?? disk + ".journal", command: cmd)
        if let model {
            do { config.model = try DetectorModel.load(from: model, for: .blocks) } catch { throw CLIError("\(model): \(error)") }
        }
        if let processModel {
            do { config.processModel = try DetectorModel.load(from: processModel, for: .processes) } catch { throw CLIError("\(error)") }
        }
        config.timeoutSeconds = timeout
        config.qemu.accel = accel
        config.qemu.memoryMiB = memory
        config.rollback = !noRollback
        config.undo = Sandbox.Undo(rawValue: undo) ?? .wholeDisk
        config.qemu.vcpus = smp
        config.qemu.cpu = cpu
        config.network = net
        config.pcap = pcap
        config.qemu.extraArguments += qemuArg
        config.qemu.kernelArguments += kernelArg
        config.added = try add.map { try AddedFile(argument: $0) }
        config.memoryDump = memoryDump
        config.memoryDumpLive = memoryDumpLive
        config.memoryWatch = memoryWatch.map(MemoryWatch.Target.init)
        config.memoryWatchIntervalMs = memoryInterval
        config.sharing = { r in Output.error("sandbox: the guest's RAM is shared at \(r.ram) (kanshi sandbox ps|memory|dump --ram \(r.ram))") }
        if let rules {
            config.rules = try RulesFileOption.load(rules == "builtin" ? nil : rules)
            config.ruleSinks = try alertSinks.sinks(standardOutput: false, standardError: !json)
        }
        if trace != nil || !protect.isEmpty || rules != nil {
            if accel == "kvm" {
                if !protect.isEmpty { throw CLIError("sandbox: --protect needs the VM sensor, which needs TCG (its QEMU plugin hooks translated code): drop --accel kvm") }
                Output.error("sandbox: the VM sensor needs TCG (its QEMU plugin hooks translated code); with --accel kvm the guest runs without it: no behaviour log, no managed set")
            } else {
                let log = trace ?? disk + ".trace.jsonl"
                do {
                    let kernel = try VMSensorKernel.cached(guestDirectory: image.directory, vmlinuz: image.kernel)
                    var sensor = VMSensor.Config(kernel: kernel, plugin: VMSensorPaths.plugin, logPath: log)
                    if let managedSet { sensor.managedSetPath = managedSet }
                    sensor.behaviour.vm = vmName
                    sensor.behaviour.protect = protect
                    sensor.behaviour.allCalls = allCalls
                    sensor.execSampleEvery = execSample ?? 0
                    sensor.ringBytes = try Self.ringBytes(ringSize)
                    sensor.behaviour.failClosed = !allowUnattributed
                    config.vmSensor = sensor
                } catch {
                    // Protection was asked for and cannot be given: refuse. A trace alone: the disk sensor still runs.
                    if !protect.isEmpty { throw CLIError("sandbox: \(error); refusing to run with --protect without the VM sensor") }
                    Output.error("sandbox: \(error); running with the disk sensor only (no behaviour log)")
                }
            }
        }
        let shipper = try shipping.start(journal: config.journal, log: config.vmSensor?.logPath)
        if let shipper { config.admission = { shipper.waitForRoom() } }
        let result: Sandbox.Result
        do {
            result = try await Sandbox(config: config, logger: logger) { line in Output.line(line) }
                .run(stopRequested: { stopped.value })
        } catch {
            ShipOptions.finish(shipper)
            throw CLIError("sandbox: \(error)")
        }
        ShipOptions.finish(shipper)
        Self.report(result, json: json, journal: config.journal)
        if let vm = result.vmSensor, let s = config.vmSensor {
            if !quiet && !json { Output.error(VMSensorReport.text(vm, log: s.logPath, managedSet: s.managedSetPath)) }
            if let e = vm.error { throw CLIError("sandbox: VM sensor: \(e)") }
        }
        if result.detection != nil || result.ruleStop != nil { throw ExitCode(3) }
        if result.interrupted { throw ExitCode(130) }
        if result.timedOut { throw ExitCode(124) }
        guard let status = result.exitStatus else { throw ExitCode(125) }
        if status != 0 { throw ExitCode(status) }
    }

    /// A copy of the sandbox's victim disk under DIR/runs.
    static func freshVictimDisk(dir: String, name: String? = nil) throws -> String {
        let victim = SandboxLayout.victim(dir)
        guard FileSystem.exists(victim) else { throw CLIError("\(victim) is missing: run kanshi sandbox build first") }
        let runs = dir + "/runs"
        try FileManager.default.createDirectory(atPath: runs, withIntermediateDirectories: true)
        let stamp = name ?? String(FileSystem.nowNs())
        let disk = runs + "/\(stamp).img"
        try? FileManager.default.removeItem(atPath: disk)
        try? FileManager.default.removeItem(atPath: disk + ".journal")
        let src = try SystemFile(path: victim, mode: .readOnly)
        let dst = try SystemFile(path: disk, mode: [.readWrite, .create, .truncate])
        try src.copy(to: dst, offset: 0, length: try src.size())
        return disk
    }

    static func report(_ r: Sandbox.Result, json: Bool, journal: String) {
        var o: [String: Any] = ["journal": journal, "journalBytes": r.journalBytes, "timedOut": r.timedOut, "interrupted": r.interrupted]
        if let s = r.exitStatus { o["exitStatus"] = s }
        if let b = r.bootSeconds { o["bootSeconds"] = b }
        if let x = r.runSeconds { o["runSeconds"] = x }
        if let f = r.guestFailure { o["guestFailure"] = f }
        if let f = r.detectorFailure { o["detectorFailure"] = f }
        if let d = r.detection {
            var a: [String: Any] = ["alertTime": Output.time(d.alertNs), "alertTimeNs": d.alertNs, "probability": Double(d.probability),
                                    "bytesWrittenBeforeAlert": d.bytesWrittenBeforeAlert]
            if let delay = d.delayNs { a["delaySeconds"] = Double(delay) / 1e9 }
            o["alert"] = a
        }
        if let p = r.detection?.process, var a = o["alert"] as? [String: Any] {
            a["process"] = ["root": p.root, "argv": p.argv, "destroyedBeforeAlert": p.destroyed, "bytesOnDisk": r.detection?.bytesOnDisk ?? 0] as [String: Any]
            o["alert"] = a
        }
        if let d = r.diskDetection {
            var a: [String: Any] = ["alertTime": Output.time(d.alertNs), "alertTimeNs": d.alertNs, "probability": Double(d.probability),
                                    "bytesWrittenBeforeAlert": d.bytesWrittenBeforeAlert]
            if let delay = d.delayNs { a["delaySeconds"] = Double(delay) / 1e9 }
            o["diskDetectorWatching"] = a
        }
        if let vm = r.vmSensor { o["vmSensor"] = VMSensorReport.json(vm) }
        if let rb = r.rollback {
            o["rollback"] = ["to": r.rolledBackTo?.description ?? "", "blocks": rb.blocks, "bytes": rb.bytes, "undo": "seq:\(rb.startSequence - 1)"] as [String: Any]
        }
        if let c = r.culprit {
            var b: [String: Any] = ["pid": c.pid, "argv": c.argv, "tree": c.tree, "existingFilesChanged": c.existingChanged,
                                    "filesCreated": c.created, "filesRead": c.filesRead,
                                    "others": r.otherSuspects.map { ["pid": $0.pid, "argv": $0.argv, "existingFilesChanged": $0.existingChanged] as [String: Any] }]
            if let t = c.firstChangeNs { b["firstChange"] = Output.time(t); b["firstChangeNs"] = t }
            o["culprit"] = b
        }
        if let u = r.undo {
            o["undo"] = ["to": u.to.description, "restored": u.restored, "removed": u.removed, "unchanged": u.unchanged,
                         "bytesRestored": u.bytesRestored, "skipped": u.skipped.map { ["path": $0.path, "reason": $0.reason] },
                         "undoTheUndo": "seq:\(u.startSequence - 1)"] as [String: Any]
        }
        if let f = r.undoFallback { o["undoFallback"] = f }
        if let k = r.othersKept { o["othersKept"] = ["files": k.files, "same": k.same] }
        if let m = r.memoryDump {
            o["memoryDump"] = ["path": m.written.path, "moment": m.moment, "paused": m.paused, "ramBytes": m.written.ramBytes,
                               "seconds": m.written.seconds, "bytesPerSecond": m.written.bytesPerSecond] as [String: Any]
        }
        if let f = r.memoryDumpFailure { o["memoryDumpFailure"] = f }
        if let w = r.memoryWatch {
            var m: [String: Any] = ["scans": w.scans, "scansBeforeKernel": w.scansBeforeKernel, "pagesSeen": w.pagesSeen, "pagesStored": w.pagesStored,
                                    "pagesGone": w.pagesGone, "bytesStored": w.bytesStored, "pagesNotResident": w.pagesNotResident,
                                    "processes": w.processes, "gaps": w.gaps, "scanSecondsMax": w.scanSecondsMax,
                                    "scanSecondsMean": w.scans > 0 ? w.scanSecondsTotal / Double(w.scans) : 0]
            if let g = w.lastGap { m["lastGap"] = g }
            if let f = w.failure { m["failure"] = f }
            o["memoryWatch"] = m
        }
        if let f = r.ramNotShared { o["ramNotShared"] = f }
        if !r.ruleAlerts.isEmpty || r.ruleStop != nil || !r.ruleFailures.isEmpty || !r.ruleKills.isEmpty {
            var rules: [String: Any] = ["alerts": r.ruleAlerts.compactMap { try? JSONSerialization.jsonObject(with: Data($0.json.utf8)) }]
            if let s = r.ruleStop { rules["stoppedBy"] = s.rule }
            if let i = r.ruleIsolated { rules["isolated"] = i }
            if !r.ruleKills.isEmpty { rules["kills"] = r.ruleKills }
            if !r.ruleFailures.isEmpty { rules["failures"] = r.ruleFailures }
            o["rules"] = rules
        }
        if json {
            if let text = try? Output.json(o) { Output.line(text) }
            return
        }
        Output.error("sandbox: boot \(r.bootSeconds.map { String(format: "%.1f s", $0) } ?? "-"), run \(r.runSeconds.map { String(format: "%.1f s", $0) } ?? "-"), journal \(Output.bytes(r.journalBytes))")
        if let d = r.detection, let p = d.process {
            Output.error("sandbox: ALERT at \(Output.time(d.alertNs)): pid \(p.root) (\(p.argv.joined(separator: " "))) behaves like ransomware (p=\(String(format: "%.2f", d.probability))): \(p.destroyed) files that were there before it destroyed, \(d.delayNs.map { String(format: "%.2f s", Double($0) / 1e9) } ?? "-") after the first; it had written \(Output.bytes(d.bytesWrittenBeforeAlert)) into files it closed; \(Output.bytes(d.bytesOnDisk ?? 0)) reached the disk since its first (all processes)")
        } else if let d = r.detection {
            Output.error("sandbox: ALERT at \(Output.time(d.alertNs)): ransomware-like activity (p=\(String(format: "%.2f", d.probability))), \(d.delayNs.map { String(format: "%.2f s", Double($0) / 1e9) + " after the first write" } ?? "before any write"), \(Output.bytes(d.bytesWrittenBeforeAlert)) written before it")
        }
        if !r.ruleAlerts.isEmpty {
            let by = Dictionary(grouping: r.ruleAlerts, by: { $0.rule }).mapValues { $0.count }
            Output.error("sandbox: rules: \(r.ruleAlerts.count) alert(s): \(by.keys.sorted().map { "\($0) \(by[$0]!)" }.joined(separator: ", "))")
        }
        if let s = r.ruleStop { Output.error("sandbox: rule \(s.rule) (\(s.severity.rawValue)) paused the guest at \(Output.time(s.time)): \(s.output)") }
        if let i = r.ruleIsolated { Output.error("sandbox: network cut: \(i)") }
        for k in r.ruleKills { Output.error("sandbox: \(k)") }
        for f in r.ruleFailures { Output.error("sandbox: WARNING: rules stopped early on \(f)") }
        if let d = r.diskDetection {
            Output.error("sandbox: the disk detector (watching only) would have alerted at \(Output.time(d.alertNs)) (p=\(String(format: "%.2f", d.probability)))")
        }
        if let rb = r.rollback {
            Output.error("sandbox: rolled the disk back to \(r.rolledBackTo.map { "\($0)" } ?? "-") (just before the command started): \(rb.blocks) blocks, \(Output.bytes(rb.bytes)); undo with kanshi disk rollback --journal \(journal) --to seq:\(rb.startSequence - 1)")
        }
        if let c = r.culprit {
            Output.error("sandbox: blamed pid \(c.pid) (\(c.argv.joined(separator: " "))) and its \(c.tree.count - 1) descendants: \(c.existingChanged) existing files changed, \(c.created) made, \(c.filesRead) read; first change \(c.firstChangeNs.map { Output.time($0) } ?? "none")")
            for o in r.otherSuspects { Output.error("sandbox:   next: pid \(o.pid) (\(o.argv.joined(separator: " "))): \(o.existingChanged) existing files changed") }
        }
        if let u = r.undo {
            Output.error("sandbox: put back only that tree's files as they were at \(u.to): \(u.restored.count) restored (\(Output.bytes(u.bytesRestored))), \(u.removed.count) removed, \(u.unchanged) already as they were, \(u.skipped.count) left alone; other changes kept; undo with kanshi disk rollback --journal \(journal) --to seq:\(u.startSequence - 1)")
            for k in u.skipped.prefix(5) { Output.error("sandbox:   left alone: \(k.path): \(k.reason)") }
            if let k = r.othersKept {
                Output.error("sandbox: files other processes changed since the command started: \(k.same) of \(k.files) read the same after the undo as before it")
            }
        }
        if let f = r.undoFallback { Output.error("sandbox: no selective undo (\(f)); the whole disk was rolled back instead") }
        if let m = r.memoryDump {
            Output.error("sandbox: memory dump at \(m.moment): \(m.written.path), \(Output.bytes(m.written.ramBytes)) in \(String(format: "%.2f s (%.2f GB/s)", m.written.seconds, m.written.bytesPerSecond / 1e9)), \(m.paused ? "guest paused" : "live")")
        }
        if let f = r.memoryDumpFailure { Output.error("sandbox: WARNING: the memory dump failed: \(f)") }
        if let w = r.memoryWatch {
            Output.error("sandbox: memory watch: \(w.scans) scans of pids \(w.processes.map(String.init).joined(separator: ", ")), \(w.pagesSeen) pages seen, \(w.pagesStored) stored (\(Output.bytes(w.bytesStored))), \(w.pagesGone) gone; scan \(String(format: "%.1f ms mean, %.1f ms max", w.scans > 0 ? w.scanSecondsTotal / Double(w.scans) * 1e3 : 0, w.scanSecondsMax * 1e3))" + (w.gaps > 0 ? "; \(w.gaps) gaps (last: \(w.lastGap ?? ""))" : ""))
            if let f = w.failure { Output.error("sandbox: WARNING: the memory watch stopped: \(f)") }
        }
        if let f = r.guestFailure { Output.error("sandbox: the guest failed: \(f)") }
        if let f = r.detectorFailure { Output.error("sandbox: WARNING: the live detector stopped before the run ended (\(f)); later activity was not checked") }
        if r.timedOut { Output.error("sandbox: timed out; the VM was stopped") }
        if r.interrupted { Output.error("sandbox: interrupted; the VM was stopped") }
        if let s = r.exitStatus { Output.error("sandbox: the command exited with status \(s)") }
    }
}
