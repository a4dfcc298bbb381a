import Foundation
import KanshiGuestKernel
import Testing

/// The Debian cloud kernel the tests read, with its real System.map (from the
/// -dbg package) as the oracle: scripts/guest/build-guest.sh --system-map puts
/// both in the guest directory (KANSHI_GUEST_DIR, else .build/guest, as the
/// integration tests use). When it cannot be had the tests skip with the
/// reason, unless KANSHI_REQUIRE_PEERS=1, where they fail.
enum KernelFixture {
    static let requireAll = ProcessInfo.processInfo.environment["KANSHI_REQUIRE_PEERS"] == "1"
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var guestDir: String {
        ProcessInfo.processInfo.environment["KANSHI_GUEST_DIR"] ?? root.appendingPathComponent(".build/guest").path
    }
    static var vmlinuz: String { guestDir + "/vmlinuz" }
    static var systemMap: String { guestDir + "/System.map" }

    /// Why the real kernel is not here (after trying to fetch it), or nil.
    static let problem: String? = {
        if !hasRealSystemMap() {
            let script = root.appendingPathComponent("scripts/guest/build-guest.sh").path
            let r = run([script, "--system-map", guestDir])
            if !hasRealSystemMap() {
                return "no Debian cloud kernel with its System.map in \(guestDir): scripts/guest/build-guest.sh --system-map failed (\(r.status)): \(r.stderr.suffix(400))"
            }
        }
        return nil
    }()

    /// The reason to skip the real-kernel tests; nil under KANSHI_REQUIRE_PEERS=1,
    /// where they run and fail with `problem`.
    static var unavailable: String? { requireAll ? nil : problem }

    struct Unavailable: Error, CustomStringConvertible { var description: String }

    static func hasRealSystemMap() -> Bool {
        guard FileManager.default.fileExists(atPath: vmlinuz),
              let size = (try? FileManager.default.attributesOfItem(atPath: systemMap))?[.size] as? Int
        else { return false }
        return size > 100_000
    }

    /// The kernel, read once for all tests.
    static let kernel: Result<GuestKernel, any Error> = Result { () throws in
        if let problem { throw Unavailable(description: problem) }
        return try GuestKernel(path: vmlinuz)
    }

    /// System.map as (name, address, type) lines.
    static func systemMapEntries() throws -> [(name: String, address: UInt64, type: Character)] {
        try String(contentsOfFile: systemMap, encoding: .utf8).split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count == 3, let a = UInt64(f[0], radix: 16), let t = f[1].first else { return nil }
            return (String(f[2]), a, t)
        }
    }

    /// Writes the decompressed vmlinux to a temporary file (for peer tools); returns its path.
    static func vmlinuxFile() throws -> String {
        let path = NSTemporaryDirectory() + "kanshi-vmlinux-\(getpid())"
        if !FileManager.default.fileExists(atPath: path) {
            try Data(kernel.get().elf.bytes).write(to: URL(fileURLWithPath: path))
        }
        return path
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// Why the peer tool `name` (from Debian package `package`) cannot be used, or nil.
    static func missingTool(_ name: String, package: String) -> String? {
        if requireAll || which(name) != nil { return nil }
        return "\(name) is not installed (apt-get install \(package), or scripts/setup.sh)"
    }

    struct Output { var status: Int32; var stdout: Data; var stderr: String }

    /// Runs a program to completion, stdout as bytes.
    @discardableResult
    static func run(_ args: [String], stdin: Data? = nil) -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: args[0].hasPrefix("/") ? args[0] : (which(args[0]) ?? args[0]))
        p.arguments = Array(args.dropFirst())
        let tmp = NSTemporaryDirectory() + "kanshi-gk-run-" + UUID().uuidString
        _ = FileManager.default.createFile(atPath: tmp + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: tmp + ".out")
            try? FileManager.default.removeItem(atPath: tmp + ".err")
            try? FileManager.default.removeItem(atPath: tmp + ".in")
        }
        p.standardOutput = FileHandle(forWritingAtPath: tmp + ".out")
        p.standardError = FileHandle(forWritingAtPath: tmp + ".err")
        if let stdin {
            _ = FileManager.default.createFile(atPath: tmp + ".in", contents: stdin)
            p.standardInput = FileHandle(forReadingAtPath: tmp + ".in")
        }
        do { try p.run() } catch { return Output(status: -1, stdout: Data(), stderr: "cannot run \(args[0]): \(error)") }
        p.waitUntilExit()
        let out = FileManager.default.contents(atPath: tmp + ".out") ?? Data()
        let err = String(decoding: FileManager.default.contents(atPath: tmp + ".err") ?? Data(), as: UTF8.self)
        return Output(status: p.terminationStatus, stdout: out, stderr: err)
    }
}
