#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KanshiSystem

/// The kinds of file a corpus holds.
public enum CorpusFileKind: String, CaseIterable, Sendable {
    case text, markdown, csv, html, docx, xlsx, png, bmp, ppm, zip, gzip, targz, sqlite, records
    /// A project: nested folders of C or Swift sources, headers, a README and a build file.
    case sourceTree = "source"

    /// The group the summary counts it in.
    public var category: String {
        switch self {
        case .text, .markdown, .csv, .html, .docx, .xlsx: "document"
        case .png, .bmp, .ppm: "image"
        case .zip, .gzip, .targz: "archive"
        case .sqlite, .records: "database"
        case .sourceTree: "source"
        }
    }

    /// Relative frequency (by count of generated items).
    var weight: Double {
        switch self {
        case .text: 14
        case .markdown: 8
        case .csv: 7
        case .html: 6
        case .docx: 4
        case .xlsx: 3
        case .png: 8
        case .bmp: 2
        case .ppm: 1.5
        case .zip, .gzip: 3
        case .targz: 2
        case .sqlite: 2
        case .records: 3
        case .sourceTree: 1.5
        }
    }

    /// Log-normal size: median, spread, bounds (bytes).
    var sizeModel: (median: Int, sigma: Double, min: Int, max: Int) {
        switch self {
        case .text: (6 << 10, 1.2, 200, 1 << 20)
        case .markdown: (3072, 1.0, 200, 256 << 10)
        case .csv, .gzip: (32 << 10, 1.5, 300, 4 << 20)
        case .html: (16 << 10, 1.0, 500, 1 << 20)
        case .docx, .xlsx: (60 << 10, 1.0, 2048, 2 << 20)
        case .png: (160 << 10, 1.1, 2048, 6 << 20)
        case .bmp: (256 << 10, 1.0, 4096, 8 << 20)
        case .ppm: (200 << 10, 1.0, 4096, 6 << 20)
        case .zip, .targz: (48 << 10, 1.0, 1024, 4 << 20)
        case .sqlite: (256 << 10, 1.2, 8192, 8 << 20)
        case .records: (64 << 10, 1.2, 1024, 4 << 20)
        case .sourceTree: (8 << 10, 0.9, 400, 96 << 10)
        }
    }

    /// Top-level folders it is put in.
    var folders: [String] {
        switch self {
        case .text, .markdown, .html, .docx: ["Documents", "Documents", "Desktop"]
        case .csv, .xlsx: ["Documents", "Data"]
        case .png, .bmp, .ppm: ["Pictures", "Pictures", "Downloads"]
        case .zip, .gzip, .targz: ["Archives", "Downloads"]
        case .sqlite, .records: ["Data", "Data", "Documents"]
        case .sourceTree: ["Projects"]
        }
    }
}

/// What `CorpusBuilder.build` made.
public struct CorpusSummary: Sendable {
    public struct Group: Sendable {
        public var name: String
        public var files: Int
        public var bytes: UInt64
    }

    public var directory: String
    public var seed: UInt64
    public var files: Int
    public var bytes: UInt64
    public var directories: Int
    /// By category, in name order.
    public var byCategory: [Group]
    /// By kind, in name order.
    public var byKind: [Group]
    public var largestFile: UInt64
    public var smallestFile: UInt64
}

/// Builds a victim corpus: the same seed and size give byte-identical files.
public struct CorpusBuilder {
    public let seed: UInt64
    public let targetBytes: UInt64

    public init(seed: UInt64, sizeMiB: Int) {
        self.seed = seed
        self.targetBytes = UInt64(max(1, sizeMiB)) << 20
    }

    private struct Plan {
        var rng: SeededRandom
        var subfolders: [String: [String]] = [:]
        var used: Set<String> = []
        var written: [Manifest.Entry] = []
        /// The kind of each written file, in write order.
        var kindOfFile: [CorpusFileKind] = []
    }

