import Foundation
import KanshiSystem
import Testing
@testable import KanshiWorkload

@Suite struct CorpusTests {
    @Test func sameSeedSameFilesOtherSeedOtherFiles() throws {
        let tmp = TempDir()
        let a = try smallCorpus(tmp, name: "a", seed: 11)
        let b = try smallCorpus(tmp, name: "b", seed: 11)
        let c = try smallCorpus(tmp, name: "c", seed: 12)
        #expect(try manifest(a) == manifest(b))
        #expect(contents(a + "/.kanshi-manifest") == contents(b + "/.kanshi-manifest"))
        #expect(try manifest(a).entries.map(\.sha256) != manifest(c).entries.map(\.sha256))
        let marker = try CorpusMarker(json: String(decoding: contents(a + "/.kanshi-corpus"), as: UTF8.self))
        #expect(marker.seed == 11 && marker.version == CorpusMarker.currentVersion)
    }

    @Test func corpusHasEveryKindSizesAndNesting() throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 3, sizeMiB: 4)
        let m = try manifest(dir)
        let paths = m.entries.map(\.path)
        for ext in [".txt", ".md", ".csv", ".html", ".docx", ".xlsx", ".png", ".bmp", ".ppm", ".zip", ".tar.gz", ".c", ".h"] {
            #expect(paths.contains { $0.hasSuffix(ext) }, "no \(ext) file")
        }
        #expect(paths.contains { $0.hasSuffix(".sqlite") || $0.hasSuffix(".db") })
        let sizes = m.entries.map(\.size)
        let total = sizes.reduce(0, +)
        #expect(total >= 4 << 20 && total < 6 << 20)
        #expect(sizes.min()! < 1024 && sizes.max()! > 256 << 10)
        // Long tail: most files are small, a few are large.
        #expect(sizes.filter { $0 < 32 << 10 }.count > sizes.count / 2)
        #expect(paths.map { $0.split(separator: "/").count }.max()! >= 4)
        // Plain text reads as words.
        let text = paths.first { $0.hasSuffix(".txt") }!
        let words = String(decoding: contents(dir + "/" + text), as: UTF8.self).split(separator: " ")
        #expect(words.count > 10)
    }

    @Test func buildRefusesANonEmptyDirectory() throws {
        let tmp = TempDir()
        _ = FileManager.default.createFile(atPath: tmp.path + "/x", contents: Data("x".utf8))
        #expect(throws: WorkloadError.self) { try CorpusBuilder(seed: 1, sizeMiB: 1).build(into: tmp.path) }
        #expect(contents(tmp.path + "/x") == Array("x".utf8))
        // A fresh file system's root (only lost+found) is fine.
        let mount = tmp.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mount + "/lost+found", withIntermediateDirectories: true)
        let summary = try CorpusBuilder(seed: 1, sizeMiB: 1).build(into: mount)
        #expect(summary.files > 0)
        #expect(try verify(mount).allIntact)
    }

    @Test func pngFilesAreValid() throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 5)
        let pngs = try manifest(dir).entries.filter { $0.path.hasSuffix(".png") }
        #expect(!pngs.isEmpty)
        for e in pngs {
            let b = contents(dir + "/" + e.path)
            #expect(Array(b[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
            var at = 8
            var idat: [UInt8] = []
            var width = 0, height = 0
            var types: [String] = []
            while at < b.count {
                let len = Int(b.be32(at))
                let type = String(decoding: b[at + 4..<at + 8], as: UTF8.self)
                let crc = b.be32(at + 8 + len)
                #expect(Zlib.crc32(Array(b[at + 4..<at + 8 + len])) == crc, "bad CRC in \(type) of \(e.path)")
                if type == "IHDR" {
                    width = Int(b.be32(at + 8)); height = Int(b.be32(at + 12))
                    #expect(b[at + 16] == 8 && b[at + 17] == 2)
                }
                if type == "IDAT" { idat += b[at + 8..<at + 8 + len] }
                types.append(type)
                at += 12 + len
            }
            #expect(at == b.count)
            #expect(types.first == "IHDR" && types.last == "IEND")
            let raw = try Zlib.inflate(idat, format: .zlib)
            #expect(raw.count == (width * 3 + 1) * height)
            #expect((0..<height).allSatisfy { raw[$0 * (width * 3 + 1)] <= 4 })
            // Photo-like: compresses, but not to nothing.
            let ratio = Double(b.count) / Double(width * height * 3)
            #expect(ratio > 0.25 && ratio < 0.95, "\(e.path) ratio \(ratio)")
        }
    }

    @Test func bmpAndPpmHeadersMatchTheirSizes() throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 5)
        let entries = try manifest(dir).entries
        let bmps = entries.filter { $0.path.hasSuffix(".bmp") }, ppms = entries.filter { $0.path.hasSuffix(".ppm") }
        #expect(!bmps.isEmpty && !ppms.isEmpty)
        for e in bmps {
            let b = contents(dir + "/" + e.path)
            #expect(b[0] == 0x42 && b[1] == 0x4D)
            #expect(Int(b.le32(2)) == b.count)
            #expect(b.le32(10) == 54 && b.le32(14) == 40 && b.le16(28) == 24)
            let w = Int(b.le32(18)), h = Int(b.le32(22))
            let rowBytes = (w * 3 + 3) & ~3
            #expect(Int(b.le32(34)) == rowBytes * h)
            #expect(54 + rowBytes * h == b.count)
        }
        for e in ppms {
            let b = contents(dir + "/" + e.path)
            let lines = b.split(separator: UInt8(ascii: "\n"), maxSplits: 3, omittingEmptySubsequences: false)
            #expect(String(decoding: lines[0], as: UTF8.self) == "P6")
            let dims = String(decoding: lines[2], as: UTF8.self).split(separator: " ").compactMap { Int($0) }
            let headerBytes = lines[0].count + lines[1].count + lines[2].count + 3 + "255\n".count
            #expect(String(decoding: lines[3].prefix(3), as: UTF8.self) == "255")
            #expect(b.count == headerBytes + dims[0] * dims[1] * 3)
        }
    }

    @Test func archivesAreValid() throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 5)
        let entries = try manifest(dir).entries
        let zips = entries.filter { $0.path.hasSuffix(".zip") || $0.path.hasSuffix(".docx") || $0.path.hasSuffix(".xlsx") }
        let gzips = entries.filter { $0.path.hasSuffix(".gz") }
        #expect(!zips.isEmpty && !gzips.isEmpty)
        let haveUnzip = FileManager.default.isExecutableFile(atPath: "/usr/bin/unzip")
        let havePython = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
        try #require(haveUnzip || havePython, "needs unzip or python3 to check zip files")
        for e in zips {
            let path = dir + "/" + e.path
            if haveUnzip {
                #expect(runTool("/usr/bin/unzip", ["-tq", path]) == 0, "unzip -t \(e.path)")
            } else {
                #expect(runTool("/usr/bin/python3", ["-c", "import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)", path]) == 0)
            }
        }
        for e in gzips {
            let path = dir + "/" + e.path
            #expect(try !Zlib.inflate(contents(path), format: .gzip).isEmpty)
            if let rc = runTool("/bin/gzip", ["-t", path]) { #expect(rc == 0, "gzip -t \(e.path)") }
            if e.path.hasSuffix(".tar.gz"), let rc = runTool("/bin/tar", ["-tzf", path]) { #expect(rc == 0, "tar -t \(e.path)") }
        }
    }

    @Test func verifyFindsModifiedMissingAndExtraFiles() throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp)
        let clean = try verify(dir)
        #expect(clean.allIntact && clean.extra.isEmpty && clean.bytesLost == 0)
        let entries = try manifest(dir).entries.filter { $0.size > 10 }
        let changed = entries[0], gone = entries[1]
        let h = FileHandle(forUpdatingAtPath: dir + "/" + changed.path)!
        h.seek(toFileOffset: 5)
        h.write(Data([contents(dir + "/" + changed.path)[5] ^ 0xFF]))
        h.closeFile()
        try FileManager.default.removeItem(atPath: dir + "/" + gone.path)
        _ = FileManager.default.createFile(atPath: dir + "/Documents/new.txt", contents: Data("new".utf8))
        let r = try verify(dir)
        #expect(r.modified == [changed.path])
        #expect(r.missing == [gone.path])
        #expect(r.extra == ["Documents/new.txt"])
        #expect(r.bytesLost == changed.size + gone.size)
        #expect(!r.allIntact)
        #expect(r.intact.count == (try manifest(dir).entries.count) - 2)
    }

    @Test func pathsCannotLeaveTheDirectory() throws {
        let tmp = TempDir()
        let dir = try CorpusDirectory(path: try smallCorpus(tmp, sizeMiB: 1), requireMarker: true)
        for bad in ["../x", "Documents/../../x", "/etc/passwd", "", "a//b", "./x"] {
            #expect(throws: WorkloadError.self, "\(bad)") { try dir.resolve(bad) }
        }
        try FileManager.default.createSymbolicLink(atPath: dir.root + "/out", withDestinationPath: tmp.path)
        #expect(throws: WorkloadError.self) { try dir.resolve("out/x") }
        #expect(throws: WorkloadError.self) { try dir.resolve("out") }
    }
}
