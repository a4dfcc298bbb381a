import ArgumentParser
import Foundation
import KanshiWorkload

struct WorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload",
        abstract: "Run a simulated ransomware or a benign look-alike on a corpus.",
        discussion: """
            Runs only on a directory built by `kanshi corpus build` (it holds .kanshi-corpus), and \
            touches nothing outside it: symbolic links are never followed, files with other hard \
            links and other file systems are skipped, and the directory may not be `/` or a link. \
            Choices (files, edits) follow --seed; encryption keys are random and thrown away. \
            Everything written is fsynced at the end. `kanshi workload list` shows the workloads.
            """)

    @Argument(help: "Workload to run, or `list`.")
    var name: String?

    @Flag(help: "List the workloads.")
    var list = false

    @Option(help: "Corpus directory.")
    var dir: String?

    @Option(help: "Seed for every choice the workload makes.")
    var seed: UInt64 = 1

    @Option(help: "Touch at most this many files.")
    var maxFiles: Int?

    @Option(name: .customLong("rate-mib"), help: "slow: MiB per second to stay under.")
    var rateMiB: Double = 1

    @Option(name: .customLong("partial-kib"), help: "partial: KiB to encrypt at the start of each file.")
    var partialKiB: Int = 4

    @Option(help: "secure-delete, edit: how many files (default 3 and 5).")
    var count: Int?

    @Option(help: "encrypt-one: file to encrypt; copy-tree: folder to copy (relative to --dir).")
    var target: String?

    @Option(help: "encrypt-one: password.")
    var password: String = "correct horse battery staple"

    @Option(name: .customLong("db-mib"), help: "database: size of the database file in MiB.")
    var dbMiB: Int = 32

    @Option(help: "database: number of transactions.")
    var transactions: Int = 300

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if list || name == "list" { return }
        guard let name else { throw ValidationError("give a workload NAME (see `kanshi workload list`)") }
        if Workloads.info(name) == nil { throw ValidationError("no workload named \(name); `kanshi workload list` shows them") }
        if dir == nil { throw ValidationError("give the corpus with --dir DIR") }
        if rateMiB <= 0 { throw ValidationError("--rate-mib must be positive") }
        if partialKiB < 1 { throw ValidationError("--partial-kib must be at least 1") }
        if dbMiB < 1 { throw ValidationError("--db-mib must be at least 1") }
        if let maxFiles, maxFiles < 0 { throw ValidationError("--max-files must not be negative") }
        if let count, count < 0 { throw ValidationError("--count must not be negative") }
    }

    func run() throws {
        if list || name == "list" {
            if json {
                Output.line(try Output.json(Workloads.all.map { ["name": $0.name, "class": $0.workloadClass.rawValue, "description": $0.summary] }))
            } else {
                // Names in a column as wide as the longest one (scripts take the first word).
                let width = Workloads.all.map(\.name.count).max() ?? 0
                for w in Workloads.all {
                    Output.line("\(w.name.padding(toLength: max(14, width), withPad: " ", startingAt: 0)) \(w.workloadClass.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(w.summary)")
                }
            }
            return
        }
        guard let name, let dir else { return }
        var o = WorkloadOptions()
        o.seed = seed
        o.maxFiles = maxFiles
        o.rateMiB = rateMiB
        o.partialKiB = partialKiB
        o.count = count
        o.target = target
        o.password = password
        o.databaseMiB = dbMiB
        o.transactions = transactions
        let r: WorkloadReport
        do { r = try Workloads.run(name, directory: dir, options: o) } catch { throw CLIError("\(error)") }
        if json {
            Output.line(try Output.json([
                "workload": r.name, "class": r.workloadClass.rawValue, "directory": r.directory, "seed": r.seed,
                "filesRead": r.filesRead, "filesWritten": r.filesWritten, "filesDeleted": r.filesDeleted,
                "filesRenamed": r.filesRenamed, "bytesRead": r.bytesRead, "bytesWritten": r.bytesWritten,
                "seconds": r.seconds, "outputs": r.outputs,
            ] as [String: Any]))
        } else {
            Output.line("\(r.name) (\(r.workloadClass.rawValue)) on \(r.directory): read \(r.filesRead) files, wrote \(r.filesWritten), deleted \(r.filesDeleted), renamed \(r.filesRenamed); \(Output.bytes(r.bytesWritten)) written in \(String(format: "%.2f", r.seconds)) s\(r.outputs.isEmpty ? "" : "; output: " + r.outputs.prefix(3).joined(separator: ", "))")
        }
    }
}
