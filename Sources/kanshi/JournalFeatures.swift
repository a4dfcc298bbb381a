import ArgumentParser
import Foundation
import KanshiAnalysis

/// The window and the feature set of block features (`journal features`, `fleet features`).
struct WindowFeatureOptions: ParsableArguments {
    static let maxWindowMs = 60_000

    @Option(help: "Window length in milliseconds (1 to 60000).")
    var windowMs: Int = 100

    @Option(help: "Feature set: published (the five of the paper), extended (ours added), structural (extended without entropy) or context (extended with 5 s and 30 s averages).")
    var features: FeatureSet = .extended

    var windowNs: UInt64 { UInt64(windowMs) * 1_000_000 }
    var names: [String] { WindowFeatures.names(features) }

    func validate() throws {
        if windowMs < 1 || windowMs > Self.maxWindowMs { throw ValidationError("--window-ms \(windowMs): give 1 to \(Self.maxWindowMs) ms") }
        if features == .process {
            throw ValidationError("--features process: those come from behaviour logs, not blocks; use kanshi behaviour train | cross-validate | detect")
        }
    }
}

struct JournalFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "The detectors' block features per window of a journal.",
        discussion: """
            The windows the detectors see (kanshi detect, the live detector): one access per \
            4 KiB piece of every read and write, windows from the first access, a row for each \
            window with any I/O. CSV with a header (window_start_ns, written_bytes, then the \
            features), or --json: {journal, windowMs, features, rows: [{windowStartNs, \
            writtenBytes, values}]}. `kanshi fleet features` gives the same rows for every \
            recording of the fleet.
            """)

    @Argument(help: "Journal directory.")
    var journal: String

    @OptionGroup var window: WindowFeatureOptions

    @Flag(help: "Print JSON instead of CSV.")
    var json = false

    func run() throws {
        let t: FeatureTable
        do { t = WindowFeatures.compute(try BlockTrace.fromJournal(journal), windowNs: window.windowNs, names: window.names) } catch {
            throw CLIError("journal features: \(error)")
        }
        if json {
            Output.line(try Output.json(["journal": journal, "windowMs": window.windowMs, "features": t.names,
                                         "rows": FeatureRows.json(t)] as [String: Any]))
            return
        }
        Output.line((["window_start_ns", "written_bytes"] + t.names).joined(separator: ","))
        for r in 0..<t.rows { Output.line((["\(t.windowStart[r])", "\(t.writtenBytes[r])"] + t.row(r).map { "\($0)" }).joined(separator: ",")) }
    }
}

/// Feature rows as `--json` prints them.
enum FeatureRows {
    /// [{windowStartNs, writtenBytes, values}]; each float32 value as the double it
    /// equals, so reading it back as a double and rounding to float32 gives it again.
    static func json(_ t: FeatureTable) -> [[String: Any]] {
        (0..<t.rows).map { r in
            ["windowStartNs": t.windowStart[r], "writtenBytes": t.writtenBytes[r], "values": t.row(r).map { Double($0) }]
        }
    }
}
