import Foundation
import KanshiSystem

/// A loop device attached to a file with direct I/O (`losetup --direct-io=on`),
/// so the kernel sends the file system's requests to the file unbuffered,
/// aligned to the sector size.
public struct LoopDevice: Sendable {
    /// The device node, e.g. /dev/loop3.
    public let path: String

    /// Attaches the first free loop device to `file`.
    public static func attach(file: String, sectorSize: Int, readOnly: Bool) throws(MountError) -> LoopDevice {
        var args = ["--find", "--show", "--direct-io=on", "--sector-size", "\(sectorSize)"]
        if readOnly { args.append("--read-only") }
        let r = try HostTool.run("losetup", args + [file])
        guard r.ok else {
            let text = r.stderr + r.stdout
            if text.contains("unused loop device") || text.contains("no free") || text.contains("loop-control") {
                throw .noLoopDevice(r.message)
            }
            throw .tool(command: "losetup " + (args + [file]).joined(separator: " "), message: r.message)
        }
        let dev = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard dev.hasPrefix("/dev/loop") else {
            throw .tool(command: "losetup", message: "printed \"\(dev)\" instead of a loop device")
        }
        return LoopDevice(path: dev)
    }

    /// The device's name in sysfs, e.g. loop3.
    public var name: String { String(path.split(separator: "/").last ?? "") }

    /// "major:minor", as /proc/self/mountinfo shows it.
    public var majorMinor: String? {
        (try? String(contentsOfFile: "/sys/block/\(name)/dev", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether a file is still attached.
    public var isAttached: Bool { FileManager.default.fileExists(atPath: "/sys/block/\(name)/loop/backing_file") }

    /// Detaches the device and waits (up to `timeout` seconds) until the
    /// kernel has let go of the file.
    public func detach(timeout: Double = 10) throws(MountError) {
        if isAttached {
            let r = try HostTool.run("losetup", ["--detach", path])
            if !r.ok && isAttached { throw .tool(command: "losetup --detach \(path)", message: r.message) }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while isAttached {
            guard Date() < deadline else {
                throw .tool(command: "losetup --detach \(path)", message: "the device is still attached after \(Int(timeout)) s")
            }
            usleep(20_000)
        }
    }
}
