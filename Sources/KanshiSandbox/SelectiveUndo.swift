import Foundation
import KanshiBlock
import KanshiExt4
import KanshiHistory
import KanshiJournal
import KanshiMount
import KanshiSystem
import Logging

/// What a selective undo did.
public struct UndoReport: Sendable {
    public struct Skipped: Sendable {
        public var path: String
        public var reason: String
    }
    /// The moment the files were put back to.
    public var to: TimePoint
    /// Files given back their content (and mode, owner, times) of that moment.
    public var restored: [String] = []
    /// Files and empty directories that did not exist then, removed.
    public var removed: [String] = []
    /// Paths already as they were (nothing to do).
    public var unchanged = 0
    /// Paths left alone, and why (a directory that is not empty, a special file, an unreadable past).
    public var skipped: [Skipped] = []
    public var bytesRestored: UInt64 = 0
    /// Sequence number of the `undo-start` note: rolling back to the record before it undoes the undo.
    public var startSequence: UInt64 = 0

    public init(to: TimePoint) { self.to = to }
}

/// Puts back chosen files of an ext4 disk as they were at a past moment, and nothing else:
/// their content at that moment comes from the journal (a past image read by Kanshi's ext4
/// reader); they are written through the kernel's ext4 on the journaled disk (a FUSE file,
/// a loop device, a mount), so the undo is itself journaled and can be rolled back. Files
/// that did not exist then are removed. Every other file keeps its present content.
public enum SelectiveUndo {
    /// The connection id the undo's writes carry in the journal.
    public static let connection: UInt32 = JournaledDisk.firstRepairConnection + 1
    /// Paths listed in the `undo-end` note, at most, of each kind.
    static let notedPaths = 10_000

    /// Restores `paths` (absolute within the file system, e.g. /corpus/a.txt) of `disk` to `point`.
    /// The disk must not be in use by anything else (the VM stopped).
    public static func run(disk: JournaledDisk, paths: [String], to point: TimePoint, logger: Logger) throws -> UndoReport {
        guard let journal = disk.journal else { throw SandboxError.undoFailed("the disk has no journal to take past contents from") }
        try journal.sync()
        let past: Ext4FileSystem
        do {
            let index = try VersionIndex(journal: journal.directory)
            past = try Ext4FileSystem(reader: PastImageReader(past: PastImage(index: index, at: point, imagePath: disk.image.path)))
        } catch {
            throw SandboxError.undoFailed("cannot read the file system as it was at \(point): \(error)")
        }
        let mountPoint = try temporaryDirectory("kanshi-undo")
        defer { try? FileSystem.removeDirectory(mountPoint) }
        let options = MountOptions(mountPoint: mountPoint, fileSystemType: "ext4")
        do { _ = try DiskMounter.preflight(image: disk.image.path, options: options) } catch {
            throw SandboxError.undoFailed("cannot mount the disk to put files back: \(error)")
        }
        var report = UndoReport(to: point)
        // Everything needed from the past is read first: once the disk is mounted, the kernel
        // writes to it (its own journal's replay) and the past image would no longer be the past.
        let staging = try temporaryDirectory("kanshi-undo-staging")
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let plan = try stage(paths: paths, past: past, staging: staging, report: &report)
        report.startSequence = try journal.appendNote("{\"event\":\"undo-start\",\"to\":\"\(point)\",\"paths\":\(paths.count)}")
        let mounted: MountedDisk
        do { mounted = try DiskMounter.mount(file: DiskFile(disk: disk, connection: connection), options: options, logger: logger) } catch {
            throw SandboxError.undoFailed("cannot mount the disk to put files back: \(error)")
        }
        var failure: Error?
        do {
            try apply(plan, root: mounted.mountPoint, report: &report)
        } catch {
            failure = error
        }
        do { try mounted.unmount { logger.warning("\($0)") } } catch {
            failure = failure ?? SandboxError.undoFailed("cannot unmount \(mountPoint): \(error)")
        }
        try disk.sync()
        // The paths too (the first `notedPaths` of each), so a reader of the journal (the server's
        // dashboard) can say which files were put back.
        func list(_ paths: [String]) -> String { "[" + paths.prefix(Self.notedPaths).map { "\"\($0.jsonEscaped)\"" }.joined(separator: ",") + "]" }
        _ = try journal.appendNote("{\"event\":\"undo-end\",\"to\":\"\(point)\",\"restored\":\(report.restored.count),\"removed\":\(report.removed.count),\"bytes\":\(report.bytesRestored),\"restoredPaths\":\(list(report.restored)),\"removedPaths\":\(list(report.removed))}")
        try journal.sync()
        if let failure { throw failure }
        return report
    }

