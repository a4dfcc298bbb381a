import ArgumentParser
import Foundation
import KanshiFleet

struct BenchFleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Fleet analysis: Parquet export throughput and file search on Spark vs kanshi search, side by side.",
        discussion: """
            Makes a synthetic fleet in DIR (kept for later runs): one journal per host, each a \
            replay of a recording's block requests (--template JOURNAL, or a built-in file-server \
            pattern) with the host's own seed, so every host's data differs; a random file \
            (--file-mib) planted on every --plant-every-th host, a quarter of it overwritten \
            later. Then, per round: the export of every journal to Parquet (MB of journal per \
            second, wall and per CPU-second of kanshi and its pyarrow writer); kanshi search's \
            own indexes of every journal, and its search for the file journal by journal; the \
            same search with `kanshi fleet search` on each --spark master. Medians over rounds; \
            the fleet's answer is checked against kanshi search's on every host. The research \
            system's published single-node figure (a hash index of 2.4 GB in 78 s, about \
            31 MB/s) is quoted for reference, not measured here.
            """)

    @Option(help: "Directory for the fleet (journals, Parquet store).")
    var dir: String

    @Option(help: "Hosts in the fleet.")
    var hosts = 16

    @Option(help: "MiB of written data per host's journal.")
    var mibPerHost = 256

    @Option(help: "Size of the planted file, MiB.")
    var fileMib = 10

    @Option(help: "Plant the file on every Nth host (from the second).")
    var plantEvery = 5

    @Option(help: "A journal whose block requests are replayed (default: a built-in file-server pattern).")
    var template: String?

    @Option(help: "Spark masters to search with, comma-separated.")
    var spark = "local[1],local[2]"

    @Option(help: "Rounds (medians are reported).")
    var rounds = 3

    @Option(help: "The Python with pyspark and pyarrow.")
    var python: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if hosts < 1 { throw ValidationError("--hosts must be at least 1") }
        if mibPerHost < 1 { throw ValidationError("--mib-per-host must be at least 1") }
        if fileMib < 1 { throw ValidationError("--file-mib must be at least 1") }
        if plantEvery < 1 { throw ValidationError("--plant-every must be at least 1") }
        if rounds < 1 { throw ValidationError("--rounds must be at least 1") }
    }

    func run() throws {
        var o = FleetBench.Options(directory: dir, python: try wrap { try FleetPython(python) })
        o.hosts = hosts; o.mibPerHost = mibPerHost; o.fileMiB = fileMib; o.plantEvery = plantEvery; o.template = template
        o.masters = spark.split(separator: ",").map(String.init); o.rounds = rounds
        for m in o.masters { _ = try wrap { try FleetJob(master: m, python: o.python) } }
        let r = try wrap { try FleetBench.run(o) { Output.error("bench: \($0)") } }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
        let mb = Double(r.journalBytes) / 1e6
        let export = median(r.exportSeconds), exportCPU = median(r.exportCPUSeconds)
        let index = median(r.indexSeconds), local = median(r.localSearchSeconds)
        let fleet = o.masters.map { ($0, median(r.fleetSearchSeconds[$0] ?? [])) }
        let scaling = fleet.count >= 2 && fleet[1].1 > 0 ? fleet[0].1 / fleet[1].1 : nil
        if json {
            var d: [String: Any] = [
                "hosts": r.hosts, "journalBytes": r.journalBytes, "records": r.records, "hashes": r.hashes, "plantedHosts": r.plantedHosts,
                "rounds": rounds, "fileMiB": fileMib,
                "exportSeconds": r.exportSeconds, "exportCPUSeconds": r.exportCPUSeconds,
                "exportMBps": mb / export, "exportMBpsPerCPUSecond": mb / exportCPU,
                "kanshiSearchIndexSeconds": r.indexSeconds, "kanshiSearchIndexMBps": mb / index,
                "kanshiSearchSeconds": r.localSearchSeconds,
                "fleetSearchSeconds": r.fleetSearchSeconds, "sameAnswers": r.sameAnswers, "differences": r.differences,
                "quotedResearchIndexMBps": 31.0,
            ]
            if let scaling { d["searchScaling"] = scaling }
            Output.line(try Output.json(d))
            return
        }
        Output.line(String(format: "fleet: %d hosts, %.0f MB of journals, %d block records, %d sector hashes; the %d MiB file planted on %@",
                           r.hosts, mb, r.records, r.hashes, fileMib, r.plantedHosts.joined(separator: ", ")))
        Output.line(String(format: "medians of %d rounds:", rounds))
        Output.line(String(format: "  export to Parquet (kanshi + pyarrow)    %7.1f s  %7.1f MB/s  (%.1f MB per CPU-second)", export, mb / export, mb / exportCPU))
        Output.line(String(format: "  kanshi search's index, one machine    %7.1f s  %7.1f MB/s", index, mb / index))
        Output.line(              "  research system's hash index (quoted, not measured here): 2.4 GB in 78 s, about 31 MB/s")
        for (m, s) in fleet { Output.line(String(format: "  fleet search, %-10@                 %7.1f s", m, s)) }
        Output.line(String(format: "  kanshi search, journal by journal     %7.2f s (indexes built; %.1f s with building them)", local, local + index))
        if let scaling { Output.line(String(format: "  scaling %@ → %@: %.2fx", fleet[0].0, fleet[1].0, scaling)) }
        Output.line("  the fleet's answer equals kanshi search's on every host: \(r.sameAnswers ? "yes" : "NO: " + r.differences.joined(separator: "; "))")
        if !r.sameAnswers { throw ExitCode(1) }
    }

    private func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw CLIError("\(error)") }
    }
}
