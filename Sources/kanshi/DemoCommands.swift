import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiExt4
import KanshiJournal
import KanshiML
import KanshiMemory
import KanshiSandbox
import KanshiSystem
import KanshiVMSensor
import KanshiWorkload
import Logging

/// One workload run in the sandbox, as the demo and `dataset record` see it.
struct WorkloadRun {
    var name: String
    var label: Label
    var result: Sandbox.Result
    var disk: String
    var journal: String
    var verify: CorpusCheck?
}

/// What `kanshi corpus verify` said about the corpus on a disk image.
struct CorpusCheck {
    var files: Int
    var intact: Int
    var bytesLost: UInt64
}

enum SandboxWorkloads {
    /// Runs `kanshi workload NAME` in the guest on a fresh copy of the victim disk.
    /// With `behaviourLog`, the VM sensor watches the guest and writes its behaviour log there, every call included.
    /// With `companion`, that workload runs beside it (a benign command line, started first, in the
    /// background). With `undo: .process` (needs `behaviourLog`), an alert undoes only the blamed tree's files.
    static func run(name: String, seed: UInt64, dir: String, model: DetectorModel?, timeout: Double,
                    logger: Logger, stop: LockedFlag, quiet: Bool, tag: String, behaviourLog: String? = nil,
                    allCalls: Bool = true, companion: String? = nil, undo: Sandbox.Undo = .wholeDisk,
                    processModel: DetectorModel? = nil, memoryDump: String? = nil,
                    memoryWatch: [MemoryWatch.Target] = [], memoryIntervalMs: Int = 1000, execSample: Int = 0) async throws -> WorkloadRun {
        let guest = try GuestImage(directory: SandboxLayout.guest(dir))
        let disk = try SandboxRun.freshVictimDisk(dir: dir, name: tag)
        let main = "kanshi workload \(name) --dir /mnt/corpus --seed \(seed)"
        var config = Sandbox.Config(guest: guest, disk: disk, journal: disk + ".journal",
                                    command: companion.map { "\($0) & \(main); status=$?; wait; exit $status" } ?? main)
        config.model = model
        config.processModel = processModel
        config.timeoutSeconds = timeout
        config.undo = undo
        config.memoryWatch = memoryWatch
        config.memoryWatchIntervalMs = memoryIntervalMs
        if let memoryDump {
            try? FileManager.default.removeItem(atPath: memoryDump)
            config.memoryDump = memoryDump
        }
        if let behaviourLog {
            let kernel = try VMSensorKernel.cached(guestDirectory: guest.directory, vmlinuz: guest.kernel)
            var sensor = VMSensor.Config(kernel: kernel, plugin: VMSensorPaths.plugin, logPath: behaviourLog)
            sensor.managedSetPath = behaviourLog + ".managed.json"
            sensor.behaviour.vm = "sandbox"
            sensor.behaviour.allCalls = allCalls  // every read and write too: what per-process features are made of
            sensor.execSampleEvery = execSample
            config.vmSensor = sensor
        }
        let result = try await Sandbox(config: config, logger: logger) { line in
            if !quiet || line.hasPrefix("KANSHI-GUEST-FAIL") { Output.line("  guest| " + line) }
        }.run(stopRequested: { stop.value })
        let label = Dataset.kanshiWorkloads.first { $0.0 == name }?.1 ?? .benign
        return WorkloadRun(name: name, label: label, result: result, disk: disk, journal: config.journal, verify: nil)
    }

