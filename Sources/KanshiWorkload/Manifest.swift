import Crypto

/// The marker a corpus builder leaves: workloads refuse directories without it.
public struct CorpusMarker: Sendable, Equatable {
    public static let fileName = ".kanshi-corpus"
    public static let currentVersion = 1

    public var seed: UInt64
    public var version: Int
    public var sizeMiB: Int

    /// One line of JSON.
    public var json: String {
        "{\"format\":\"kanshi-corpus\",\"seed\":\(seed),\"sizeMiB\":\(sizeMiB),\"version\":\(version)}\n"
    }

    public init(seed: UInt64, version: Int = CorpusMarker.currentVersion, sizeMiB: Int) {
        self.seed = seed
        self.version = version
        self.sizeMiB = sizeMiB
    }

    /// Parses what `json` wrote (a flat object of numbers and one string).
    public init(json text: String) throws(WorkloadError) {
        func number(_ key: String) -> UInt64? {
            guard let r = text.firstRange(of: "\"\(key)\":") else { return nil }
            return UInt64(text[r.upperBound...].prefix { $0.isNumber })
        }
        guard text.contains("\"format\":\"kanshi-corpus\""), let seed = number("seed"), let version = number("version") else {
            throw .badManifest(path: Self.fileName, reason: "not a Kanshi corpus marker")
        }
        self.init(seed: seed, version: Int(version), sizeMiB: Int(number("sizeMiB") ?? 0))
    }
}

/// Path, size and SHA-256 of every file of a corpus, one per line:
/// `<sha256 hex> <size> <path>`, sorted by path.
public struct Manifest: Sendable, Equatable {
    public static let fileName = ".kanshi-manifest"
    static let header = "# kanshi corpus manifest v1: sha256 size path"

    public struct Entry: Sendable, Equatable {
        public var path: String
        public var size: UInt64
        public var sha256: String
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries.sorted { $0.path < $1.path } }

    public static func digest(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { b in
            let h = String(b, radix: 16)
            return b < 16 ? "0" + h : h
        }.joined()
    }

    public var text: String {
        var s = Self.header + "\n"
        for e in entries { s += "\(e.sha256) \(e.size) \(e.path)\n" }
        return s
    }

    public init(text: String) throws(WorkloadError) {
        var entries: [Entry] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            if line.hasPrefix("#") { continue }
            let f = line.split(separator: " ", maxSplits: 2)
            guard f.count == 3, f[0].count == 64, let size = UInt64(f[1]) else {
                throw .badManifest(path: Self.fileName, reason: "line \(n + 1) is not `sha256 size path`")
            }
            entries.append(Entry(path: String(f[2]), size: size, sha256: String(f[0])))
        }
        self.init(entries: entries)
    }

    /// Reads the manifest of a corpus directory.
    public static func load(from dir: CorpusDirectory) throws(WorkloadError) -> Manifest {
        let bytes: [UInt8]
        do { bytes = try dir.read(fileName) } catch {
            throw .badManifest(path: dir.root + "/" + fileName, reason: "cannot be read (\(error)); was the corpus built with `kanshi corpus build`?")
        }
        return try Manifest(text: String(decoding: bytes, as: UTF8.self))
    }
}

/// How a directory compares with its manifest.
public struct VerifyReport: Sendable {
    public var intact: [String] = []
    public var modified: [String] = []
    public var missing: [String] = []
    /// Files present but not in the manifest (ransom notes, encrypted copies, outputs).
    public var extra: [String] = []
    /// Manifest bytes of the modified and missing files.
    public var bytesLost: UInt64 = 0
    public var bytesTotal: UInt64 = 0

    /// Every file of the manifest is there with its content.
    public var allIntact: Bool { modified.isEmpty && missing.isEmpty }

    /// Compares `dir` with its manifest, hashing every file that has the right size.
    public static func check(_ dir: CorpusDirectory) throws(WorkloadError) -> VerifyReport {
        let manifest = try Manifest.load(from: dir)
        var present: [String: UInt64] = [:]
        for f in try dir.files() { present[f.path] = f.size }
        var r = VerifyReport()
        for e in manifest.entries {
            r.bytesTotal += e.size
            guard let size = present.removeValue(forKey: e.path) else {
                r.missing.append(e.path); r.bytesLost += e.size; continue
            }
            if size == e.size, let bytes = try? dir.read(e.path), Manifest.digest(bytes) == e.sha256 {
                r.intact.append(e.path)
            } else {
                r.modified.append(e.path); r.bytesLost += e.size
            }
        }
        r.extra = present.keys.sorted()
        return r
    }
}
