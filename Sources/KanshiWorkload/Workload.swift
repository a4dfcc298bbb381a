import KanshiSystem

/// Whether a workload imitates ransomware or a legitimate program that looks like it.
public enum WorkloadClass: String, Sendable {
    case ransomware, benign
}

/// A workload's name, class and what it does.
public struct WorkloadInfo: Sendable {
    public var name: String
    public var workloadClass: WorkloadClass
    public var summary: String
}

/// Knobs of the workloads; each uses the ones its description names.
public struct WorkloadOptions: Sendable {
    /// Drives every choice (which files, what edits); keys are random regardless.
    public var seed: UInt64 = 1
    /// Touch at most this many files (nil: every file the workload would).
    public var maxFiles: Int?
    /// `slow`: MiB per second to keep under.
    public var rateMiB: Double = 1
    /// `partial`: KiB encrypted at the start of each file.
    public var partialKiB: Int = 4
    /// `secure-delete`, `edit`, `save-big`: how many files (defaults 3, 5 and 3).
    public var count: Int?
    /// `encrypt-one`: the file; `copy-tree`: the folder (relative to the corpus).
    public var target: String?
    /// `encrypt-one`: the password.
    public var password: String = "correct horse battery staple"
    /// `database`: size of the database file.
    public var databaseMiB: Int = 32
    /// `database`: transactions (each writes 1-4 pages and fsyncs).
    public var transactions: Int = 300

    public init() {}
}

/// What a workload did.
public struct WorkloadReport: Sendable {
    public var name: String
    public var workloadClass: WorkloadClass
    public var directory: String
    public var seed: UInt64
    public var filesRead = 0
    public var filesWritten = 0
    public var filesDeleted = 0
    public var filesRenamed = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    public var seconds: Double = 0
    /// Main outputs (archive, encrypted file, database), relative to the directory.
    public var outputs: [String] = []
}

/// The catalogue of workloads and the entry point to run one.
public enum Workloads {
    public static let all: [WorkloadInfo] = [
        .init(name: "inplace", workloadClass: .ransomware,
              summary: "overwrite every file in place with its AES-256-GCM encryption (random key); a ransom note per folder"),
        .init(name: "copy-delete", workloadClass: .ransomware,
              summary: "write an encrypted copy NAME.enc of every file, then delete the original (WannaCry-like)"),
        .init(name: "rename", workloadClass: .ransomware,
              summary: "encrypt every file in place, then rename it to NAME.locked"),
        .init(name: "partial", workloadClass: .ransomware,
              summary: "encrypt only the first --partial-kib KiB (default 4) of every file, key footer appended (LockBit-like)"),
        .init(name: "slow", workloadClass: .ransomware,
              summary: "in-place encryption throttled to --rate-mib MiB/s (default 1), pausing between files"),
        .init(name: "compress", workloadClass: .benign,
              summary: "deflate the documents into one zip archive under Backups/ (like a backup tool)"),
        .init(name: "encrypt-one", workloadClass: .benign,
              summary: "encrypt one file (--target or a chosen document) with a password, PBKDF2 + AES-GCM, to FILE.aes"),
        .init(name: "secure-delete", workloadClass: .benign,
              summary: "overwrite --count files (default 3) with random data, then zeros, then unlink them (like shred -u)"),
        .init(name: "database", workloadClass: .benign,
              summary: "create a --db-mib MiB (default 32) database file, then random 4 KiB page writes in fsynced transactions with a rollback journal (like SQLite)"),
        .init(name: "build", workloadClass: .benign,
              summary: "read the source trees and write object files and a linked binary per project (like a compiler)"),
        .init(name: "copy-tree", workloadClass: .benign,
              summary: "copy a folder (--target or a chosen top folder) to 'FOLDER copy'"),
        .init(name: "edit", workloadClass: .benign,
              summary: "edit --count documents (default 5): change a few paragraphs, write a temporary file, rename it over the original"),
        .init(name: "package-install", workloadClass: .benign,
              summary: "install a program under Programs/ (deflated binaries, libraries, configuration), then upgrade it file by file: NAME.dpkg-new written, fsynced, renamed over NAME (like dpkg)"),
        .init(name: "save-big", workloadClass: .benign,
              summary: "save the --count (default 3) biggest files as an editor does: read, change a few stretches, write a temporary file, rename it over the original"),
    ]

    public static func info(_ name: String) -> WorkloadInfo? { all.first { $0.name == name } }

    /// Runs workload `name` on the corpus at `directory` (refused unless it holds the corpus marker).
    public static func run(_ name: String, directory: String, options: WorkloadOptions) throws(WorkloadError) -> WorkloadReport {
        guard let info = info(name) else { throw .unknownWorkload(name) }
        let dir = try CorpusDirectory(path: directory, requireMarker: true)
        let run = WorkloadRun(info: info, directory: dir, options: options)
        switch name {
        case "inplace": try Ransomware.encryptAll(run, style: .inPlace)
        case "copy-delete": try Ransomware.encryptAll(run, style: .copyDelete)
        case "rename": try Ransomware.encryptAll(run, style: .rename)
        case "partial": try Ransomware.encryptAll(run, style: .partial)
        case "slow": try Ransomware.encryptAll(run, style: .slow)
        case "compress": try BenignWorkloads.compress(run)
        case "encrypt-one": try BenignWorkloads.encryptOne(run)
        case "secure-delete": try BenignWorkloads.secureDelete(run)
        case "database": try DatabaseWorkload.run(run)
        case "build": try BenignWorkloads.build(run)
        case "copy-tree": try BenignWorkloads.copyTree(run)
        case "edit": try BenignWorkloads.edit(run)
        case "package-install": try LookAlikeWorkloads.packageInstall(run)
        case "save-big": try LookAlikeWorkloads.saveBig(run)
        default: throw .unknownWorkload(name)
        }
        return try run.finish()
    }
}

