import Crypto
import _CryptoExtras
import FoundationEssentials
import KanshiSystem

/// Legitimate programs whose disk activity resembles ransomware's in one way
/// or another: lots of reads and high-entropy writes, deletions, overwrites.
enum BenignWorkloads {
    static let documentExtensions = [".txt", ".md", ".csv", ".html", ".htm", ".log", ".text", ".docx", ".xlsx"]
    static let editableExtensions = [".txt", ".md", ".csv", ".html", ".htm", ".text"]

    static func isDocument(_ path: String) -> Bool { documentExtensions.contains { path.hasSuffix($0) } }

    /// Deflates documents into `Backups/documents-<seed>.zip`, streaming to disk.
    static func compress(_ run: WorkloadRun) throws(WorkloadError) {
        var sources = try run.candidateFiles { isDocument($0.path) && !$0.path.hasPrefix("Backups/") }
        if run.options.maxFiles == nil { sources = Array(sources.prefix(400)) }
        let out = run.freshPath("Backups/documents-\(run.options.seed).zip")
        let file = try run.openNew(out)
        final class Offset { var value: UInt64 = 0 }
        let offset = Offset()
        var zip = ZipWriter { (bytes: [UInt8]) throws(WorkloadError) in
            try run.append(file, out, bytes, at: offset.value)
            offset.value += UInt64(bytes.count)
        }
        for s in sources { try zip.add(name: s.path, data: try run.read(s.path)) }
        try zip.finish()
        run.report.outputs.append(out)
    }

