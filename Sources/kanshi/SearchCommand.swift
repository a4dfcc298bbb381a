import ArgumentParser
import Foundation
import KanshiHistory
import KanshiSystem

struct Search: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find where and when the pieces of files were written to a journaled disk.",
        discussion: """
            Every 512-byte sector and 4 KiB block the journal holds (written data, and the \
            earlier content of changed blocks) is indexed by its XXH3 hash, skipping \
            non-probative data (one repeated byte, zeros among them, or a short repeated \
            pattern). For each FILE, prints which of its 4 KiB pieces were written, when and \
            at which LBAs (512-byte sectors), the share of its probative sectors found \
            (coverage), and the periods when a complete copy was on the disk. Content already \
            on the disk before recording began counts only for blocks the journal changed \
            (their earlier content is kept). The index is saved beside the segments \
            (index-hashes.kix) and brought up to date on each run.
            """)

    @Option(help: "Journal directory.")
    var journal: String

    @OptionGroup var search: SearchFileOptions
    var files: [String] { search.files }
    var maxOccurrences: Int { search.maxOccurrences }
    var json: Bool { search.json }

    func run() throws {
        try search.checkFiles()
        let index: SectorHashIndex
        do {
            let versions = try VersionIndex(journal: journal)
            index = try SectorHashIndex(versions: versions, maxOccurrences: maxOccurrences) { done, total in
                if isatty(2) != 0 { Output.error("kanshi: hashing journaled blocks: \(done)/\(total)") }
            }
        } catch {
            throw CLIError("\(error)")  // names the journal
        }
        var reports: [[String: Any]] = []
        for f in files {
            let r: FileSearchResult
            do { r = try index.search(file: f) } catch { throw CLIError("\(error)") }
            if json { reports.append(Self.jsonReport(r)) } else { Self.printText(r) }
        }
        if json { Output.line(try Output.json(["journal": journal, "files": reports] as [String: Any])) }
    }

    static func jsonReport(_ r: FileSearchResult) -> [String: Any] {
        func occ(_ o: FileSearchResult.Occurrence) -> [String: Any] {
            var d: [String: Any] = ["lba": o.lba, "seq": o.sequence, "written": o.timeNs == 0 ? "before recording" : Output.time(o.timeNs)]
            d["writtenNs"] = o.timeNs
            if let g = o.goneNs { d["overwritten"] = Output.time(g); d["overwrittenNs"] = g }
            return d
        }
        return [
            "file": r.path, "size": r.size, "coverage": r.coverage, "probativeSectors": r.probativeSectors,
            "foundSectors": r.foundSectors, "commonSectors": r.commonSectors,
            "completeCopies": r.completeCopies.map { c -> [String: Any] in
                var d: [String: Any] = ["fromNs": c.from, "from": c.from == 0 ? "before recording" : Output.time(c.from)]
                if let t = c.to { d["toNs"] = t; d["to"] = Output.time(t) } else { d["to"] = "still on the disk" }
                return d
            },
            "blocks": r.blocks.map { b -> [String: Any] in
                ["offset": b.fileOffset, "bytes": b.bytes, "probativeSectors": b.probativeSectors, "foundSectors": b.foundSectors,
                 "wholeBlock": b.wholeBlock.map(occ), "firstSector": b.sectors.first.map { $0.map(occ) } ?? []]
            },
        ]
    }

    static func printText(_ r: FileSearchResult) {
        Output.line("\(r.path): \(Output.bytes(r.size)), coverage \(String(format: "%.1f", r.coverage * 100))% (\(r.foundSectors) of \(r.probativeSectors) probative sectors found\(r.commonSectors > 0 ? ", \(r.commonSectors) too common" : ""))")
        if r.completeCopies.isEmpty {
            Output.line("  no complete copy was ever on the disk at once")
        }
        for c in r.completeCopies {
            Output.line("  complete copy on the disk from \(c.from == 0 ? "before recording" : Output.time(c.from)) to \(c.to.map { Output.time($0) } ?? "now")")
        }
        // Runs of pieces written as whole blocks at consecutive LBAs.
        var k = 0
        while k < r.blocks.count {
            let b = r.blocks[k]
            guard let first = b.wholeBlock.min(by: { $0.timeNs < $1.timeNs }) else {
                if b.probativeSectors > 0 {
                    Output.line("  bytes \(b.fileOffset)-\(b.fileOffset + UInt64(b.bytes) - 1): \(b.foundSectors)/\(b.probativeSectors) sectors found\(b.foundSectors > 0 ? " (not as one block)" : "")")
                }
                k += 1
                continue
            }
            var m = k + 1
            while m < r.blocks.count, r.blocks[m].wholeBlock.contains(where: { $0.lba == first.lba + UInt64(m - k) * 8 }) { m += 1 }
            let end = r.blocks[m - 1].fileOffset + UInt64(r.blocks[m - 1].bytes) - 1
            let others = b.wholeBlock.count - 1
            let gone = (k..<m).filter { i in r.blocks[i].wholeBlock.first(where: { $0.lba == first.lba + UInt64(i - k) * 8 })?.goneNs != nil }.count
            Output.line("  bytes \(b.fileOffset)-\(end): LBA \(first.lba)-\(first.lba + UInt64(m - k) * 8 - 1), written \(first.timeNs == 0 ? "before recording" : Output.time(first.timeNs))\(gone > 0 ? ", \(gone) of \(m - k) blocks since overwritten" : "")\(others > 0 ? " (+\(others) more copies)" : "")")
            k = m
        }
    }
}

/// What `kanshi search` and `kanshi fleet search` both take: the files, when a hash is too common, JSON.
struct SearchFileOptions: ParsableArguments {
    @Argument(help: "Files to look for.")
    var files: [String]

    @Option(help: "Sector hashes found more often than this in one journal (one recording) are too common to tell where they came from.")
    var maxOccurrences: Int = 256

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if files.isEmpty { throw ValidationError("give at least one FILE to look for") }
        if maxOccurrences < 1 { throw ValidationError("--max-occurrences must be at least 1") }
    }

    /// Refuses files that are missing or directories, naming them.
    func checkFiles() throws {
        for f in files {
            if !FileSystem.exists(f) { throw CLIError("\(f): no such file") }
            if FileSystem.isDirectory(f) { throw CLIError("\(f): is a directory; give the files to look for") }
        }
    }
}
