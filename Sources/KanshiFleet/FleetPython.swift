import Foundation
import KanshiSystem

/// What went wrong in a fleet export or job, named for the user.
public struct FleetError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The Python that writes Parquet (pyarrow) and drives Spark (pyspark), and
/// the scripts Kanshi gives it.
///
/// Found, in order: `--python`, `KANSHI_PYTHON`, the `python/` venv that
/// `scripts/setup.sh` makes in the build directory beside this executable
/// (`.build/python`), then `python3` on PATH. Each use checks that the
/// modules it needs import, and says how to get them when they do not.
public struct FleetPython: Sendable {
    public let executable: String

    public init(_ explicit: String? = nil) throws {
        if let explicit {
            guard let p = HostProgram.which(explicit) else { throw FleetError("--python \(explicit): no such executable") }
            executable = p
            return
        }
        if let env = ProcessInfo.processInfo.environment["KANSHI_PYTHON"], !env.isEmpty {
            guard let p = HostProgram.which(env) else { throw FleetError("KANSHI_PYTHON=\(env): no such executable") }
            executable = p
            return
        }
        for dir in Self.buildDirectories() {
            let p = dir + "/python/bin/python3"
            if FileManager.default.isExecutableFile(atPath: p) { executable = p; return }
        }
        guard let p = HostProgram.which("python3") else {
            throw FleetError("no Python: python3 is not on PATH; run scripts/setup.sh (it makes .build/python with pyarrow and pyspark) or give --python")
        }
        executable = p
    }

    /// The executable's directory and its parents up to the build directory
    /// (`.build/release`, `.build/x86_64-unknown-linux-gnu/debug` → `.build`).
    static func buildDirectories() -> [String] {
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        var out: [String] = []
        for _ in 0..<4 {
            out.append(dir.path)
            dir = dir.deletingLastPathComponent()
        }
        return out
    }

    /// Throws, saying how to install them, unless every module imports.
    public func require(_ modules: [String], for purpose: String) throws {
        let r: HostProgram.Result
        do { r = try HostProgram.run(executable, ["-c", modules.map { "import \($0)" }.joined(separator: "; ")]) } catch {
            throw FleetError("\(purpose) needs Python: \(error)")
        }
        guard r.ok else {
            let missing = r.stderr.split(separator: "\n").last.map(String.init) ?? "exit \(r.status)"
            throw FleetError("\(purpose) needs the Python modules \(modules.joined(separator: ", ")) for \(executable) (\(missing)); run scripts/setup.sh (it makes .build/python) or give --python PATH")
        }
    }

    /// Path of one of Kanshi's Python scripts.
    public static func script(_ name: String) throws -> String {
        guard let url = Bundle.module.url(forResource: "Python/" + name, withExtension: nil) else {
            throw FleetError("\(name) is missing from kanshi's resources (Python/ beside the executable)")
        }
        return url.path
    }

    /// The Java runtime Spark starts, or why there is none.
    public static func java() throws -> String {
        if let home = ProcessInfo.processInfo.environment["JAVA_HOME"], !home.isEmpty {
            let p = home + "/bin/java"
            guard FileManager.default.isExecutableFile(atPath: p) else {
                throw FleetError("Spark cannot start: JAVA_HOME=\(home) has no bin/java; install a Java runtime (Debian: openjdk-17-jre-headless) or fix JAVA_HOME")
            }
            return p
        }
        guard let p = HostProgram.which("java") else {
            throw FleetError("Spark cannot start: no Java runtime (java is not on PATH and JAVA_HOME is not set); install one (Debian: apt-get install openjdk-17-jre-headless) or run scripts/setup.sh")
        }
        return p
    }
}

/// A Python program started with a pipe to its standard input; its standard
/// error is collected (the reason when it fails), its standard output kept.
final class PythonProcess: @unchecked Sendable {
    // SAFETY: outData and errData are written by one reader thread each and read after `done` is waited on.
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private let done = DispatchGroup()
    private nonisolated(unsafe) var outData = Data()
    private nonisolated(unsafe) var errData = Data()
    let name: String

    init(python: FleetPython, script: String, arguments: [String], environment: [String: String] = [:], passStderr: Bool = false) throws {
        name = (script as NSString).lastPathComponent
        process.executableURL = URL(fileURLWithPath: python.executable)
        process.arguments = [script] + arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardInput = input
        process.standardOutput = output
        process.standardError = passStderr ? FileHandle.standardError : errors
        do { try process.run() } catch { throw FleetError("cannot start \(python.executable) \(script): \(error)") }
        let out = output.fileHandleForReading, err = errors.fileHandleForReading
        done.enter()
        Thread { [self] in outData = out.readDataToEndOfFile(); done.leave() }.start()
        if !passStderr {
            done.enter()
            Thread { [self] in errData = err.readDataToEndOfFile(); done.leave() }.start()
        }
    }

    /// Sends bytes; false when the program no longer reads (it failed: `finish` says why).
    func send(_ bytes: [UInt8]) -> Bool {
        do {
            try bytes.withUnsafeBytes { try input.fileHandleForWriting.write(contentsOf: $0) }
            return true
        } catch {
            return false
        }
    }

    /// Closes its input and waits for it; its standard output, or an error with its last words.
    func finish() throws -> String {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        done.wait()
        let out = String(decoding: outData, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            let err = String(decoding: errData, as: UTF8.self)
            throw FleetError("\(name) failed (exit \(process.terminationStatus)): \(Self.lastWords(err))")
        }
        return out
    }

    /// The end of a Python error: the exception line (and a little before it).
    static func lastWords(_ stderr: String) -> String {
        let lines = stderr.split(separator: "\n").map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        if let i = lines.lastIndex(where: { $0.hasPrefix("kanshi-fleet: ") }) { return String(lines[i].dropFirst("kanshi-fleet: ".count)) }
        return lines.suffix(3).joined(separator: " | ")
    }
}
