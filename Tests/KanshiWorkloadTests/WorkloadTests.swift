import Foundation
import KanshiSystem
import Testing
@testable import KanshiWorkload

@Suite struct WorkloadTests {
    static let ransomware = ["inplace", "copy-delete", "rename", "partial", "slow"]
    static let benign = ["compress", "encrypt-one", "secure-delete", "database", "build", "copy-tree", "edit", "package-install", "save-big"]

    static func options(seed: UInt64 = 3) -> WorkloadOptions {
        var o = WorkloadOptions()
        o.seed = seed
        o.rateMiB = 512
        o.databaseMiB = 2
        o.transactions = 40
        return o
    }

    @Test func catalogueListsEveryWorkloadOnce() {
        #expect(Workloads.all.map(\.name).sorted() == (Self.ransomware + Self.benign).sorted())
        #expect(Workloads.all.filter { $0.workloadClass == .ransomware }.map(\.name).sorted() == Self.ransomware.sorted())
    }

    @Test(arguments: ransomware)
    func ransomwareLeavesNothingReadable(name: String) throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 21)
        let before = try manifest(dir)
        let report = try Workloads.run(name, directory: dir, options: Self.options())
        #expect(report.workloadClass == .ransomware && report.bytesWritten > 0)
        let r = try verify(dir)
        #expect(r.intact.isEmpty, "\(r.intact.count) files still intact")
        #expect(r.bytesLost == before.entries.reduce(0) { $0 + $1.size })
        let notes = r.extra.filter { $0.hasSuffix(Ransomware.noteName) }
        #expect(notes.count == Set(before.entries.map { CorpusDirectory.parentPath($0.path) }).count)
        // What replaced the files looks random.
        var encrypted: [String]
        switch name {
        case "copy-delete":
            #expect(r.missing.count == before.entries.count)
            encrypted = r.extra.filter { $0.hasSuffix(".enc") }
        case "rename":
            #expect(r.missing.count == before.entries.count)
            encrypted = r.extra.filter { $0.hasSuffix(".locked") }
        default:
            #expect(r.modified.count == before.entries.count)
            encrypted = r.modified
        }
        #expect(encrypted.count == before.entries.count)
        for p in encrypted {
            let b = contents(dir + "/" + p)
            let head = b.prefix(4096)
            if head.count >= 4096 { #expect(entropy(head) > 7.9, "\(p): entropy \(entropy(head))") }
        }
        if name == "partial" {
            // Only the head changed: the rest of a large file is as it was.
            let large = before.entries.first { $0.size > 64 << 10 && !$0.path.hasSuffix(".png") && !$0.path.hasSuffix(".gz") && !$0.path.hasSuffix(".zip") }!
            let b = contents(dir + "/" + large.path)
            #expect(entropy(b[8192..<65536]) < 7.5)
        }
    }

    @Test(arguments: benign)
    func benignLeavesTheCorpusMostlyIntact(name: String) throws {
        let tmp = TempDir()
        let dir = try smallCorpus(tmp, seed: 22)
        let before = try manifest(dir)
        let report = try Workloads.run(name, directory: dir, options: Self.options())
        #expect(report.workloadClass == .benign && report.bytesWritten > 0)
        let r = try verify(dir)
        // At most a handful of the corpus' files change (the ones the workload is about).
        #expect(r.modified.count + r.missing.count <= 5 && r.intact.count >= before.entries.count - 5)
        switch name {
        case "secure-delete":
            #expect(r.missing.count == 3 && r.modified.isEmpty && r.extra.isEmpty)
        case "edit":
            #expect(r.modified.count == 5 && r.missing.isEmpty && r.extra.isEmpty)
        case "encrypt-one":
            #expect(r.allIntact && r.extra.count == 1)
            let out = report.outputs[0]
            let original = String(out.dropLast(4))
            #expect(try PasswordFile.decrypt(contents(dir + "/" + out), password: WorkloadOptions().password) == contents(dir + "/" + original))
            #expect(throws: WorkloadError.self) { try PasswordFile.decrypt(contents(dir + "/" + out), password: "wrong") }
        case "compress":
            #expect(r.allIntact && r.extra.count == 1)
            let zip = dir + "/" + report.outputs[0]
            #expect(contents(zip).count < Int(report.bytesRead))
            if let rc = runTool("/usr/bin/unzip", ["-tq", zip]) { #expect(rc == 0) }
        case "database":
            #expect(r.allIntact && r.extra == ["Data/kanshi-app.db"])
            #expect(contents(dir + "/Data/kanshi-app.db").count == 2 << 20)
        case "build":
            #expect(r.allIntact && r.extra.contains { $0.hasSuffix(".o") })
            for o in r.extra where o.hasSuffix(".o") {
                let b = contents(dir + "/" + o)
                #expect(b.prefix(4) == [0x7F, 0x45, 0x4C, 0x46])
                if b.count > 4096 { #expect(entropy(b) < 7.0) }
            }
        case "copy-tree":
            #expect(r.allIntact && r.extra.count == report.filesRead)
            let copy = report.outputs[0]
            let source = String(copy.dropLast(" copy".count))
            for f in r.extra { #expect(contents(dir + "/" + f) == contents(dir + "/" + source + f.dropFirst(copy.count))) }
        case "package-install":
            // Installed and upgraded in its own folder: no corpus file touched, no .dpkg-new left.
            #expect(r.allIntact && !r.extra.isEmpty && r.extra.allSatisfy { $0.hasPrefix("Programs/") && !$0.hasSuffix(".dpkg-new") })
            #expect(report.filesRenamed == r.extra.count)
        case "save-big":
            // The three biggest files saved again under their names (a temporary file renamed over each).
            let biggest = before.entries.sorted { ($0.size, $1.path) > ($1.size, $0.path) }.prefix(3).map(\.path)
            #expect(Set(r.modified) == Set(biggest) && r.missing.isEmpty && r.extra.isEmpty)
            #expect(report.filesRenamed == 3)
        default:
            #expect(r.allIntact)
        }
    }

    @Test func choicesFollowTheSeed() throws {
        let tmp = TempDir()
        let a = try smallCorpus(tmp, name: "a", seed: 4), b = try smallCorpus(tmp, name: "b", seed: 4)
        _ = try Workloads.run("edit", directory: a, options: Self.options(seed: 9))
        _ = try Workloads.run("edit", directory: b, options: Self.options(seed: 9))
        #expect(snapshot(a) == snapshot(b))
        _ = try Workloads.run("secure-delete", directory: a, options: Self.options(seed: 10))
        _ = try Workloads.run("secure-delete", directory: b, options: Self.options(seed: 10))
        #expect(try verify(a).missing == verify(b).missing)
    }

    @Test func refusesWithoutMarkerAtRootAndThroughALink() throws {
        let tmp = TempDir()
        let plain = tmp.path + "/plain"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: plain + "/precious.txt", contents: Data("keep me".utf8))
        for name in Self.ransomware + Self.benign {
            #expect { try Workloads.run(name, directory: plain, options: Self.options()) } throws: { e in
                guard case WorkloadError.notACorpus = e else { return false }
                return "\(e)".contains(plain) && "\(e)".contains("kanshi corpus build")
            }
        }
        #expect(contents(plain + "/precious.txt") == Array("keep me".utf8))
        #expect { try Workloads.run("inplace", directory: "/", options: Self.options()) } throws: { e in
            guard case WorkloadError.refusedDirectory = e else { return false }
            return true
        }
        let corpus = try smallCorpus(tmp, sizeMiB: 1)
        try FileManager.default.createSymbolicLink(atPath: tmp.path + "/link", withDestinationPath: corpus)
        let before = snapshot(corpus)
        #expect { try Workloads.run("inplace", directory: tmp.path + "/link", options: Self.options()) } throws: { e in
            guard case WorkloadError.refusedDirectory = e else { return false }
            return true
        }
        #expect { try Workloads.run("inplace", directory: tmp.path + "/missing", options: Self.options()) } throws: { _ in true }
        #expect(snapshot(corpus) == before)
    }

    @Test func neverTouchesAnythingOutsideTheDirectory() throws {
        let tmp = TempDir()
        let corpus = try smallCorpus(tmp, name: "victim", sizeMiB: 1)
        let sibling = tmp.path + "/sibling"
        try FileManager.default.createDirectory(atPath: sibling + "/Documents", withIntermediateDirectories: true)
        for i in 0..<5 {
            _ = FileManager.default.createFile(atPath: sibling + "/Documents/file\(i).txt", contents: Data("outside \(i)\n".utf8))
        }
        _ = FileManager.default.createFile(atPath: sibling + "/hard.txt", contents: Data("hard linked".utf8))
        // Ways out: a link to the sibling folder, a link to a file, a hard link.
        try FileManager.default.createSymbolicLink(atPath: corpus + "/Documents/elsewhere", withDestinationPath: sibling)
        try FileManager.default.createSymbolicLink(atPath: corpus + "/Desktop-link.txt", withDestinationPath: sibling + "/Documents/file0.txt")
        try FileManager.default.linkItem(atPath: sibling + "/hard.txt", toPath: corpus + "/hard.txt")
        let before = snapshot(sibling)
        // Pointing a workload at a link is refused outright.
        var viaLink = Self.options()
        viaLink.target = "Desktop-link.txt"
        #expect(throws: WorkloadError.self) { try Workloads.run("encrypt-one", directory: corpus, options: viaLink) }
        viaLink.target = "Documents/elsewhere"
        #expect(throws: WorkloadError.self) { try Workloads.run("copy-tree", directory: corpus, options: viaLink) }
        viaLink.target = "Documents/elsewhere/Documents"
        #expect(throws: WorkloadError.self) { try Workloads.run("copy-tree", directory: corpus, options: viaLink) }
        viaLink.target = "../sibling"
        #expect(throws: WorkloadError.self) { try Workloads.run("copy-tree", directory: corpus, options: viaLink) }
        for name in ["edit", "compress", "build", "copy-tree", "encrypt-one", "database", "partial", "inplace", "rename", "copy-delete", "slow"] {
            var o = Self.options()
            if name == "copy-tree" { o.target = "Documents" }
            _ = try Workloads.run(name, directory: corpus, options: o)
        }
        var o = Self.options()
        o.count = 100_000
        _ = try Workloads.run("secure-delete", directory: corpus, options: o)
        #expect(snapshot(sibling) == before)
        #expect(contents(corpus + "/hard.txt") == Array("hard linked".utf8))
        // The links are still there, unfollowed.
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: corpus + "/Documents/elsewhere")) == sibling)
    }
}
