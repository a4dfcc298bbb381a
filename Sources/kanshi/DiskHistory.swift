import ArgumentParser
import Foundation
import KanshiBlock
import KanshiHistory
import KanshiJournal
import KanshiSystem

/// Options shared by the time-travel commands.
struct HistoryOptions: ParsableArguments {
    @Option(help: "Journal directory of the disk.")
    var journal: String

    @Option(help: "The disk's current image (default: the image named when the journal was last served).")
    var image: String?

    /// Opens the index (bringing it up to date) and finds the image.
    func open() throws -> (VersionIndex, String) { try Self.open(journal: journal, image: image) }

    static func open(journal: String, image: String?) throws -> (VersionIndex, String) {
        let index: VersionIndex
        do {
            index = try VersionIndex(journal: journal) { n in
                if isatty(2) != 0 { Output.error("kanshi: indexing the journal: \(n) records") }
            }
        } catch {
            throw CLIError("\(error)")  // names the journal
        }
        guard let path = image ?? index.imagePath else {
            throw CLIError("\(journal): the journal does not name its image; give --image PATH")
        }
        guard FileSystem.exists(path) else {
            throw CLIError("\(path): no such image\(image == nil ? " (named by the journal; give --image PATH if it moved)" : "")")
        }
        return (index, path)
    }
}

func parseTime(_ text: String, option: String) throws -> TimePoint {
    do { return try TimePoint(parsing: text) } catch { throw ValidationError("\(option): \(error)") }
}

struct DiskRestore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Write the disk image as it was at a past moment.",
        discussion: """
            TIME is RFC 3339 (2026-11-22T05:30:00.25Z, or with an offset like +09:00), \
            nanoseconds since the epoch, or a record sequence number (seq:1234, or a plain \
            number below 10^15). Every record at or before TIME counts. Only the blocks \
            changed after TIME are read from the journal (through its block -> versions \
            index); the rest is copied from the current image.
            """)

    @OptionGroup var history: HistoryOptions

    @Option(help: "The moment to restore (see above).")
    var at: String

    @Option(name: .shortAndLong, help: "Output image (created or replaced).")
    var output: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let point = try parseTime(at, option: "--at")
        let (index, imagePath) = try history.open()
        guard FileSystem.absolutePath(output) != FileSystem.absolutePath(imagePath) else {
            throw CLIError("\(output): that is the disk's own image; use `kanshi disk rollback` to revert it in place")
        }
        let started = FileSystem.monotonicNs()
        let past: PastImage
        let report: RestoreReport
        do {
            past = try PastImage(index: index, at: point, imagePath: imagePath)
            var shown = -1
            report = try Restore.write(past, to: output) { done, total in
                let pct = Int(done * 100 / max(total, 1))
                if isatty(2) != 0 && pct / 10 != shown / 10 { shown = pct; Output.error("kanshi: restoring: \(pct)%") }
            }
        } catch {
            throw CLIError("restore failed: \(error)")
        }
        let seconds = Double(FileSystem.monotonicNs() - started) / 1e9
        if json {
            Output.line(try Output.json([
                "output": output, "at": point.description, "size": report.size,
                "blocksFromJournal": report.blocksFromJournal, "blocksUnknown": report.blocksUnknown,
                "versionsIndexed": index.versions.count, "seconds": seconds,
            ] as [String: Any]))
        } else {
            Output.line("restored \(output) as of \(point): \(Output.bytes(report.size)), \(report.blocksFromJournal) blocks from the journal, in \(String(format: "%.2f", seconds)) s")
        }
        if report.blocksUnknown > 0 {
            Output.error("kanshi: warning: \(report.blocksUnknown) blocks changed after \(point) have no earlier copy in the journal (it predates base records); they keep today's content")
        }
    }
}

struct DiskRollback: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Revert a disk image in place to how it was at a past moment.",
        discussion: """
            The server must be stopped (the journal's lock says so otherwise). Every block \
            changed after TIME is rewritten with its content then; the rewrites are \
            journaled between rollback-start and rollback-end notes, so the rollback itself \
            can be undone: the command prints the moment to roll back to for that.
            """)

    @OptionGroup var history: HistoryOptions

    @Option(help: "The moment to go back to (RFC 3339, ns since the epoch, or seq:N).")
    var to: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let point = try parseTime(to, option: "--to")
        let logger = try CLILogging.logger(label: "kanshi.rollback", level: global.logLevel)
        let (_, imagePath) = try history.open()
        let writer: JournalWriter
        do { writer = try JournalWriter(directory: history.journal, logger: logger) } catch {
            throw CLIError("cannot open journal: \(error)")
        }
        let started = FileSystem.monotonicNs()
        let report: RollbackReport
        do {
            let disk = try JournaledDisk(imagePath: imagePath, journal: writer, readOnly: false)
            report = try disk.rollBack(to: point)
            try writer.close()
        } catch {
            try? writer.close()
            throw CLIError("rollback failed: \(error)")
        }
        let seconds = Double(FileSystem.monotonicNs() - started) / 1e9
        let undo = "seq:\(report.startSequence - 1)"
        if json {
            Output.line(try Output.json([
                "image": imagePath, "to": point.description, "blocks": report.blocks, "bytes": report.bytes,
                "blocksUnknown": report.blocksUnknown, "undo": undo, "seconds": seconds,
            ] as [String: Any]))
        } else {
            Output.line("rolled \(imagePath) back to \(point): \(report.blocks) blocks (\(Output.bytes(report.bytes))) rewritten in \(String(format: "%.2f", seconds)) s")
            Output.line("to undo: kanshi disk rollback --journal \(history.journal) --to \(undo)")
        }
        if report.blocksUnknown > 0 {
            Output.error("kanshi: warning: \(report.blocksUnknown) blocks have no earlier copy in the journal; they kept today's content")
        }
    }
}