    /// A new directory of ours under the temporary directory.
    static func temporaryDirectory(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do { try FileSystem.createDirectory(path) } catch { throw SandboxError.undoFailed("\(error)") }
        return path
    }

    /// One path and what it was at the moment: a regular file (its content staged in a file,
    /// with its metadata) or nothing.
    struct Planned {
        var path: String
        var then: Inode?
        var staged: String?
    }

    static func stage(paths: [String], past: Ext4FileSystem, staging: String, report: inout UndoReport) throws -> [Planned] {
        var plan: [Planned] = []
        for (i, path) in Set(paths).sorted().enumerated() {
            guard path.hasPrefix("/"), !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
                report.skipped.append(.init(path: path, reason: "not an absolute, normalized path"))
                continue
            }
            let then: Inode?
            do { then = try past.lookup(path: path) } catch {
                if case .notFound = error { then = nil } else if case .notADirectory = error { then = nil } else {
                    report.skipped.append(.init(path: path, reason: "cannot read it as it was: \(error)"))
                    continue
                }
            }
            guard let then else { plan.append(Planned(path: path, then: nil)); continue }
            guard then.type == .regular else {
                report.skipped.append(.init(path: path, reason: "a \(then.type) then: left as it is"))
                continue
            }
            let file = staging + "/\(i)"
            let out: SystemFile
            do { out = try SystemFile(path: file, mode: [.readWrite, .create, .truncate]) } catch {
                throw SandboxError.undoFailed("cannot stage the past content of \(path): \(error)")
            }
            var at: UInt64 = 0
            var stagingError: SystemError?
            do {
                try past.readContents(of: then) { chunk throws(Ext4Error) in
                    do throws(SystemError) { try out.write(chunk, at: at) } catch {
                        stagingError = error
                        throw .io(structure: "staging file", offset: at, message: "\(error)")
                    }
                    at += UInt64(chunk.count)
                }
            } catch {
                if let stagingError { throw SandboxError.undoFailed("cannot stage the past content of \(path) in \(file): \(stagingError)") }
                report.skipped.append(.init(path: path, reason: "cannot read its content as it was: \(error)"))
                continue
            }
            plan.append(Planned(path: path, then: then, staged: file))
        }
        return plan
    }

    static func apply(_ plan: [Planned], root: String, report: inout UndoReport) throws {
        var createdDirectories: [String] = []
        for item in plan {
            let path = item.path, target = root + path
            let now = try FileSystem.status(target)
            guard let then = item.then, let staged = item.staged else {
                switch now?.kind {
                case nil: report.unchanged += 1
                case .directory: createdDirectories.append(path)
                case .regular, .symbolicLink, .other:
                    try FileSystem.remove(target)
                    report.removed.append(path)
                }
                continue
            }
            if now?.kind == .directory {
                report.skipped.append(.init(path: path, reason: "a directory now, a file then: left as it is"))
                continue
            }
            let content = try SystemFile(path: staged, mode: .readOnly).readAll()
            if now?.kind == .regular, now?.size == UInt64(content.count),
               let current = try? SystemFile(path: target, mode: [.readOnly, .noFollow]).readAll(), current == content {
                report.unchanged += 1
                continue
            }
            try write(content, like: then, to: target)
            report.restored.append(path)
            report.bytesRestored += UInt64(content.count)
        }
        // Directories made after the moment: removed when empty, deepest first.
        for path in createdDirectories.sorted(by: { $0.count > $1.count }) {
            do {
                try FileSystem.removeDirectory(root + path)
                report.removed.append(path)
            } catch {
                report.skipped.append(.init(path: path, reason: "a directory made after the moment that is not empty: \(error)"))
            }
        }
    }

    /// Writes the file beside its place and renames it there, so that a failure leaves either
    /// the present file or the restored one, never half of it.
    static func write(_ content: [UInt8], like inode: Inode, to target: String) throws {
        let dir = String(target[..<(target.lastIndex(of: "/") ?? target.endIndex)])
        try FileSystem.createDirectory(dir)
        let temporary = dir + "/.kanshi-undo-\(getpid())"
        let f = try SystemFile(path: temporary, mode: [.readWrite, .create, .truncate, .noFollow], permissions: 0o600)
        if !content.isEmpty { try f.write(content, at: 0) }
        try f.setOwner(uid: inode.uid, gid: inode.gid)
        try f.setPermissions(UInt32(inode.permissions))
        try f.setTimes(accessed: (inode.accessTime.seconds, inode.accessTime.nanoseconds),
                       modified: (inode.modificationTime.seconds, inode.modificationTime.nanoseconds))
        try f.sync()
        try FileSystem.rename(temporary, target)
    }
}
