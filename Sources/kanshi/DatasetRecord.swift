import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiJournal
import KanshiMemory
import KanshiSandbox
import KanshiSystem
import KanshiVMSensor

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Make datasets of our own.",
        subcommands: [DatasetRecord.self])
}

struct DatasetRecord: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Run every workload several times in the sandbox and write labelled recordings in the RanSAP layout.",
        discussion: """
            For each workload and run: a fresh copy of the victim disk, the guest runs \
            `kanshi workload NAME --dir /mnt/corpus --seed N`, and the journal's block events \
            from the command's start are exported to OUT/kanshi-sandbox/kanshi-NAME/kanshi-NAME-N/ \
            (ata_read.csv, ata_write.csv; N the next number free, so runs recorded into an existing \
            OUT, e.g. with another --seed, are added to it), with the VM sensor's behaviour log of the run beside them \
            (behaviour.jsonl; --no-behaviour to leave it out). Folders kanshi-<workload> are labelled by \
            `kanshi train | evaluate | cross-validate` like RanSAP's families. Journals are kept \
            beside the disks in the sandbox directory unless --discard-journals. With \
            --memory-watch kanshi the workloads' pages are journaled as they change and their \
            memory-access features per second written as memory.csv.
            """)

    @Option(help: "Output directory.")
    var out: String
    @Option(help: "Runs of each workload.")
    var runs: Int = 3
    @Option(help: "Workloads to record, comma-separated (default: all).")
    var workloads: String?
    @Option(help: "First seed (run i uses seed + i).")
    var seed: UInt64 = 100
    @Option(help: "Sandbox directory.")
    var dir: String = SandboxLayout.defaultDirectory
    @Option(help: "Per-run timeout, seconds.")
    var timeout: Double = 900
    @Option(name: .customLong("corpus-mib"), help: "Size of the victim corpus (kanshi sandbox build), in MiB.")
    var corpusMiB: Int = 48
    @Flag(help: "Delete each run's disk and journal once exported.")
    var discardJournals = false
    @Flag(inversion: .prefixedNo,
          help: "Watch each run with the VM sensor and keep its behaviour log (JSON lines, as kanshi trace writes) beside the run's CSV files, as behaviour.jsonl.")
    var behaviour = true
    @Option(help: ArgumentHelp("Also watch these guest processes' pages (a pid or a name, repeatable; the workloads run as kanshi) and write memory-access features per second (kanshi journal memory-features) beside the run's CSV files, as memory.csv.", valueName: "pid|name"))
    var memoryWatch: [String] = []
    @Option(help: "With --memory-watch: milliseconds between scans.")
    var memoryInterval: Int = 1000
    @Flag(help: "Log every guest system call in behaviour.jsonl (reads and writes with their sizes too), not only what the behaviour model needs (what kanshi demo watches).")
    var allCalls = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if runs < 1 { throw ValidationError("--runs must be at least 1") }
        if memoryInterval < 10 || memoryInterval > 3_600_000 { throw ValidationError("--memory-interval must be from 10 ms to an hour") }
        for w in memoryWatch where w.isEmpty || w.count > 15 {
            throw ValidationError("--memory-watch \(w): give a pid or a process name of 1 to 15 characters")
        }
        if allCalls && !behaviour { throw ValidationError("--all-calls needs the behaviour log: drop --no-behaviour") }
        if let w = workloads {
            let known = Set(Dataset.kanshiWorkloads.map(\.0))
            for name in w.split(separator: ",") where !known.contains(String(name)) {
                throw ValidationError("unknown workload '\(name)'; known: \(Dataset.kanshiWorkloads.map(\.0).joined(separator: ", "))")
            }
        }
    }

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.dataset", level: global.logLevel)
        let stop = try LockedFlag.setOnStopSignal()
        let names = workloads.map { $0.split(separator: ",").map(String.init) } ?? Dataset.kanshiWorkloads.map(\.0)
        try SandboxBuild.build(dir: dir, seed: 1, corpusMiB: corpusMiB, diskMiB: max(256, corpusMiB * 2 + 16), force: false)
        var done = 0
        for name in names {
            for i in 0..<runs {
                if stop.value { throw ExitCode(130) }
                let s = seed + UInt64(i)
                Output.error("dataset: \(name) run \(i + 1)/\(runs) (seed \(s))")
                let log = behaviour ? "\(dir)/runs/record-\(name)-\(i).behaviour.jsonl" : nil
                let r = try await SandboxWorkloads.run(name: name, seed: s, dir: dir, model: nil, timeout: timeout, logger: logger,
                                                       stop: stop, quiet: true, tag: "record-\(name)-\(i)", behaviourLog: log,
                                                       allCalls: allCalls, memoryWatch: memoryWatch.map(MemoryWatch.Target.init),
                                                       memoryIntervalMs: memoryInterval, execSample: memoryWatch.isEmpty ? 0 : 1)
                guard r.result.exitStatus == 0, let start = r.result.commandStartNs else {
                    throw CLIError("\(name) run \(i + 1) failed in the guest (status \(r.result.exitStatus.map(String.init) ?? "none")\(r.result.guestFailure.map { ": \($0)" } ?? ""))")
                }
                // Runs already in OUT stay: a new run takes the next free number.
                var number = i + 1
                while FileSystem.exists("\(out)/kanshi-sandbox/kanshi-\(name)/kanshi-\(name)-\(number)") { number += 1 }
                let target = "\(out)/kanshi-sandbox/kanshi-\(name)/kanshi-\(name)-\(number)"
                let summary = try RanSAPExport.export(journal: JournalReader(directory: r.journal), to: target, fromNs: start)
                if let log {
                    guard r.result.vmSensor?.error == nil, FileSystem.exists(log) else {
                        throw CLIError("\(name) run \(i + 1): the VM sensor failed (\(r.result.vmSensor?.error ?? "no behaviour log")); record with --no-behaviour to go on without it")
                    }
                    try? FileManager.default.removeItem(atPath: target + "/behaviour.jsonl")
                    try FileManager.default.moveItem(atPath: log, toPath: target + "/behaviour.jsonl")
                    try? FileManager.default.removeItem(atPath: log + ".managed.json")
                }
                var memoryRows = ""
                if !memoryWatch.isEmpty {
                    if let f = r.result.memoryWatch?.failure { throw CLIError("\(name) run \(i + 1): the memory watch stopped: \(f)") }
                    let execution = (r.result.vmSensor?.execution.allWindows ?? []).map { (startNs: $0.startNs, samples: $0.samples, pages: $0.pages) }
                    let n = try MemoryWindows.export(journal: r.journal, to: target + "/memory.csv", fromNs: start, execution: execution)
                    memoryRows = ", \(n) memory windows"
                }
                Output.line("\(target): \(summary.readRows) read rows, \(summary.writeRows) write rows\(memoryRows), run \(String(format: "%.1f", r.result.runSeconds ?? 0)) s")
                if discardJournals {
                    try? FileManager.default.removeItem(atPath: r.disk)
                    try? FileManager.default.removeItem(atPath: r.journal)
                }
                done += 1
            }
        }
        Output.line("recorded \(done) runs in \(out)")
    }
}
