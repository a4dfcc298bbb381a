import Foundation
import KanshiJournal
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where the package's products are: next to the test bundle.
enum Paths {
    static let products: URL = {
        if let dir = ProcessInfo.processInfo.environment["KANSHI_PRODUCTS"] { return URL(fileURLWithPath: dir) }
        var url = Bundle.main.bundleURL
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("kanshi").path) {
            url.deleteLastPathComponent()
        }
        return url
    }()
    static var kanshi: String { products.appendingPathComponent("kanshi").path }
    /// The repository root (for scripts/).
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

/// Peer tools. A missing tool skips the test with the reason shown, unless
/// KANSHI_REQUIRE_PEERS=1 (as CI sets), where it fails instead.
enum Tools {
    static let requireAll = ProcessInfo.processInfo.environment["KANSHI_REQUIRE_PEERS"] == "1"

    static func available(_ names: String...) -> Bool {
        requireAll || names.allSatisfy { which($0) != nil }
    }

    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var ok: Bool { status == 0 }
}

/// Runs a program to completion (killing it after `timeout` seconds).
@discardableResult
func run(_ args: [String], timeout: Double = 120, input: Data? = nil, cwd: String? = nil, environment: [String: String] = [:]) throws -> RunResult {
    let p = Process()
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    p.executableURL = URL(fileURLWithPath: args[0].hasPrefix("/") ? args[0] : (Tools.which(args[0]) ?? args[0]))
    p.arguments = Array(args.dropFirst())
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let tmp = NSTemporaryDirectory() + "kanshi-run-" + UUID().uuidString
    _ = FileManager.default.createFile(atPath: tmp + ".out", contents: nil)
    _ = FileManager.default.createFile(atPath: tmp + ".err", contents: nil)
    defer {
        try? FileManager.default.removeItem(atPath: tmp + ".out")
        try? FileManager.default.removeItem(atPath: tmp + ".err")
    }
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".out"))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".err"))
    if let input {
        let pipe = Pipe()
        p.standardInput = pipe
        try p.run()
        pipe.fileHandleForWriting.write(input)
        try pipe.fileHandleForWriting.close()
    } else {
        p.standardInput = FileHandle.nullDevice
        try p.run()
    }
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        throw Failure("\(args.joined(separator: " ")) did not finish within \(Int(timeout)) s")
    }
    p.waitUntilExit()
    let out = (try? String(contentsOfFile: tmp + ".out", encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: tmp + ".err", encoding: .utf8)) ?? ""
    return RunResult(status: p.terminationStatus, stdout: out, stderr: err)
}

struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

/// A temporary directory for one test.
final class Scratch {
    let path: String
    init(_ name: String = "it") {
        path = NSTemporaryDirectory() + "kanshi-\(name)-" + UUID().uuidString.prefix(8)
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// `kanshi disk serve` as a child process on a Unix socket.
final class KanshiServer {
    let process = Process()
    let socket: String
    let logPath: String
    let journal: String?
    var uri: String {
        // The server prints the URI it listens on.
        if let line = log.split(separator: "\n").first(where: { $0.hasPrefix("kanshi: serving") }),
           let at = line.range(of: " at ") {
            return String(line[at.upperBound...].split(separator: " ")[0])
        }
        return "nbd+unix:///?socket=\(socket)"
    }

    /// With `tcp`, listens on a free TCP port of 127.0.0.1 instead of the socket
    /// (whose path then only names the log file).
    init(image: String, journal: String?, socket: String, tcp: Bool = false, extra: [String] = []) throws {
        self.socket = socket
        self.journal = journal
        logPath = socket + ".log"
        try? FileManager.default.removeItem(atPath: socket)
        process.executableURL = URL(fileURLWithPath: Paths.kanshi)
        process.arguments = ["disk", "serve", "--image", image] + (tcp ? ["--port", "0"] : ["--socket", socket])
            + (journal.map { ["--journal", $0] } ?? ["--no-journal"]) + extra
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while !log_contains("kanshi: serving") {
            if !process.isRunning { throw Failure("kanshi disk serve exited (\(process.terminationStatus)): \(self.log)") }
            if Date() > deadline { throw Failure("kanshi disk serve did not start within 15 s: \(self.log)") }
            usleep(20_000)
        }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    private func log_contains(_ s: String) -> Bool { log.contains(s) }

    /// SIGTERM and wait: the journal is synced and closed.
    func stop() throws {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); throw Failure("server ignored SIGTERM") }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure("server exited \(process.terminationStatus): \(log)") }
    }

    /// kill -9, as a crash.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // What the killed server had staged in shared memory goes with the test.
        if let journal, let staged = JournalWriter.stagingFile(of: journal) {
            try? FileManager.default.removeItem(atPath: staged)
        }
    }
}

/// Creates a sparse file of the given size.
func makeImage(_ path: String, bytes: Int) throws {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try h.truncate(atOffset: UInt64(bytes))
    try h.close()
}

func randomBytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    var out = [UInt8](repeating: 0, count: n)
    out.withUnsafeMutableBytes { p in
        let words = p.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
    }
    return out
}

func readFile(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }
