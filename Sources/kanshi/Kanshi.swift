import ArgumentParser

@main
struct Kanshi: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kanshi",
        abstract: "Live forensics: record what a workload does to its disk, in a tamper-evident journal.",
        discussion: """
            Kanshi watches a workload from below or beside its operating system. \
            `kanshi demo` shows the main job: ransomware in a QEMU guest whose disk goes \
            through Kanshi (`kanshi sandbox`), caught live and rolled back. `kanshi disk serve` \
            serves a disk image over NBD and journals every block read and written; \
            `kanshi disk mount` does the same for a file system on the host; `kanshi disk \
            restore | rollback | diff` and `kanshi search` travel the journal's past; \
            `kanshi journal` inspects, verifies and exports journals; `kanshi train | evaluate | \
            cross-validate | detect` build and judge ransomware detectors; `kanshi trace` \
            watches a program's system calls and keeps confidential data from leaving.
            """,
        subcommands: [Demo.self, SandboxCommand.self, Disk.self, Journal.self, Search.self, Train.self, Evaluate.self, CrossValidate.self, Detect.self, BehaviourCommand.self, Trace.self, RulesCommand.self, ServerCommand.self, FleetCommand.self,
                      CorpusCommand.self, WorkloadCommand.self, DatasetCommand.self, Bench.self])
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
}
