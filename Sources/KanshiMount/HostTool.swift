import Foundation

/// Runs the host's own tools (losetup, blkid, mkfs, mount, umount): they
/// know every file system type and loop-device quirk, and what they print
/// on failure is what the user needs to see.
enum HostTool {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var ok: Bool { status == 0 }
        /// The first line of stderr (or stdout), for a one-line error.
        var message: String {
            let text = stderr.isEmpty ? stdout : stderr
            return text.split(separator: "\n").first.map { String($0).trimmingCharacters(in: .whitespaces) }
                ?? "exit status \(status)"
        }
    }

    /// Finds `name` on PATH, then in the sbin directories (where losetup,
    /// mount and mkfs live when PATH lacks them).
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
            let p = dir + "/" + name
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// Runs `name args…` to completion and returns its status and output.
    static func run(_ name: String, _ args: [String]) throws(MountError) -> Result {
        guard let exe = which(name) else { throw .toolMissing(name) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw .tool(command: name, message: "cannot start \(exe): \(error)") }
        // Read stderr on another thread so neither pipe can fill and block the tool.
        nonisolated(unsafe) var errData = Data()
        let errDone = DispatchSemaphore(value: 0)
        let errHandle = err.fileHandleForReading
        Thread {
            errData = errHandle.readDataToEndOfFile()
            errDone.signal()
        }.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus,
                      stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs a tool and throws its first line of error output if it fails.
    @discardableResult
    static func check(_ name: String, _ args: [String]) throws(MountError) -> Result {
        let r = try run(name, args)
        guard r.ok else { throw .tool(command: ([name] + args).joined(separator: " "), message: r.message) }
        return r
    }
}