struct DiskDiff_: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "List the block ranges that changed between two moments.",
        discussion: """
            Prints each range of consecutive 4 KiB blocks whose content differs between \
            --from and --to: LBA (512-byte sectors), size, mean entropy (byte Shannon \
            entropy / 8) of the new content, and the writes that made it. Blocks rewritten \
            with identical content are counted, not listed.
            """)

    @OptionGroup var history: HistoryOptions

    @Option(help: "The earlier moment (default: before the first record).")
    var from: String = "seq:0"

    @Option(help: "The later moment (default: the end of the journal).")
    var to: String?

    @Flag(help: "Do not look for an ext2/3/4 file system to name the files the blocks belong to.")
    var noFiles = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let t1 = try parseTime(from, option: "--from")
        let (index, imagePath) = try history.open()
        let t2 = try to.map { try parseTime($0, option: "--to") } ?? .sequence(index.lastSequence)
        switch (t1, t2) {
        case (.time(let a), .time(let b)) where a > b, (.sequence(let a), .sequence(let b)) where a > b:
            throw CLIError("--from \(t1) is after --to \(t2); swap them")
        default: break
        }
        let diff: DiskDiff
        let attribution: DiffAttribution?
        do {
            let before = try PastImage(index: index, at: t1, imagePath: imagePath)
            let after = try PastImage(index: index, at: t2, imagePath: imagePath)
            diff = try DiskDiff.between(before, after)
            attribution = noFiles ? nil : DiffAttribution.of(diff.ranges, before: before, after: after)
        } catch {
            throw CLIError("diff failed: \(error)")
        }
        let total = diff.ranges.reduce(UInt64(0)) { $0 + $1.bytes }
        if json {
            Output.line(try Output.json([
                "from": t1.description, "to": t2.description, "changedBytes": total,
                "rewrittenUnchangedBlocks": diff.rewrittenUnchanged,
                "ranges": diff.ranges.map { r in
                    ["lba": r.lba, "sectors": r.bytes / 512, "bytes": r.bytes, "meanEntropy": r.meanEntropy,
                     "writes": r.writes, "firstWrite": Output.time(r.firstTimeNs), "lastWrite": Output.time(r.lastTimeNs)] as [String: Any]
                },
                "owners": (attribution?.items ?? []).map { i -> [String: Any] in
                    var d: [String: Any] = ["what": i.what, "kind": i.kind, "bytes": i.bytes]
                    if let p = i.path { d["path"] = p }
                    if let n = i.inode { d["inode"] = n }
                    return d
                },
                "ownersNote": attribution?.note ?? "",
            ] as [String: Any]))
            return
        }
        Output.line("changes from \(t1) to \(t2): \(diff.ranges.count) ranges, \(Output.bytes(total))" +
                    (diff.rewrittenUnchanged > 0 ? " (\(diff.rewrittenUnchanged) more blocks rewritten with the same content)" : ""))
        if !diff.ranges.isEmpty {
            Output.line(pad("LBA", 12) + pad("sectors", 10) + pad("size", 11) + pad("entropy", 9) + pad("writes", 8) + "last write")
        }
        for r in diff.ranges {
            Output.line(pad("\(r.lba)", 12) + pad("\(r.bytes / 512)", 10) + pad(Output.bytes(r.bytes), 11) +
                        pad(String(format: "%.3f", r.meanEntropy), 9) + pad("\(r.writes)", 8) + Output.time(r.lastTimeNs))
        }
        if let a = attribution {
            if let note = a.note { Output.line("(\(note))") }
            if !a.items.isEmpty {
                Output.line("\nin the file system (ext4), by what the changed blocks belong to:")
                for i in a.items { Output.line("  " + pad(Output.bytes(i.bytes), 11) + i.what) }
            }
        }
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
}