    /// Encrypts one file with a password: PBKDF2-SHA256 (210,000 rounds, random
    /// salt) then AES-256-GCM, into FILE.aes; the original stays.
    static func encryptOne(_ run: WorkloadRun) throws(WorkloadError) {
        let path: String
        if let t = run.options.target {
            guard run.dir.isPrivateRegularFile(t) else { throw .badOption("--target \(t) is not a regular file inside \(run.dir.root)") }
            path = t
        } else {
            let docs = try run.candidateFiles { isDocument($0.path) }
            guard !docs.isEmpty else { throw .badOption("no document to encrypt in \(run.dir.root)") }
            path = run.rng.pick(docs).path
        }
        let plain = try run.read(path)
        let salt = Array(SymmetricKey(size: .bits128).withUnsafeBytes { Data($0) })
        let rounds = 210_000
        let key: SymmetricKey
        let box: AES.GCM.SealedBox
        do {
            key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(run.options.password.utf8), salt: salt, using: .sha256,
                                                      outputByteCount: 32, rounds: rounds)
            box = try AES.GCM.seal(plain, using: key)
        } catch { throw .crypto("\(error)") }
        guard let combined = box.combined else { throw .crypto("no combined form") }
        var out: [UInt8] = Array("KANSHI-AES1".utf8)
        out.appendLE32(UInt32(rounds))
        out += salt
        out += Array(combined)
        let target = run.freshPath(path + ".aes")
        try run.create(target, out)
        run.report.outputs.append(target)
    }

    /// shred -u: random pass, zero pass (each fsynced), then unlink.
    static func secureDelete(_ run: WorkloadRun) throws(WorkloadError) {
        var files = try run.candidateFiles()
        run.rng.shuffle(&files)
        for f in files.prefix(max(0, run.options.count ?? 3)) {
            let chunk = 1 << 20
            for pass in 0..<2 {
                var done: UInt64 = 0
                repeat {
                    let n = Int(min(UInt64(chunk), f.size - done))
                    let bytes = pass == 0 ? run.rng.bytes(n) : [UInt8](repeating: 0, count: n)
                    try run.overwrite(f.path, bytes, at: done, sync: done + UInt64(n) >= f.size)
                    done += UInt64(n)
                } while done < f.size
            }
            try run.delete(f.path)
        }
    }

    /// Compiles every project: an object file per source file, then a linked binary.
    static func build(_ run: WorkloadRun) throws(WorkloadError) {
        let sources = try run.candidateFiles { e in
            (e.path.hasSuffix(".c") || e.path.hasSuffix(".swift")) && !e.path.contains("/build/")
                && (e.path.contains("/src/") || e.path.contains("/Sources/"))
        }
        var projects: [String] = []
        var objects: [String: [[UInt8]]] = [:]
        for s in sources {
            let marker = s.path.firstRange(of: "/src/") ?? s.path.firstRange(of: "/Sources/")
            guard let marker else { continue }
            let project = String(s.path[..<marker.lowerBound])
            let inside = String(s.path[marker.upperBound...])
            let source = try run.read(s.path)
            // Headers are read too, as the preprocessor would.
            if s.path.hasSuffix(".c") {
                for line in source.split(separator: UInt8(ascii: "\n")).prefix(20) where line.starts(with: Array("#include \"".utf8)) {
                    let name = String(decoding: line.dropFirst(10).prefix { $0 != UInt8(ascii: "\"") }, as: UTF8.self)
                    let module = inside.split(separator: "/").first.map(String.init) ?? ""
                    let header = project + "/include/" + module + "/" + name
                    if run.dir.isPrivateRegularFile(header) { _ = try run.read(header) }
                }
            }
            let object = ObjectCode.object(for: source, rng: &run.rng)
            let dot = inside.lastIndex(of: ".") ?? inside.endIndex
            let objPath = project + "/build/obj/" + inside[..<dot] + ".o"
            try run.create(objPath, object)
            try run.create(project + "/build/obj/" + inside[..<dot] + ".d",
                           Array("build/obj/\(inside[..<dot]).o: \(s.path.dropFirst(project.count + 1))\n".utf8))
            if objects[project] == nil { projects.append(project) }
            objects[project, default: []].append(object)
        }
        for p in projects {
            let name = p.split(separator: "/").last.map(String.init) ?? "a.out"
            let binary = ObjectCode.link(objects[p] ?? [])
            try run.create(p + "/build/" + name, binary)
            run.report.outputs.append(p + "/build/" + name)
        }
    }

    /// Copies a folder to "FOLDER copy" file by file.
    static func copyTree(_ run: WorkloadRun) throws(WorkloadError) {
        let source: String
        if let t = run.options.target {
            let trimmed = String(t.drop { $0 == "/" }.reversed().drop { $0 == "/" }.reversed())
            guard let p = try? run.dir.resolve(trimmed), FileSystem.isDirectory(p) else {
                throw .badOption("--target \(t) is not a folder inside \(run.dir.root)")
            }
            source = trimmed
        } else {
            let tops = try run.dir.directories().filter { !$0.isEmpty && !$0.contains("/") && !$0.hasSuffix(" copy") }
            guard !tops.isEmpty else { throw .badOption("no folder to copy in \(run.dir.root)") }
            source = run.rng.pick(tops)
        }
        let destination = run.freshPath(source + " copy")
        var files = try run.dir.files(under: source)
        if let m = run.options.maxFiles { files = Array(files.prefix(max(0, m))) }
        for f in files {
            let bytes = try run.read(f.path)
            try run.create(destination + f.path.dropFirst(source.count), bytes)
        }
        run.report.outputs.append(destination)
    }

    /// An editor saving: read, change a few paragraphs, write ".NAME.swp" beside it, fsync, rename over.
    static func edit(_ run: WorkloadRun) throws(WorkloadError) {
        var docs = try run.candidateFiles { e in editableExtensions.contains { e.path.hasSuffix($0) } }
        run.rng.shuffle(&docs)
        var text = TextGenerator(rng: run.rng.derived(99))
        for d in docs.prefix(max(0, run.options.count ?? 5)) {
            var lines = try run.read(d.path).split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map(Array.init)
            for _ in 0..<run.rng.int(1...3) {
                let at = lines.isEmpty ? 0 : run.rng.below(lines.count)
                let new = Array(text.sentence().utf8)
                if run.rng.chance(0.5) && !lines.isEmpty { lines[at] = new } else { lines.insert(new, at: at) }
            }
            lines.append(Array("Edited \(text.date()) by \(text.name()).".utf8))
            let edited = Array(lines.joined(separator: [UInt8(ascii: "\n")]))
            let folder = run.dir.parent(of: d.path)
            let base = d.path.split(separator: "/").last.map(String.init) ?? d.path
            let temp = (folder.isEmpty ? "" : folder + "/") + "." + base + ".swp"
            try run.save(d.path, edited, through: temp)
        }
    }
}

/// The `encrypt-one` file format: "KANSHI-AES1", rounds (LE32), 16-byte salt, AES-GCM combined box.
public enum PasswordFile {
    /// Decrypts what `encryptOne` wrote (for tests and for the curious).
    public static func decrypt(_ bytes: [UInt8], password: String) throws(WorkloadError) -> [UInt8] {
        let magic = Array("KANSHI-AES1".utf8)
        guard bytes.count > magic.count + 4 + 16 + 28, Array(bytes[0..<magic.count]) == magic else {
            throw .crypto("not a KANSHI-AES1 file")
        }
        let rounds = Int(bytes.le32(magic.count))
        let salt = Array(bytes[(magic.count + 4)..<(magic.count + 20)])
        do {
            let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                          outputByteCount: 32, rounds: rounds)
            let box = try AES.GCM.SealedBox(combined: bytes[(magic.count + 20)...])
            return Array(try AES.GCM.open(box, using: key))
        } catch { throw .crypto("\(error)") }
    }

}
