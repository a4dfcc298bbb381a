import Foundation
import KanshiWorkload
import Testing

/// The `kanshi` binary next to the test bundle (built with the package).
enum CLI {
    static let path: String? = {
        var url = Bundle.main.bundleURL
        while url.path != "/" {
            let candidate = url.appendingPathComponent("kanshi").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            url.deleteLastPathComponent()
        }
        return nil
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path!)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

@Suite(.enabled(if: CLI.path != nil, "the kanshi binary is not built next to the tests (run `swift build` first)"))
struct CLITests {
    @Test func corpusAndWorkloadCommands() throws {
        let tmp = TempDir()
        let dir = tmp.path + "/victim"
        let built = try CLI.run(["corpus", "build", "--dir", dir, "--seed", "9", "--size-mib", "1", "--json"])
        #expect(built.status == 0, "\(built.stderr)")
        let summary = try JSONSerialization.jsonObject(with: Data(built.stdout.utf8)) as? [String: Any]
        #expect((summary?["files"] as? Int ?? 0) > 10)
        #expect(try CLI.run(["corpus", "verify", "--dir", dir]).status == 0)
        // Another process (another hashing seed) builds the same bytes.
        let again = tmp.path + "/again"
        #expect(try CLI.run(["corpus", "build", "--dir", again, "--seed", "9", "--size-mib", "1"]).status == 0)
        #expect(contents(again + "/.kanshi-manifest") == contents(dir + "/.kanshi-manifest"))
        #expect(contents(again + "/.kanshi-corpus") == contents(dir + "/.kanshi-corpus"))

        let list = try CLI.run(["workload", "list"])
        #expect(list.status == 0)
        let lines = list.stdout.split(separator: "\n")
        #expect(lines.count == 14)
        #expect(lines.filter { $0.contains(" ransomware ") }.count == 5)
        // Scripts take the first word of each line: every name whole.
        #expect(lines.map { String($0.split(separator: " ")[0]) } == Workloads.all.map(\.name))
        #expect(try CLI.run(["workload", "--list"]).stdout == list.stdout)

        let edit = try CLI.run(["workload", "edit", "--dir", dir, "--count", "2", "--json"])
        #expect(edit.status == 0, "\(edit.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(edit.stdout.utf8)) as? [String: Any]
        #expect(report?["class"] as? String == "benign" && report?["filesRenamed"] as? Int == 2)

        let verify = try CLI.run(["corpus", "verify", "--dir", dir, "--json"])
        #expect(verify.status == 1)
        let v = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as? [String: Any]
        #expect((v?["modified"] as? [String])?.count == 2)

        let plain = tmp.path + "/plain"
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        let refused = try CLI.run(["workload", "inplace", "--dir", plain])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains(plain) && refused.stderr.contains("kanshi corpus build"))
        let root = try CLI.run(["workload", "inplace", "--dir", "/"])
        #expect(root.status != 0 && root.stderr.contains("root directory"))
    }
}