    /// Writes the corpus into `path` (created if missing; it must be empty but for `lost+found`).
    public func build(into path: String) throws(WorkloadError) -> CorpusSummary {
        let absolute = FileSystem.absolutePath(path)
        if !FileSystem.exists(absolute) {
            do { try FileSystem.createDirectory(absolute) } catch { throw .system(error) }
        }
        let dir = try CorpusDirectory(path: path, requireMarker: false)
        let existing: [String]
        do { existing = try FileSystem.list(dir.root) } catch { throw .system(error) }
        // A fresh file system's lost+found is the one thing allowed to be there already.
        if existing.contains(where: { $0 != "lost+found" }) { throw .directoryNotEmpty(directory: path) }

        var plan = Plan(rng: SeededRandom(seed: seed))
        var total: UInt64 = 0
        var index: UInt64 = 0
        let kinds = CorpusFileKind.allCases
        while total < targetBytes {
            let kind = index < UInt64(kinds.count) ? kinds[Int(index)] : kinds[plan.rng.weighted(kinds.map(\.weight))]
            var rng = plan.rng.derived(index)
            index += 1
            let remaining = targetBytes - total
            let before = plan.written.count
            try make(kind, remaining: remaining, rng: &rng, plan: &plan, dir: dir)
            total += plan.written[before...].reduce(UInt64(0)) { $0 + $1.size }
        }
        let manifest = Manifest(entries: plan.written)
        try dir.write(Manifest.fileName, Array(manifest.text.utf8))
        // Everything durable before the marker says the corpus is complete.
        do { try FileSystem.syncFileSystem(containing: dir.root) } catch { throw .system(error) }
        try dir.write(CorpusMarker.fileName, Array(CorpusMarker(seed: seed, sizeMiB: Int(targetBytes >> 20)).json.utf8), sync: true)
        try dir.syncDirectory("")
        let dirs = try dir.directories()

        func groups(_ key: (CorpusFileKind) -> String) -> [CorpusSummary.Group] {
            var g: [String: CorpusSummary.Group] = [:]
            for (k, e) in zip(plan.kindOfFile, plan.written) {
                g[key(k), default: .init(name: key(k), files: 0, bytes: 0)].files += 1
                g[key(k)]?.bytes += e.size
            }
            return g.values.sorted { $0.name < $1.name }
        }
        let sizes = plan.written.map(\.size)
        return CorpusSummary(
            directory: dir.root, seed: seed, files: plan.written.count, bytes: sizes.reduce(0, +),
            directories: dirs.count - 1,
            byCategory: groups { $0.category },
            byKind: groups { $0.rawValue },
            largestFile: sizes.max() ?? 0, smallestFile: sizes.min() ?? 0)
    }

    private func sample(_ kind: CorpusFileKind, _ rng: inout SeededRandom, remaining: UInt64) -> Int {
        let m = kind.sizeModel
        let cap = min(m.max, max(64 << 10, Int(targetBytes / 6)))
        let raw = Double(m.median) * exp(m.sigma * rng.normal())
        let bounded = min(Double(cap), max(Double(m.min), raw))
        return min(Int(bounded), max(m.min, Int(min(remaining, UInt64(Int.max))) + m.min))
    }

    /// A folder for `kind`: an existing subfolder of one of its top folders, or a new (possibly nested) one.
    private func folder(for kind: CorpusFileKind, _ rng: inout SeededRandom, _ plan: inout Plan) -> String {
        let top = rng.pick(kind.folders)
        var subs = plan.subfolders[top] ?? []
        if kind != .sourceTree && (subs.isEmpty ? rng.chance(0.7) : rng.chance(0.2)) {
            var g = TextGenerator(rng: rng.derived(7))
            let parent = !subs.isEmpty && rng.chance(0.4) ? rng.pick(subs) : top
            let depth = parent.split(separator: "/").count
            let name = depth < 4 ? g.title() : g.slug()
            let sub = parent + "/" + (top == "Pictures" ? "\(rng.int(2015...2025)) \(name)" : name)
            subs.append(sub)
            plan.subfolders[top] = subs
            return sub
        }
        if !subs.isEmpty && rng.chance(0.8) { return rng.pick(subs) }
        return top
    }

    private func unique(_ path: String, _ plan: inout Plan) -> String {
        var candidate = path
        var n = 2
        while plan.used.contains(candidate) {
            if let dot = path.lastIndex(of: "."), !path[dot...].contains("/") {
                candidate = String(path[..<dot]) + " (\(n))" + String(path[dot...])
            } else {
                candidate = path + "-\(n)"
            }
            n += 1
        }
        plan.used.insert(candidate)
        return candidate
    }

    private func emit(_ path: String, _ bytes: [UInt8], _ kind: CorpusFileKind, _ plan: inout Plan, _ dir: CorpusDirectory) throws(WorkloadError) {
        let p = unique(path, &plan)
        try dir.write(p, bytes)
        plan.written.append(Manifest.Entry(path: p, size: UInt64(bytes.count), sha256: Manifest.digest(bytes)))
        plan.kindOfFile.append(kind)
    }

