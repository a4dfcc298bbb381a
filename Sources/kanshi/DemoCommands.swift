import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiExt4
import KanshiJournal
import KanshiML
import KanshiSandbox
import KanshiSystem
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
    static func run(name: String, seed: UInt64, dir: String, model: DetectorModel?, timeout: Double,
                    logger: Logger, stop: LockedFlag, quiet: Bool, tag: String) async throws -> WorkloadRun {
        let guest = try GuestImage(directory: SandboxLayout.guest(dir))
        let disk = try SandboxRun.freshVictimDisk(dir: dir, name: tag)
        var config = Sandbox.Config(guest: guest, disk: disk, journal: disk + ".journal",
                                    command: "kanshi workload \(name) --dir /mnt/corpus --seed \(seed)")
        config.model = model
        config.timeoutSeconds = timeout
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
            or trains one on the RanSAP development split once and caches it), then runs a \
            ransomware workload in the guest with the live detector on: prints the alert, \
            the detection delay, the bytes written before detection, and after the rollback \
            how many victim files are intact; then the same for a benign workload, which \
            should raise no alert.
            """)

    @Option(help: "Sandbox directory.")
    var dir: String = SandboxLayout.defaultDirectory
    @Option(help: "Detector model (default: DIR/model.json, trained on the RanSAP development split if missing).")
    var model: String?
    @Option(help: "RanSAP development split (the .tar.xz or an unpacked directory) to train the default model on.")
    var dataset: String?
    @Option(help: "Ransomware workload to run.")
    var ransomware: String = "inplace"
    @Option(help: "Benign workload to run.")
    var benign: String = "compress"
    @Option(help: "Per-run timeout, seconds.")
    var timeout: Double = 600
    @Flag(help: "Run every workload (the README's table) instead of one of each kind.")
    var all = false
    @Flag(help: "Show the guest's console.")
    var verbose = false
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.demo", level: global.logLevel)
        let stop = try LockedFlag.setOnStopSignal()
        Output.line("== building the sandbox (cached)")
        try SandboxBuild.build(dir: dir, seed: 1, corpusMiB: 48, diskMiB: 256, force: false)
        let modelPath = try model ?? Self.defaultModel(dir: dir, dataset: dataset)
        let m: DetectorModel
        do { m = try DetectorModel.load(from: modelPath) } catch { throw CLIError("\(modelPath): \(error)") }
        var runs: [WorkloadRun] = []
        let plan = all ? Dataset.kanshiWorkloads.map { ($0.0, $0.1.rawValue) } : [(ransomware, "ransomware"), (benign, "benign")]
        for (name, what) in plan {
            Output.line("\n== \(what) workload '\(name)' in the guest, live detector on")
            var r = try await SandboxWorkloads.run(name: name, seed: 1, dir: dir, model: m, timeout: timeout, logger: logger,
                                                   stop: stop, quiet: !verbose, tag: "demo-\(name)")
            if stop.value { throw ExitCode(130) }
            SandboxRun.report(r.result, json: false, journal: r.journal)
            r.verify = try SandboxWorkloads.verify(disk: r.disk)
            if let v = r.verify {
                Output.line("victim files intact: \(v.intact) of \(v.files)\(r.result.rollback != nil ? " after the rollback" : ""); bytes lost: \(v.bytesLost)")
            }
            runs.append(r)
        }
        Output.line("\n== summary")
        Self.table(runs)
    }

    static func table(_ runs: [WorkloadRun]) {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
        Output.line(pad("workload", 14) + pad("class", 11) + pad("boot", 8) + pad("run", 8) + pad("journal", 11) + pad("alert", 7) + pad("delay", 8) + pad("written before", 16) + pad("intact", 10) + "bytes lost")
        for r in runs {
            let res = r.result
            let d = res.detection
            Output.line(pad(r.name, 14) + pad(r.label.rawValue, 11)
                        + pad(res.bootSeconds.map { String(format: "%.1f s", $0) } ?? "-", 8)
                        + pad(res.runSeconds.map { String(format: "%.1f s", $0) } ?? (d != nil ? "stopped" : "-"), 8)
                        + pad(Output.bytes(res.journalBytes), 11) + pad(d == nil ? "no" : "YES", 7)
                        + pad(d?.delayNs.map { String(format: "%.2f s", Double($0) / 1e9) } ?? "-", 8)
                        + pad(d.map { Output.bytes($0.bytesWrittenBeforeAlert) } ?? "-", 16)
                        + pad(r.verify.map { "\($0.intact)/\($0.files)" } ?? "-", 10)
                        + (r.verify.map { "\($0.bytesLost)" } ?? "-"))
        }
    }

    /// DIR/model.json, trained on the RanSAP development split the first time.
    static func defaultModel(dir: String, dataset: String?) throws -> String {
        let path = dir + "/model.json"
        if FileSystem.exists(path) { return path }
        var source = dataset
        if source == nil, let root = SandboxLayout.projectRoot {
            let archive = (root as NSString).deletingLastPathComponent + "/shared/datasets/ransap-dev.tar.xz"
            if FileSystem.exists(archive) { source = archive }
        }
        guard var data = source else {
            throw CLIError("no detector model: give --model FILE, or --dataset with the RanSAP development split to train one")
        }
        if data.hasSuffix(".tar.xz") {
            let into = dir + "/ransap"
            if !FileSystem.exists(into + "/dataset") {
                Output.line("== unpacking \(data)")
                try FileManager.default.createDirectory(atPath: into, withIntermediateDirectories: true)
                let t = try runTool(["tar", "-xJf", data, "-C", into])
                guard t.status == 0 else { throw CLIError("cannot unpack \(data): \(t.stderr)") }
            }
            data = into + "/dataset"
        }
        Output.line("== training the detector on \(data) (random forest, extended features; once)")
        let t = try runTool([SandboxLayout.executable, "train", "--dataset", data, "--classifier", "rf", "--features", "extended", "--no-stacked",
                                "--rule-threshold", "0.5", "--model", path])
        guard t.status == 0 else { throw CLIError("training failed: \(t.stderr)") }
        return path
    }
}