/// One run: the confined directory, the seeded generator, counters, and what to fsync at the end.
final class WorkloadRun {
    let info: WorkloadInfo
    let dir: CorpusDirectory
    let options: WorkloadOptions
    var rng: SeededRandom
    var report: WorkloadReport
    private var written: [String] = []
    private var writtenSet: Set<String> = []
    private var touchedDirectories: Set<String> = []
    private let started = FileSystem.monotonicNs()

    init(info: WorkloadInfo, directory: CorpusDirectory, options: WorkloadOptions) {
        self.info = info
        self.dir = directory
        self.options = options
        self.rng = SeededRandom(seed: options.seed)
        self.report = WorkloadReport(name: info.name, workloadClass: info.workloadClass, directory: directory.root, seed: options.seed)
    }

    /// The corpus' regular files that may be changed (no other hard links),
    /// in walk order, limited by --max-files.
    func candidateFiles(_ filter: (CorpusDirectory.Entry) -> Bool = { _ in true }) throws(WorkloadError) -> [CorpusDirectory.Entry] {
        var files = try dir.files().filter { filter($0) && dir.isPrivateRegularFile($0.path) }
        if let m = options.maxFiles { files = Array(files.prefix(max(0, m))) }
        return files
    }

    func read(_ path: String) throws(WorkloadError) -> [UInt8] {
        let bytes = try dir.read(path)
        report.filesRead += 1
        report.bytesRead += UInt64(bytes.count)
        return bytes
    }

    private func noteWrite(_ path: String, _ count: Int) {
        report.bytesWritten += UInt64(count)
        if writtenSet.insert(path).inserted {
            written.append(path)
            report.filesWritten += 1
        }
        touchedDirectories.insert(dir.parent(of: path))
    }

    /// Creates or replaces a file.
    func create(_ path: String, _ bytes: [UInt8]) throws(WorkloadError) {
        try dir.write(path, bytes)
        noteWrite(path, bytes.count)
    }

    /// Writes into an existing file at `offset` (no truncation).
    func overwrite(_ path: String, _ bytes: [UInt8], at offset: UInt64, sync: Bool = false) throws(WorkloadError) {
        let f = try dir.open(path, .readWrite)
        do {
            try f.write(bytes, at: offset)
            if sync { try f.sync() }
        } catch { throw .system(error) }
        noteWrite(path, bytes.count)
    }

    /// Appends through an open handle created by `openNew`.
    func append(_ file: SystemFile, _ path: String, _ bytes: [UInt8], at offset: UInt64) throws(WorkloadError) {
        do { try file.write(bytes, at: offset) } catch { throw .system(error) }
        noteWrite(path, bytes.count)
    }

    func openNew(_ path: String) throws(WorkloadError) -> SystemFile {
        try dir.makeDirectory(dir.parent(of: path))
        let f = try dir.open(path, [.readWrite, .create, .truncate])
        noteWrite(path, 0)
        return f
    }

    func delete(_ path: String) throws(WorkloadError) {
        try dir.remove(path)
        report.filesDeleted += 1
        touchedDirectories.insert(dir.parent(of: path))
        if writtenSet.remove(path) != nil { written.removeAll { $0 == path } }
    }

    /// Saves `bytes` as `path` the careful way: written to `temporary`, fsynced, renamed over `path`.
    func save(_ path: String, _ bytes: [UInt8], through temporary: String) throws(WorkloadError) {
        try create(temporary, bytes)
        let f = try dir.open(temporary, .readOnly)
        do { try f.sync() } catch { throw .system(error) }
        try rename(temporary, path)
    }

    func rename(_ from: String, _ to: String) throws(WorkloadError) {
        try dir.rename(from, to)
        report.filesRenamed += 1
        touchedDirectories.insert(dir.parent(of: to))
        if writtenSet.remove(from) != nil {
            written.removeAll { $0 == from }
            if writtenSet.insert(to).inserted { written.append(to) }
        }
    }

    /// Whether anything (file, directory, link) is at `path`; true for paths leading outside.
    func exists(_ path: String) -> Bool {
        guard let p = try? dir.resolve(path) else { return true }
        return (try? FileSystem.status(p)) != nil
    }

    /// A path not yet taken: `path`, or `path` with " 2", " 3", ... before the extension.
    func freshPath(_ path: String) -> String {
        var candidate = path
        var n = 2
        while exists(candidate) {
            let slash = path.lastIndex(of: "/") ?? path.startIndex
            let dot = path[slash...].lastIndex(of: ".") ?? path.endIndex
            candidate = String(path[..<dot]) + " \(n)" + String(path[dot...])
            n += 1
        }
        return candidate
    }

    /// Makes everything written durable: each file, then each directory that changed.
    func finish() throws(WorkloadError) -> WorkloadReport {
        for p in written {
            let f = try dir.open(p, .readOnly)
            do { try f.sync() } catch { throw .system(error) }
        }
        for d in touchedDirectories.sorted(by: >) where d.isEmpty || FileSystem.isDirectory(dir.root + "/" + d) {
            try dir.syncDirectory(d)
        }
        report.seconds = Double(FileSystem.monotonicNs() - started) / 1e9
        return report
    }
}
