import ArgumentParser
import Foundation
import KanshiAnalysis
import KanshiML
import KanshiTrace

struct BehaviourCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "behaviour",
        abstract: "Process models: ransomware recognised by what a process tree does to files, from behaviour logs.",
        discussion: """
            The VM sensor (kanshi sandbox run --trace) and kanshi trace write behaviour logs. From \
            them Kanshi cuts per-process-tree windows (1 s): files that were there before the tree \
            and that it overwrote, truncated, renamed away or deleted, files it read and then \
            replaced, copies of read files under a new name, renames that append an extension, files \
            read, directories touched, and running totals. A process model (a random forest on \
            those windows) names the tree doing the damage: kanshi sandbox run --process-model \
            uses it live and undoes only that tree's files.
            """,
        subcommands: [BehaviourTrain.self, BehaviourCrossValidate.self, BehaviourDetect.self])
}

struct BehaviourTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a process model on recorded runs with behaviour logs (kanshi dataset record).")

    @Option(help: "Recordings: a directory of runs, each with a behaviour.jsonl (kanshi dataset record --out).")
    var dataset: String
    @Option(help: "Where to write the model (JSON).")
    var model: String
    @Option(help: "The probability a window needs to raise an alert.")
    var threshold: Float = 0.5
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if !(threshold > 0 && threshold < 1) { throw ValidationError("--threshold must be in (0, 1), got \(threshold)") }
    }

    func run() throws {
        let runs: [ProcessTraining.RecordedRun]
        do { runs = try ProcessTraining.load(dataset: dataset) } catch { throw CLIError("\(error)") }
        let (m, windows): (DetectorModel, Int)
        do { (m, windows) = try ProcessTraining.train(runs, threshold: threshold) } catch { throw CLIError("\(dataset): \(error)") }
        do { try m.save(to: model) } catch { throw CLIError("cannot write \(model): \(error)") }
        Output.line("trained a process model on \(runs.count) runs (\(runs.filter { $0.label == .ransomware }.count) ransomware), \(windows) windows; wrote \(model)")
    }
}

struct BehaviourCrossValidate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cross-validate",
        abstract: "Grouped cross-validation of process models: each run replayed through a live detector that never saw it.",
        discussion: """
            Runs are split into folds (ransomware and benign runs spread over every fold); each \
            fold's runs are replayed event by event through a process detector trained on the \
            others, looking every 200 ms of the log's time as the sandbox does. Reported: windows \
            (precision, recall, F1), ransomware runs whose workload was named, benign runs with \
            any alert, and the delay from the workload's first destroyed file to the alert.
            """)

    @Option(help: "Recordings: a directory of runs, each with a behaviour.jsonl.")
    var dataset: String
    @Option(help: "Number of folds.")
    var folds: Int = 3
    @Option(help: "Seed of the split.")
    var seed: UInt64 = 42
    @Option(help: "The probability a window needs to raise an alert.")
    var threshold: Float = 0.5
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if folds < 2 { throw ValidationError("--folds must be at least 2") }
        if !(threshold > 0 && threshold < 1) { throw ValidationError("--threshold must be in (0, 1), got \(threshold)") }
    }

    func run() throws {
        let runs: [ProcessTraining.RecordedRun]
        do { runs = try ProcessTraining.load(dataset: dataset) } catch { throw CLIError("\(error)") }
        let replays: [ProcessTraining.Replay]
        do { replays = try ProcessTraining.crossValidate(runs, folds: folds, seed: seed, threshold: threshold) } catch { throw CLIError("\(dataset): \(error)") }
        let s = ProcessValidationSummary(replays)
        if json {
            var o = s.json
            o["runs"] = replays.map { r -> [String: Any] in
                var x: [String: Any] = ["run": r.run, "label": r.label.rawValue, "alert": r.alert != nil, "namedTheWorkload": r.namedTheWorkload]
                if let a = r.alert {
                    x["blamed"] = a.argv; x["probability"] = Double(a.probability); x["destroyedBeforeAlert"] = a.destroyed
                    x["bytesWrittenBeforeAlert"] = a.bytesWritten
                }
                if let d = r.delaySeconds { x["delaySeconds"] = d }
                return x
            }
            Output.line(try Output.json(o))
            return
        }
        Output.line("\(folds)-fold grouped cross-validation of process models on \(runs.count) runs (threshold \(threshold)):")
        for r in replays {
            let what = r.alert.map { a in
                "ALERT on \(a.argv.prefix(3).joined(separator: " ")) (p=\(String(format: "%.2f", a.probability)), \(a.destroyed) files destroyed, \(Output.bytes(UInt64(max(0, a.bytesWritten)))) written\(r.delaySeconds.map { String(format: ", %.2f s after its first", $0) } ?? ""))"
            } ?? "no alert"
            Output.line("  \(r.label.rawValue.padding(toLength: 10, withPad: " ", startingAt: 0)) \(r.run): \(what)")
        }
        Output.line(s.text)
    }
}

/// The figures of a process-model cross-validation.
struct ProcessValidationSummary {
    var precision = 0.0, recall = 0.0, f1 = 0.0
    var ransomwareRuns = 0, named = 0, benignRuns = 0, benignFlagged = 0
    var delays: [Double] = []
    var destroyedBefore: [Int] = []
    var bytesBefore: [Int64] = []

