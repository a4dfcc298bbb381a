import Foundation

/// Runs the host's own programs (losetup, mount, mkfs, strip, tar, QEMU's
/// helpers, kanshi itself) to completion.
public enum HostProgram {
    /// What a program did.
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var ok: Bool { status == 0 }
    }

    /// Why a program could not be run at all.
    public enum Failure: Error, CustomStringConvertible, Sendable {
        case notFound(String)
        case cannotStart(String, reason: String)
        public var description: String {
            switch self {
            case .notFound(let n): "\(n) not found on PATH or in /usr/sbin, /sbin"
            case .cannotStart(let p, let why): "cannot start \(p): \(why)"
            }
        }
    }

    /// `name` itself if it is a path, else the first executable of that name
    /// on PATH, then in the sbin directories (where losetup, mount and mkfs
    /// live when PATH lacks them).
    public static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// Runs `name args…` with no input and returns its status and output.
    /// With `passStderr` its standard error goes to ours (progress a user
    /// should see) instead of being captured.
    public static func run(_ name: String, _ args: [String], passStderr: Bool = false) throws(Failure) -> Result {
        guard let exe = which(name) else { throw .notFound(name) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = passStderr ? FileHandle.standardError : err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw .cannotStart(exe, reason: "\(error)") }
        // Read stderr on another thread so neither pipe can fill and block the program.
        nonisolated(unsafe) var errData = Data()
        let errDone = DispatchSemaphore(value: 0)
        if passStderr {
            errDone.signal()
        } else {
            let errHandle = err.fileHandleForReading
            Thread {
                errData = errHandle.readDataToEndOfFile()
                errDone.signal()
            }.start()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
