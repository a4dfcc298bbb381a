import ArgumentParser
import Foundation
import KanshiFleet
import KanshiHistory
import KanshiSystem

struct FleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Search every host's journals, or compute their detector features, on Spark.",
        discussion: """
            The fleet's data is Parquet: what `kanshi server` writes under DATA/fleet as \
            recordings arrive, or what `kanshi journal export --parquet DIR` writes for one \
            journal (block records and the sector hashes `kanshi search` uses, partitioned by \
            host and day). The jobs run on Spark through PySpark: --spark local[N] on this \
            machine with N cores, spark://HOST:PORT on a cluster (every worker needs the same \
            Python with pyspark and pyarrow, and DATA at the same path). They only read the \
            store. Needs Java (Debian: openjdk-17-jre-headless) and pyspark and pyarrow \
            (scripts/setup.sh puts them in .build/python).

              kanshi fleet search --spark 'local[2]' --data srv leaked.pdf
              kanshi fleet features --spark 'local[2]' --data srv --features context --out windows.parquet
            """,
        subcommands: [FleetSearchCommand.self, FleetFeaturesCommand.self])
}

/// Options every fleet job takes.
struct FleetOptions: ParsableArguments {
    @Option(help: "Spark master: local, local[N], local[*] or spark://HOST:PORT.")
    var spark = "local[2]"

    @Option(help: "A server's data directory (its fleet/ tables) or a directory holding blocks/ and hashes/.")
    var data: String

    @Option(name: .customLong("host"), help: "Only this host (repeat for more; default: every host).")
    var hosts: [String] = []

    @Option(help: "The Python with pyspark and pyarrow (default: KANSHI_PYTHON, then .build/python beside kanshi, then python3).")
    var python: String?

    func job() throws -> (FleetStore, FleetJob) {
        do {
            return (try FleetStore(data: data), try FleetJob(master: spark, python: try FleetPython(python)))
        } catch { throw CLIError("\(error)") }
    }
}

struct FleetSearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Find where and when the pieces of files were written on every host's disks.",
        discussion: """
            Each FILE's 512-byte sectors and 4 KiB pieces are hashed as `kanshi search` hashes \
            them and broadcast-joined against the hashes of every recording in the store. For \
            every recording that held any piece: the coverage, the periods when a complete copy \
            was on that disk, and where and when each piece was written (and overwritten) — the \
            answer `kanshi search --journal` gives on that recording's journal. --json prints \
            the same fields as `kanshi search --json`, per host and recording.
            """)

    @OptionGroup var fleet: FleetOptions

    @OptionGroup var search: SearchFileOptions
    var files: [String] { search.files }
    var json: Bool { search.json }

    func run() throws {
        try search.checkFiles()
        let (store, spark) = try fleet.job()
        var job = FleetSearch(store: store, job: spark)
        job.hosts = fleet.hosts
        job.maxOccurrences = search.maxOccurrences
        if isatty(2) != 0 { Output.error("kanshi: searching \(store.root) on Spark (\(fleet.spark))…") }
        let report: FleetSearch.Report
        do { report = try job.run(files: files) } catch { throw CLIError("\(error)") }
        if json {
            let recordings = report.recordings.map { r -> [String: Any] in
                ["host": r.host, "recording": r.recording, "files": r.files.map(Search.jsonReport)]
            }
            Output.line(try Output.json(["store": store.root, "spark": fleet.spark, "hosts": report.hosts, "recordings": recordings,
                                         "seconds": report.seconds] as [String: Any]))
            return
        }
        Output.line("searched \(report.hosts.count) host\(report.hosts.count == 1 ? "" : "s") in \(store.root) on \(fleet.spark) in \(String(format: "%.1f", report.seconds)) s")
        for (i, f) in files.enumerated() {
            let held = report.recordings.filter { $0.files[i].foundSectors > 0 || $0.files[i].blocks.contains { !$0.wholeBlock.isEmpty } }
            Output.line("")
            Output.line("\(f): \(held.isEmpty ? "not found on any host" : "found in \(held.count) recording\(held.count == 1 ? "" : "s") on \(Set(held.map(\.host)).count) host\(Set(held.map(\.host)).count == 1 ? "" : "s")")")
            for r in held {
                Output.line("== host \(r.host), recording \(r.recording)")
                Search.printText(r.files[i])
            }
        }
    }
}
