import KanshiSystem

/// A corpus directory, and the only way workloads reach files: every path is
/// relative to the resolved root, may not contain `..`, and no component may
/// be a symbolic link (links inside the corpus are skipped, never followed),
/// so nothing outside the directory is read or written. Files on another file
/// system (a mount inside the corpus) and files with other hard links are
/// left alone too: writing them could change data outside the directory.
public struct CorpusDirectory: Sendable {
    /// The canonical absolute path of the directory.
    public let root: String
    private let device: UInt64

    /// A regular file found by `files()`.
    public struct Entry: Sendable, Equatable {
        /// Path relative to the root, "/"-separated.
        public var path: String
        public var size: UInt64
    }

    /// Opens `path` as a corpus directory; with `requireMarker`, refuses
    /// unless the corpus builder's marker file is there.
    public init(path: String, requireMarker: Bool) throws(WorkloadError) {
        let absolute = FileSystem.absolutePath(path)
        let st: FileStatus?
        do { st = try FileSystem.status(absolute) } catch { throw .system(error) }
        guard let st else { throw .refusedDirectory(directory: path, reason: "it does not exist") }
        if st.kind == .symbolicLink {
            throw .refusedDirectory(directory: path, reason: "it is a symbolic link; give the real directory")
        }
        guard st.kind == .directory else { throw .refusedDirectory(directory: path, reason: "it is not a directory") }
        let real: String
        do { real = try FileSystem.realPath(absolute) } catch { throw .system(error) }
        if real == "/" { throw .refusedDirectory(directory: path, reason: "it is the root directory") }
        root = real
        device = st.device
        if requireMarker {
            guard (try? FileSystem.status(real + "/" + CorpusMarker.fileName))?.kind == .regular else {
                throw .notACorpus(directory: path)
            }
        }
    }

    /// The absolute path of `relative` after checking it stays inside the root:
    /// no `..` or empty components, no symbolic link on the way. The last
    /// component may be missing (a file to create) but not be a link.
    public func resolve(_ relative: String) throws(WorkloadError) -> String {
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !relative.hasPrefix("/"), !parts.isEmpty,
              parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." })
        else { throw .outsideDirectory(path: relative, directory: root) }
        var path = root
        for (i, part) in parts.enumerated() {
            path += "/" + part
            let st: FileStatus?
            do { st = try FileSystem.status(path) } catch { throw .system(error) }
            guard let st else { break }  // the rest does not exist yet
            if st.kind == .symbolicLink || st.device != device { throw .outsideDirectory(path: relative, directory: root) }
            if i < parts.count - 1 && st.kind != .directory { throw .outsideDirectory(path: relative, directory: root) }
        }
        return root + "/" + relative
    }

    /// Whether a file may be changed in place: a regular file, on the corpus'
    /// file system, with no other hard link.
    public func isPrivateRegularFile(_ relative: String) -> Bool {
        guard let p = try? resolve(relative), let st = try? FileSystem.status(p) else { return false }
        return st.kind == .regular && st.linkCount == 1 && st.device == device
    }

    /// Every regular file under the root (or under `subdirectory`), depth
    /// first in name order, skipping the marker and manifest, links, other
    /// file systems and anything that is neither file nor directory.
    public func files(under subdirectory: String? = nil, includeCorpusFiles: Bool = false) throws(WorkloadError) -> [Entry] {
        var out: [Entry] = []
        try walk(subdirectory ?? "", into: &out, includeCorpusFiles: includeCorpusFiles)
        return out
    }

    /// Every directory under the root (relative paths, "" for the root), in walk order.
    public func directories() throws(WorkloadError) -> [String] {
        var out: [String] = [""]
        var i = 0
        while i < out.count {
            let dir = out[i]
            let abs = dir.isEmpty ? root : try resolve(dir)
            let names: [String]
            do { names = try FileSystem.list(abs) } catch { throw .system(error) }
            var children: [String] = []
            for n in names {
                let rel = dir.isEmpty ? n : dir + "/" + n
                if let st = try? FileSystem.status(abs + "/" + n), st.kind == .directory, st.device == device {
                    children.append(rel)
                }
            }
            out.insert(contentsOf: children, at: i + 1)
            i += 1
        }
        return out
    }

    private func walk(_ dir: String, into out: inout [Entry], includeCorpusFiles: Bool) throws(WorkloadError) {
        let abs = dir.isEmpty ? root : try resolve(dir)
        let names: [String]
        do { names = try FileSystem.list(abs) } catch { throw .system(error) }
        for n in names {
            let rel = dir.isEmpty ? n : dir + "/" + n
            if dir.isEmpty && !includeCorpusFiles && (n == CorpusMarker.fileName || n == Manifest.fileName) { continue }
            let st: FileStatus?
            do { st = try FileSystem.status(abs + "/" + n) } catch { throw .system(error) }
            guard let st, st.device == device else { continue }
            switch st.kind {
            case .regular: out.append(Entry(path: rel, size: st.size))
            case .directory: try walk(rel, into: &out, includeCorpusFiles: includeCorpusFiles)
            case .symbolicLink, .other: continue
            }
        }
    }

    /// Opens a file inside the root (never through a link).
    public func open(_ relative: String, _ mode: SystemFile.OpenMode) throws(WorkloadError) -> SystemFile {
        let p = try resolve(relative)
        do { return try SystemFile(path: p, mode: mode.union(.noFollow)) } catch { throw .system(error) }
    }

    public func read(_ relative: String) throws(WorkloadError) -> [UInt8] {
        let f = try open(relative, .readOnly)
        do { return try f.readAll() } catch { throw .system(error) }
    }

    /// Creates (or replaces the content of) a file, creating parent directories.
    @discardableResult
    public func write(_ relative: String, _ bytes: [UInt8], sync: Bool = false) throws(WorkloadError) -> SystemFile {
        try makeDirectory(parent(of: relative))
        let f = try open(relative, [.readWrite, .create, .truncate])
        do {
            try f.write(bytes, at: 0)
            if sync { try f.sync() }
        } catch { throw .system(error) }
        return f
    }

    /// Creates a directory and its missing parents inside the root.
    public func makeDirectory(_ relative: String) throws(WorkloadError) {
        guard !relative.isEmpty else { return }
        let p = try resolve(relative)
        if FileSystem.isDirectory(p) { return }
        do { try FileSystem.createDirectory(p) } catch { throw .system(error) }
        _ = try resolve(relative)
    }

    public func remove(_ relative: String) throws(WorkloadError) {
        let p = try resolve(relative)
        do { try FileSystem.remove(p) } catch { throw .system(error) }
    }

    public func rename(_ from: String, _ to: String) throws(WorkloadError) {
        let a = try resolve(from), b = try resolve(to)
        do { try FileSystem.rename(a, b) } catch { throw .system(error) }
    }

    /// Makes a directory's entries durable.
    public func syncDirectory(_ relative: String) throws(WorkloadError) {
        let p = relative.isEmpty ? root : try resolve(relative)
        do { try FileSystem.syncDirectory(p) } catch { throw .system(error) }
    }

    /// The folder part of a relative path ("" for a file at the root).
    public func parent(of relative: String) -> String { Self.parentPath(relative) }

    public static func parentPath(_ relative: String) -> String {
        guard let slash = relative.lastIndex(of: "/") else { return "" }
        return String(relative[..<slash])
    }
}
