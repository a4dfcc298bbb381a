import Foundation

/// What a run is.
public enum Label: String, Sendable, Codable, CaseIterable {
    case ransomware
    case benign

    public var isPositive: Bool { self == .ransomware }
}

/// One recording: a RanSAP run directory or a Kanshi journal.
public struct Run: Sendable {
    public enum Source: Sendable { case ransap, journal }
    public var path: String
    public var source: Source
    /// The setup folder (e.g. `original/win7-250gb-hdd`), empty if none.
    public var setup: String
    public var family: String
    public var label: Label
    /// A short name: `setup/Family/run`.
    public var name: String

    /// The run's memory-access features (`memory.csv`, from `kanshi dataset record --memory-watch`), if it has them.
    public var memoryFeatures: String? {
        let p = path + "/memory.csv"
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }

    public func load() throws -> BlockTrace {
        switch source {
        case .ransap: try RanSAPReader.read(runDirectory: path)
        case .journal: try BlockTrace.fromJournal(path)
        }
    }
}

/// Finds the runs under a directory and labels them.
public enum Dataset {
    /// The workloads of `kanshi workload` and what they simulate.
    public static let kanshiWorkloads: [(String, Label)] = [
        ("inplace", .ransomware), ("copy-delete", .ransomware), ("rename", .ransomware), ("partial", .ransomware), ("slow", .ransomware),
        ("compress", .benign), ("encrypt-one", .benign), ("secure-delete", .benign), ("database", .benign), ("build", .benign),
        ("copy-tree", .benign), ("edit", .benign), ("package-install", .benign), ("save-big", .benign),
    ]

    /// RanSAP's families and what they are.
    public static let knownFamilies: [String: Label] = {
        var m: [String: Label] = [:]
        for f in ["TeslaCrypt", "WannaCry", "Cerber", "Darkside", "GandCrab4", "Ryuk", "Sodinokibi", "LockBit", "Conti", "REvil"] {
            m[f.lowercased()] = .ransomware
        }
        for f in ["AESCrypt", "Zip", "SDelete", "Excel", "Firefox", "Office", "Idle"] { m[f.lowercased()] = .benign }
        // Kanshi's own workloads, as `kanshi dataset record` names their folders.
        for (name, label) in kanshiWorkloads { m["kanshi-" + name] = label }
        return m
    }()

    /// Every run under `root` (a run directory itself counts), in a stable
    /// order. Labels come from the family folder (the run's parent), or from
    /// `labels`: lines `NAME,ransomware|benign` where NAME is a family or a
    /// run path relative to `root` (the run wins).
    public static func discover(_ root: String, labels: [String: Label] = [:]) throws -> [Run] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw AnalysisError.invalid("\(root): no such directory")
        }
        var dirs: [String] = []
        func isRun(_ d: String) -> Bool {
            fm.fileExists(atPath: d + "/ata_write.csv") || fm.fileExists(atPath: d + "/ata_read.csv")
                || ((try? fm.contentsOfDirectory(atPath: d))?.contains { $0.hasPrefix("segment-") && $0.hasSuffix(".kjs") } ?? false)
        }
        if isRun(root) {
            dirs = [root]
        } else if let e = fm.enumerator(atPath: root) {
            while let rel = e.nextObject() as? String {
                let full = root + "/" + rel
                var d: ObjCBool = false
                if fm.fileExists(atPath: full, isDirectory: &d), d.boolValue, isRun(full) {
                    dirs.append(full)
                    e.skipDescendants()
                }
            }
        }
        dirs.sort()
        guard !dirs.isEmpty else { throw AnalysisError.noRuns(root) }
        let rootURL = URL(fileURLWithPath: root).standardizedFileURL.path
        return try dirs.map { dir in
            let comps = URL(fileURLWithPath: dir).standardizedFileURL.pathComponents
            let runName = comps.last ?? dir
            let family = comps.count >= 2 ? comps[comps.count - 2] : ""
            let full = URL(fileURLWithPath: dir).standardizedFileURL.path
            var rel = full.hasPrefix(rootURL) ? String(full.dropFirst(rootURL.count)) : full
            if rel.hasPrefix("/") { rel.removeFirst() }
            let relComps = rel.split(separator: "/").map(String.init)
            let setup = relComps.count >= 3 ? relComps.dropLast(2).joined(separator: "/") : ""
            let source: Run.Source = fm.fileExists(atPath: dir + "/ata_write.csv") || fm.fileExists(atPath: dir + "/ata_read.csv") ? .ransap : .journal
            let label: Label
            if let l = labels[rel] ?? labels[runName] ?? labels[family.lowercased()] ?? labels[family] {
                label = l
            } else if let l = knownFamilies[family.lowercased()] {
                label = l
            } else {
                throw AnalysisError.unknownFamily(run: dir, family: family)
            }
            let name = [setup, family, runName].filter { !$0.isEmpty }.joined(separator: "/")
            return Run(path: dir, source: source, setup: setup, family: family, label: label, name: name)
        }
    }

    /// Reads a labels file: `NAME,ransomware|benign` per line, `#` comments.
    public static func readLabels(_ path: String) throws -> [String: Label] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw AnalysisError.missingFile(path) }
        var out: [String: Label] = [:]
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let l = Label(rawValue: parts[1].lowercased()) else {
                throw AnalysisError.badLabels(file: path, line: i + 1, reason: "expected NAME,ransomware or NAME,benign")
            }
            out[parts[0]] = l
            out[parts[0].lowercased()] = l
        }
        return out
    }
}