    init(_ replays: [ProcessTraining.Replay]) {
        let tp = replays.reduce(0) { $0 + $1.truePositives }, pos = replays.reduce(0) { $0 + $1.positives }
        let fp = replays.reduce(0) { $0 + $1.falsePositives }
        precision = tp + fp == 0 ? 0 : Double(tp) / Double(tp + fp)
        recall = pos == 0 ? 0 : Double(tp) / Double(pos)
        f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall)
        for r in replays {
            if r.label == .ransomware {
                ransomwareRuns += 1
                if r.namedTheWorkload { named += 1 }
                if let d = r.delaySeconds { delays.append(d) }
                if r.namedTheWorkload, let a = r.alert { destroyedBefore.append(a.destroyed); bytesBefore.append(a.bytesWritten) }
            } else {
                benignRuns += 1
                if r.alert != nil { benignFlagged += 1 }
            }
        }
    }

    static func median<T: Comparable>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs.sorted()[xs.count / 2] }

    var json: [String: Any] {
        var o: [String: Any] = ["windowPrecision": precision, "windowRecall": recall, "windowF1": f1,
                                "ransomwareRuns": ransomwareRuns, "ransomwareNamed": named, "benignRuns": benignRuns, "benignFlagged": benignFlagged]
        if let m = Self.median(delays) { o["medianDelaySeconds"] = m; o["maxDelaySeconds"] = delays.max() ?? m }
        if let m = Self.median(destroyedBefore) { o["medianFilesDestroyedBeforeAlert"] = m }
        if let m = Self.median(bytesBefore) { o["medianBytesWrittenBeforeAlert"] = m; o["maxBytesWrittenBeforeAlert"] = bytesBefore.max() ?? m }
        return o
    }

    var text: String {
        String(format: "windows: precision %.3f, recall %.3f, F1 %.3f; ", precision, recall, f1)
            + "ransomware runs with the workload named: \(named)/\(ransomwareRuns); benign runs with an alert: \(benignFlagged)/\(benignRuns)"
            + (Self.median(delays).map { String(format: "; delay after the first destroyed file: median %.2f s, max %.2f s", $0, delays.max() ?? $0) } ?? "")
            + (Self.median(destroyedBefore).map { "; files destroyed before the alert: median \($0)" } ?? "")
            + (Self.median(bytesBefore).map { "; written before it: median \(Output.bytes(UInt64($0))), max \(Output.bytes(UInt64(bytesBefore.max() ?? $0)))" } ?? "")
    }
}

struct BehaviourDetect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect",
        abstract: "Replay a behaviour log through a process model: which process tree did ransomware-like damage, and when.",
        discussion: """
            Reads LOG (the VM sensor's or kanshi trace's JSON lines) as a live detector would, \
            looking every 200 ms of the log's time; with --journal, the disk's writes of the run too \
            (the disk-level columns). Exit status 3 when a tree is named, 0 when none; then the tree \
            that came closest is named with its highest probability (a live detector, which looks at \
            its own instants, may have caught a window crossing the threshold between two of these looks).
            """)

    @Option(help: "The behaviour log (JSON lines).")
    var log: String
    @Option(help: "The process model (kanshi behaviour train; default: models/process-detector.json of the checkout).")
    var model: String?
    @Option(help: "Only files under this directory count (the data disk's mount point in the sandbox's guest; / for a host log).")
    var under: String = ProcessTraining.guestPrefix
    @Option(help: "The run's journal (kanshi sandbox run's DISK.journal): the disk's writes for the disk-level columns, as the live detector had them (without it they are 0).")
    var journal: String?
    @Flag(help: "Print JSON.")
    var json = false
    @OptionGroup var global: GlobalOptions

    func run() throws {
        let path = try model ?? ShippedModels.path(ShippedModels.process)
        let m: DetectorModel
        do { m = try DetectorModel.load(from: path, for: .processes) } catch { throw CLIError("\(error)") }
        var events: [TraceEvent] = []
        do { try BehaviourLogReader.read(path: log) { events.append($0) } } catch { throw CLIError("\(error)") }
        var writes: [Access] = []
        if let journal {
            do { writes = try BlockTrace.fromJournal(journal).writes } catch { throw CLIError("\(journal): \(error)") }
        }
        let run = ProcessTraining.RecordedRun(name: log, label: .benign, events: events, workload: "", diskWrites: writes)
        let replay: ProcessTraining.Replay
        do { replay = try ProcessTraining.replay(run, model: m, under: under) } catch { throw CLIError("\(log): \(error)") }
        if json {
            var o: [String: Any] = ["log": log, "events": events.count, "alert": replay.alert != nil, "threshold": Double(replay.threshold)]
            if let h = replay.highest { o["highest"] = ["root": h.root, "argv": h.argv, "probability": Double(h.probability)] as [String: Any] }
            if let a = replay.alert {
                o["root"] = a.root; o["argv"] = a.argv; o["probability"] = Double(a.probability); o["destroyed"] = a.destroyed
                o["at"] = Output.time(a.atNs); o["atNs"] = a.atNs
                if let f = a.firstDestroyNs { o["firstDestroyed"] = Output.time(f); o["delaySeconds"] = Double(a.atNs &- f) / 1e9 }
            }
            Output.line(try Output.json(o))
        } else if let a = replay.alert {
            Output.line("ALERT: pid \(a.root) (\(a.argv.joined(separator: " "))) at \(Output.time(a.atNs)), p=\(String(format: "%.2f", a.probability)): \(a.destroyed) files that were there before it destroyed\(a.firstDestroyNs.map { String(format: ", the first %.2f s earlier", Double(a.atNs &- $0) / 1e9) } ?? "")")
        } else {
            let closest = replay.highest.map {
                "; closest: pid \($0.root) (\($0.argv.joined(separator: " "))) at p=\(String(format: "%.2f", $0.probability)), the threshold \(String(format: "%.2f", replay.threshold))"
            } ?? ""
            Output.line("no process tree looks like ransomware in \(log) (\(events.count) events)\(closest)")
        }
        if replay.alert != nil { throw ExitCode(3) }
    }
}
