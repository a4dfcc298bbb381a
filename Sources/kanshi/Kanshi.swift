import ArgumentParser

@main
struct Kanshi: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kanshi",
        abstract: "Live forensics: record what a workload does to its disk, in a tamper-evident journal.",
        discussion: """
            Kanshi watches a workload from below its operating system. `kanshi disk serve` \
            serves a disk image over NBD (to QEMU, qemu-io, nbdcopy, fio, ...) and journals \
            every block read and written; `kanshi disk mount` mounts an image's file system \
            on the host through the same journal; `kanshi journal` inspects, verifies and exports \
            such journals; `kanshi train`, `evaluate` and `cross-validate` build and judge \
            ransomware detectors on such recordings and on the RanSAP dataset.
            """,
        subcommands: [Demo.self, SandboxCommand.self, Disk.self, Journal.self, Search.self, Train.self, Evaluate.self, CrossValidate.self, Detect.self, Trace.self,
                      CorpusCommand.self, WorkloadCommand.self, DatasetCommand.self, Bench.self])
}

struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"
}
