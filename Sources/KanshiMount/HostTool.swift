import Foundation
import KanshiSystem

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

    /// Runs `name args…` to completion and returns its status and output.
    static func run(_ name: String, _ args: [String]) throws(MountError) -> Result {
        do {
            let r = try HostProgram.run(name, args)
            return Result(status: r.status, stdout: r.stdout, stderr: r.stderr)
        } catch {
            switch error {
            case .notFound: throw .toolMissing(name)
            case .cannotStart: throw .tool(command: name, message: "\(error)")
            }
        }
    }

    /// Runs a tool and throws its first line of error output if it fails.
    @discardableResult
    static func check(_ name: String, _ args: [String]) throws(MountError) -> Result {
        let r = try run(name, args)
        guard r.ok else { throw .tool(command: ([name] + args).joined(separator: " "), message: r.message) }
        return r
    }
}
