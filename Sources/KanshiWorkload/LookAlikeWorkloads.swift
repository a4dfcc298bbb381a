import KanshiSystem

/// Legitimate programs that change many files the way ransomware does in one respect:
/// a package manager installing and upgrading a program (many new high-entropy files, each
/// file replaced by a rename), and an editor saving big files (read a file, write it again
/// under a temporary name, rename it over the original).
enum LookAlikeWorkloads {
    /// Installs version 1 of a program under `Programs/<name>` (binaries as deflated
    /// random-looking data, libraries, configuration text), then upgrades it to version 2 as
    /// dpkg does: each file written beside itself as NAME.dpkg-new, fsynced, renamed over NAME.
    static func packageInstall(_ run: WorkloadRun) throws(WorkloadError) {
        let names = ["kestrel", "larch", "marten", "nettle", "osprey", "plover"]
        let root = run.freshPath("Programs/" + run.rng.pick(names))
        let files = max(4, min(run.options.maxFiles ?? 60, 200))
        var text = TextGenerator(rng: run.rng.derived(7))
        var installed: [String] = []
        func content(_ i: Int, version: Int) throws(WorkloadError) -> [UInt8] {
            switch i % 4 {
            case 0, 1:  // executables and libraries: compressed, close to random
                var r = run.rng.derived(UInt64(i * 10 + version))
                let raw = (0..<run.rng.int(16...160)).flatMap { _ in r.bytes(256) + Array(repeating: UInt8(r.below(4)), count: 256) }
                return try Zlib.deflate(raw)
            case 2:
                return Array((0..<run.rng.int(5...40)).map { _ in "\(text.word())=\(text.word()) # \(text.sentence())\n" }.joined().utf8)
            default:
                return Array(text.paragraph().utf8)
            }
        }
        let kinds = ["bin", "lib", "etc", "share"]
        for i in 0..<files {
            let path = "\(root)/\(kinds[i % 4])/\(text.word())-\(i)\(i % 4 == 1 ? ".so" : i % 4 == 2 ? ".conf" : i % 4 == 3 ? ".txt" : "")"
            try run.create(path, try content(i, version: 1))
            installed.append(path)
        }
        for (i, path) in installed.enumerated() {
            try run.save(path, try content(i, version: 2), through: path + ".dpkg-new")
        }
        run.report.outputs.append(root)
    }

    /// Saves --count (default 3) of the biggest files as an editor does: reads one, changes a
    /// few stretches of it, writes the result to `.NAME.kanshi-save`, fsyncs it and renames it
    /// over the original.
    static func saveBig(_ run: WorkloadRun) throws(WorkloadError) {
        let files = try run.candidateFiles().sorted { ($0.size, $1.path) > ($1.size, $0.path) }
        for f in files.prefix(max(0, run.options.count ?? 3)) {
            var bytes = try run.read(f.path)
            for _ in 0..<run.rng.int(1...4) where bytes.count > 64 {
                let at = run.rng.below(bytes.count - 32)
                let n = min(bytes.count - at, run.rng.int(32...4096))
                let patch = run.rng.bytes(n)
                bytes.replaceSubrange(at..<(at + n), with: patch)
            }
            let folder = run.dir.parent(of: f.path)
            let base = f.path.split(separator: "/").last.map(String.init) ?? f.path
            let temp = (folder.isEmpty ? "" : folder + "/") + "." + base + ".kanshi-save"
            try run.save(f.path, bytes, through: temp)
        }
    }
}