    /// Checks the corpus on `disk` against its manifest, reading the manifest
    /// and every file straight from the image with Kanshi's ext4 reader (no
    /// mount, nothing copied out).
    static func verify(disk: String) throws -> CorpusCheck {
        do {
            let fs = try Ext4FileSystem(reader: FileImageReader(path: disk))
            let manifest = try Manifest(text: String(decoding: try fs.read(path: "/corpus/" + Manifest.fileName), as: UTF8.self))
            var check = CorpusCheck(files: manifest.entries.count, intact: 0, bytesLost: 0)
            for e in manifest.entries {
                if let bytes = try? fs.read(path: "/corpus/" + e.path), UInt64(bytes.count) == e.size, Manifest.digest(bytes) == e.sha256 {
                    check.intact += 1
                } else {
                    check.bytesLost += e.size
                }
            }
            return check
        } catch {
            throw CLIError("cannot check the corpus on \(disk): \(error)")
        }
    }
}

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The main job end to end: ransomware in a monitored VM, caught live and rolled back; then a benign workload.",
        discussion: """
            Builds the sandbox if needed (kanshi sandbox build), gets a detector (--model, \
            one trained on --dataset, or by default the one shipped in models/), then runs a \
            ransomware workload in the guest with the live detector on: prints the alert, \
            the detection delay, the bytes written before detection, and after the rollback \
            how many victim files are intact; then the same for a benign workload, which \
            should raise no alert.
            """)

    @Option(help: "Sandbox directory.")
    var dir: String = SandboxLayout.defaultDirectory
    @Option(help: "Detector model (default: models/sandbox-detector.json of the checkout, trained on the sandbox's own recordings).")
    var model: String?
    @Option(help: "Process model (default: models/process-detector.json of the checkout, trained on the VM sensor's logs of the sandbox's recordings); used with --undo process.")
    var processModel: String?
    @Option(help: "Train the detector on these recordings instead (RanSAP runs or `kanshi dataset record` output: a directory, or a .tar/.tar.xz of one), written to DIR/model.json.")
    var dataset: String?
    @Option(help: "Ransomware workload to run.")
    var ransomware: String = "inplace"
    @Option(help: "Benign workload to run.")
    var benign: String = "compress"
    @Option(help: ArgumentHelp("What an alert undoes: process (the VM sensor names the process tree; only its files are put back, other changes stay; needs root for the mount) or disk (every block since the workload started). Default: process when running as root with /dev/fuse, else disk.", valueName: "process|disk"))
    var undo: String?
    @Option(help: "A benign command run beside each ransomware workload, in the background, so that the undo can be seen to keep its changes ('none' for none).")
    var companion: String = Demo.defaultCompanion
    @Option(help: "Per-run timeout, seconds.")
    var timeout: Double = 600
    @Flag(help: "Run every workload (the README's table) instead of one of each kind.")
    var all = false
    @Flag(help: "Show the guest's console.")
    var verbose = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if model != nil && dataset != nil { throw ValidationError("give --model or --dataset, not both") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive, got \(timeout)") }
        if let undo, Sandbox.Undo(rawValue: undo) == nil { throw ValidationError("--undo \(undo): give process or disk") }
    }

    static let defaultCompanion = "kanshi workload database --dir /mnt/corpus --db-mib 4 --transactions 100 --seed 9"

    /// --undo, or process where a selective undo can mount the disk (root, /dev/fuse).
    var undoMode: Sandbox.Undo {
        if let undo, let u = Sandbox.Undo(rawValue: undo) { return u }
        return Host.isRoot && FileSystem.exists("/dev/fuse") ? .process : .wholeDisk
    }

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.demo", level: global.logLevel)
        let stop = try LockedFlag.setOnStopSignal()
        Output.line("== building the sandbox (cached)")
        try SandboxBuild.build(dir: dir, seed: 1, corpusMiB: 48, diskMiB: 256, force: false)
        let modelPath = try model ?? Self.defaultModel(dir: dir, dataset: dataset)
        let m: DetectorModel
        do { m = try DetectorModel.load(from: modelPath, for: .blocks) } catch { throw CLIError("\(modelPath): \(error)") }
        var runs: [WorkloadRun] = []
        let mode = undoMode
        var pm: DetectorModel?
        if mode == .process {
            let path = try processModel ?? ShippedModels.path(ShippedModels.process)
            do { pm = try DetectorModel.load(from: path, for: .processes) } catch { throw CLIError("\(error)") }
        }
        Output.line(mode == .process
            ? "== the process detector follows the VM sensor; on its alert the VM stops and only the named tree's files are put back (the disk detector watches beside it)"
            : "== on an alert: the VM is paused and the whole disk rolled back to just before the workload started\(undo == nil ? " (a selective undo needs root and /dev/fuse)" : "")")
        let plan = all ? Dataset.kanshiWorkloads.map { ($0.0, $0.1.rawValue) } : [(ransomware, "ransomware"), (benign, "benign")]
        for (name, what) in plan {
            Output.line("\n== \(what) workload '\(name)' in the guest, live detector on")
            let isRansomware = what == Label.ransomware.rawValue
            let withCompanion = isRansomware && companion != "none" ? companion : nil
            if let withCompanion { Output.line("beside it: \(withCompanion)") }
            var r = try await SandboxWorkloads.run(name: name, seed: 1, dir: dir, model: m, timeout: timeout, logger: logger,
                                                   stop: stop, quiet: !verbose, tag: "demo-\(name)",
                                                   behaviourLog: mode == .process ? "\(dir)/runs/demo-\(name).behaviour.jsonl" : nil,
                                                   allCalls: false, companion: withCompanion, undo: mode, processModel: pm,
                                                   memoryDump: isRansomware ? "\(dir)/runs/demo-\(name).lime" : nil)
            if stop.value { throw ExitCode(130) }
            SandboxRun.report(r.result, json: false, journal: r.journal)
            Self.memoryAtTheAlert(r.result, guest: SandboxLayout.guest(dir))
            r.verify = try SandboxWorkloads.verify(disk: r.disk)
            if let v = r.verify {
                let after = r.result.undo != nil ? " after the selective undo" : r.result.rollback != nil ? " after the rollback" : ""
                Output.line("victim files intact: \(v.intact) of \(v.files)\(after); bytes lost: \(v.bytesLost)")
            }
            runs.append(r)
        }
        Output.line("\n== summary")
        Self.table(runs)
    }

    /// What the memory dump taken at the alert shows: the blamed process, still in the guest's
    /// task list, read from outside the guest.
    static func memoryAtTheAlert(_ r: Sandbox.Result, guest: String) {
        guard let dump = r.memoryDump, dump.moment == "alert" else { return }
        let path = dump.written.path
        do {
            let view = try GuestMemorySource(image: path, guestDirectory: guest).kernelView()
            let list = view.processes().processes
            let users = list.filter { !$0.kernelThread }
            var line = "memory at the alert: \(path) (\(Output.bytes(dump.written.ramBytes)), guest paused); its task list, read from outside the guest: \(users.count) processes"
            if let root = r.detection?.process?.root ?? r.culprit?.pid {
                let blamed = list.first { $0.pid == Int32(root) }
                line += blamed.map { ", among them the blamed pid \($0.pid) (\($0.name))" } ?? ", the blamed pid \(root) no longer among them"
            }
            Output.line(line + "; kanshi sandbox ps --image \(path) lists them")
        } catch {
            Output.error("demo: the memory dump at the alert cannot be read: \(error)")
        }
    }

    static func table(_ runs: [WorkloadRun]) {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
        func delay(_ d: Sandbox.Detection?) -> String {
            d.map { $0.delayNs.map { String(format: "%.2f s", Double($0) / 1e9) } ?? "no write" } ?? "-"
        }
        Output.line(pad("workload", 16) + pad("class", 11) + pad("run", 8) + pad("alert", 7) + pad("delay", 9) + pad("written before", 16)
                    + pad("blamed", 25) + pad("others kept", 13) + pad("intact", 10) + pad("bytes lost", 12) + "disk detector (watching)")
        for r in runs {
            let res = r.result
            let d = res.detection
            let blamed = res.culprit.map { String($0.argv.prefix(3).joined(separator: " ").prefix(24)) } ?? (d == nil ? "-" : "whole disk")
            // With the process detector acting, the disk detector only watches: its own verdict.
            let watching = res.detection?.process != nil || res.vmSensor != nil
            let disk = res.diskDetection.map { "alert, " + delay($0) } ?? (!watching ? "-" : d != nil ? "not by then" : "no alert")
            Output.line(pad(r.name, 16) + pad(r.label.rawValue, 11)
                        + pad(res.runSeconds.map { String(format: "%.1f s", $0) } ?? (d != nil ? "stopped" : "-"), 8)
                        + pad(d == nil ? "no" : "YES", 7)
                        + pad(delay(d), 9)
                        + pad(d.map { Output.bytes($0.bytesWrittenBeforeAlert) } ?? "-", 16)
                        + pad(blamed, 25)
                        + pad(res.othersKept.map { "\($0.same)/\($0.files)" } ?? "-", 13)
                        + pad(r.verify.map { "\($0.intact)/\($0.files)" } ?? "-", 10)
                        + pad(r.verify.map { "\($0.bytesLost)" } ?? "-", 12)
                        + disk)
        }
    }

    /// The detector the demo uses: --model; or one trained here on --dataset (written to
    /// DIR/model.json, reusable with --model); or the model shipped in the repository's
    /// `models/` (trained on the sandbox's own recordings, see models/README.md).
    static func defaultModel(dir: String, dataset: String?) throws -> String {
        guard var data = dataset else { return try ShippedModels.path(ShippedModels.disk) }
        if data.hasSuffix(".tar.xz") || data.hasSuffix(".tar") {
            let into = dir + "/dataset-unpacked"
            Output.line("== unpacking \(data)")
            try? FileManager.default.removeItem(atPath: into)
            try FileManager.default.createDirectory(atPath: into, withIntermediateDirectories: true)
            let t = try runTool(["tar", "-xf", data, "-C", into])
            guard t.status == 0 else { throw CLIError("cannot unpack \(data): \(t.stderr)") }
            data = into
        }
        let path = dir + "/model.json"
        Output.line("== training the detector on \(data) (random forest, extended features)")
        let m = try DetectorTraining.train(dataset: data, classifier: .rf, featureSet: .extended, stacked: false, ruleThreshold: 0.5)
        try m.model.save(to: path)
        Output.line("trained on \(m.runs) runs, \(m.windows) windows; wrote \(path) (reuse it with --model)")
        return path
    }

}

/// The models shipped in the checkout's models/ (see models/README.md).
enum ShippedModels {
    /// The disk detector: block windows of the sandbox's recordings.
    static let disk = "models/sandbox-detector.json"
    /// The process detector: process-tree windows of the VM sensor's behaviour logs.
    static let process = "models/process-detector.json"

    /// The shipped model's path, found from the kanshi checkout.
    static func path(_ relative: String) throws -> String {
        guard let root = SandboxLayout.projectRoot else {
            throw CLIError("no model: give --model FILE (the shipped \(relative) is found from the kanshi checkout, and this kanshi is not in one)")
        }
        let path = root + "/" + relative
        guard FileSystem.exists(path) else { throw CLIError("no model: \(path) is missing; give --model FILE") }
        return path
    }
}