    private func make(_ kind: CorpusFileKind, remaining: UInt64, rng: inout SeededRandom, plan: inout Plan, dir: CorpusDirectory) throws(WorkloadError) {
        var g = TextGenerator(rng: rng.derived(1))
        let size = sample(kind, &rng, remaining: remaining)
        let folder = folder(for: kind, &rng, &plan)
        func docName(_ ext: String) -> String {
            var base = g.slug(rng.int(1...3), separator: rng.chance(0.5) ? "-" : "_")
            if rng.chance(0.3) { base += "-\(rng.int(2018...2025))" }
            if rng.chance(0.15) { base = "Copy of " + base }
            return folder + "/" + base + "." + ext
        }
        switch kind {
        case .text: try emit(docName(rng.pick(["txt", "txt", "log", "text"])), g.plainText(size: size), kind, &plan, dir)
        case .markdown: try emit(docName("md"), g.markdown(size: size), kind, &plan, dir)
        case .csv: try emit(docName("csv"), g.csv(size: size), kind, &plan, dir)
        case .html: try emit(docName(rng.pick(["html", "htm"])), g.html(size: size), kind, &plan, dir)
        case .docx: try emit(docName("docx"), try OfficeFiles.docx(&g, size: size * 3), kind, &plan, dir)
        case .xlsx: try emit(docName("xlsx"), try OfficeFiles.xlsx(&g, size: size * 4), kind, &plan, dir)
        case .png, .bmp, .ppm:
            let raw = kind == .png ? size * 5 / 3 : size
            let (w, h) = RGBImage.dimensions(rawBytes: raw)
            let image = RGBImage(width: w, height: h, noise: rng.int(6...14), rng: &rng)
            let stem = rng.pick(["IMG_", "DSC", "scan-", "photo-", "PXL_"]) + String(rng.int(1000...9999))
            let bytes = kind == .png ? try image.png() : kind == .bmp ? image.bmp() : image.ppm()
            try emit(folder + "/" + stem + "." + (kind == .png ? "png" : kind == .bmp ? "bmp" : "ppm"), bytes, kind, &plan, dir)
        case .zip, .targz:
            var members: [(name: String, data: [UInt8])] = []
            var sum = 0
            let top = g.slug(2)
            while sum < size * 3 || members.count < 2 {
                let part = max(200, size / rng.int(2...8))
                let (ext, data): (String, [UInt8]) = switch rng.below(4) {
                case 0: ("csv", g.csv(size: part))
                case 1: ("md", g.markdown(size: part))
                case 2: ("html", g.html(size: part))
                default: ("txt", g.plainText(size: part))
                }
                members.append((top + "/" + g.slug() + "-\(members.count + 1)." + ext, data))
                sum += data.count
            }
            if kind == .zip {
                try emit(docName("zip"), try ZipWriter.archive(members), kind, &plan, dir)
            } else {
                try emit(docName("tar.gz"), try Zlib.deflate(Tar.archive(members), level: 6, format: .gzip), kind, &plan, dir)
            }
        case .gzip:
            let data = rng.chance(0.5) ? g.csv(size: size * 4) : g.plainText(size: size * 3)
            try emit(docName(rng.chance(0.5) ? "csv.gz" : "log.gz"), try Zlib.deflate(data, level: 6, format: .gzip), kind, &plan, dir)
        case .sqlite: try emit(docName(rng.pick(["sqlite", "db"])), DatabaseFiles.sqliteLike(&g, size: size), kind, &plan, dir)
        case .records: try emit(docName(rng.pick(["dat", "bin", "idx"])), DatabaseFiles.records(&g, size: size), kind, &plan, dir)
        case .sourceTree:
            let project = folder + "/" + g.slug(rng.int(1...2))
            let swift = rng.chance(0.3)
            var budget = Int(min(remaining, UInt64(max(32 << 10, Int(targetBytes / 24)))))
            try emit(project + "/README.md", g.markdown(size: rng.int(400...4000)), kind, &plan, dir)
            var modules = ["core", "util"]
            for _ in 0..<rng.int(2...6) { modules.append(g.word()) }
            var n = 0
            while budget > 0 && n < 40 {
                let module = rng.pick(modules)
                let name = g.slug(rng.int(1...2), separator: "_")
                let fileSize = sample(.sourceTree, &rng, remaining: UInt64(budget))
                let bytes: [UInt8]
                let path: String
                if swift {
                    let typeName = name.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
                    path = project + "/Sources/" + module.prefix(1).uppercased() + module.dropFirst() + "/" + typeName + ".swift"
                    bytes = g.swiftSource(size: fileSize, typeName: typeName)
                } else if rng.chance(0.3) {
                    path = project + "/include/" + module + "/" + name + ".h"
                    bytes = g.cHeader(module: name)
                } else {
                    path = project + "/src/" + module + "/" + name + ".c"
                    bytes = g.cSource(size: fileSize, module: name)
                }
                try emit(path, bytes, kind, &plan, dir)
                budget -= bytes.count
                n += 1
            }
            let build = swift
                ? "// swift-tools-version: 5.9\nimport PackageDescription\n\nlet package = Package(name: \"\(g.word())\", targets: [\(modules.map { ".target(name: \"\($0.prefix(1).uppercased() + $0.dropFirst())\")" }.joined(separator: ", "))])\n"
                : "CC ?= cc\nCFLAGS ?= -O2 -Wall -Iinclude\nSRC := $(wildcard src/*/*.c)\nOBJ := $(SRC:.c=.o)\n\nall: \(g.word())\n\n\(g.word()): $(OBJ)\n\t$(CC) -o $@ $^\n\nclean:\n\trm -f $(OBJ)\n"
            try emit(project + (swift ? "/Package.swift" : "/Makefile"), Array(build.utf8), kind, &plan, dir)
        }
    }
}
