import ArgumentParser
import Foundation
import KanshiWorkload

struct CorpusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corpus",
        abstract: "Build and check a victim corpus for the workloads.",
        discussion: """
            A corpus is a folder tree of realistic user files generated from a seed (documents, \
            office files, PNG/BMP/PPM pictures, zip and gzip archives, source trees, database-like \
            files; sizes from hundreds of bytes to several MiB). The same seed and size give \
            byte-identical files. `build` writes a marker (.kanshi-corpus) that workloads require, \
            and a manifest (.kanshi-manifest) of every file's size and SHA-256 that `verify` checks.
            """,
        subcommands: [CorpusBuild.self, CorpusVerify.self])
}

struct CorpusBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Generate a corpus into an empty or new directory.")

    @Option(help: "Directory to fill (created if missing; must be empty).")
    var dir: String

    @Option(help: "Seed: the same seed and size give the same files.")
    var seed: UInt64 = 1

    @Option(name: .customLong("size-mib"), help: "About how many MiB to generate.")
    var sizeMiB: Int = 64

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if sizeMiB < 1 || sizeMiB > 65536 { throw ValidationError("--size-mib must be between 1 and 65536") }
    }

    func run() throws {
        let summary: CorpusSummary
        do { summary = try CorpusBuilder(seed: seed, sizeMiB: sizeMiB).build(into: dir) } catch { throw CLIError("\(error)") }
        func groups(_ g: [CorpusSummary.Group]) -> [[String: Any]] {
            g.map { ["name": $0.name, "files": $0.files, "bytes": $0.bytes] }
        }
        if json {
            Output.line(try Output.json([
                "directory": summary.directory, "seed": summary.seed, "files": summary.files, "bytes": summary.bytes,
                "directories": summary.directories, "largestFile": summary.largestFile, "smallestFile": summary.smallestFile,
                "byCategory": groups(summary.byCategory), "byKind": groups(summary.byKind),
            ] as [String: Any]))
            return
        }
        Output.line("corpus \(summary.directory): \(summary.files) files, \(Output.bytes(summary.bytes)) in \(summary.directories) folders (seed \(summary.seed); files \(Output.bytes(summary.smallestFile)) to \(Output.bytes(summary.largestFile)))")
        for g in summary.byCategory {
            let kinds = summary.byKind.filter { k in CorpusFileKind(rawValue: k.name)?.category == g.name }
                .map { "\($0.name) \($0.files)" }.joined(separator: ", ")
            Output.line("  \(g.name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(g.files).leftPad(5)) files \(Output.bytes(g.bytes).leftPad(10))  (\(kinds))")
        }
    }
}

struct CorpusVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Compare a corpus with its manifest; exit status 0 only if every file is intact.")

    @Option(help: "Corpus directory.")
    var dir: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Option(help: "List at most this many paths of each kind (modified, missing, extra) in text output.")
    var show: Int = 10

    func run() throws {
        let r: VerifyReport
        do {
            let d = try CorpusDirectory(path: dir, requireMarker: true)
            r = try VerifyReport.check(d)
        } catch { throw CLIError("\(error)") }
        if json {
            Output.line(try Output.json([
                "directory": dir, "intact": r.intact.count, "modified": r.modified, "missing": r.missing, "extra": r.extra,
                "counts": ["intact": r.intact.count, "modified": r.modified.count, "missing": r.missing.count, "extra": r.extra.count],
                "files": r.intact.count + r.modified.count + r.missing.count,
                "bytesLost": r.bytesLost, "bytesTotal": r.bytesTotal, "allIntact": r.allIntact,
            ] as [String: Any]))
        } else {
            let total = r.intact.count + r.modified.count + r.missing.count
            Output.line("\(dir): \(r.intact.count) of \(total) files intact, \(r.modified.count) modified, \(r.missing.count) missing, \(r.extra.count) extra; \(Output.bytes(r.bytesLost)) of \(Output.bytes(r.bytesTotal)) lost")
            for (label, paths) in [("modified", r.modified), ("missing", r.missing), ("extra", r.extra)] where !paths.isEmpty {
                for p in paths.prefix(show) { Output.line("  \(label) \(p)") }
                if paths.count > show { Output.line("  ... \(paths.count - show) more \(label)") }
            }
        }
        if !r.allIntact { throw ExitCode(1) }
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
