import KanshiSystem

/// The guest a sandbox boots: a kernel and an initramfs whose /init mounts
/// the data disk, runs the job from the job disk and reports its status on
/// the console (see scripts/guest/init).
public struct GuestImage: Sendable {
    public var directory: String
    public var kernel: String { directory + "/vmlinuz" }
    public var initramfs: String { directory + "/initramfs.cpio.gz" }

    public init(directory: String) throws {
        self.directory = directory
        for f in ["vmlinuz", "initramfs.cpio.gz"] where !FileSystem.exists(directory + "/" + f) {
            throw SandboxError.guestMissing(directory: directory, file: f)
        }
    }
}

/// The job disk: a 512-byte header `KANSHI-JOB 1 <length> <sha256>\n`, then
/// the script, zero padded to whole sectors.
public enum JobDisk {
    public static func write(script: String, to path: String) throws {
        let body = Array(script.utf8)
        var header = Array("KANSHI-JOB 1 \(body.count) \(SHA256Hex.of(body))\n".utf8)
        header += [UInt8](repeating: 0, count: 512 - header.count)
        var all = header + body
        all += [UInt8](repeating: 0, count: (512 - all.count % 512) % 512)
        let f = try SystemFile(path: path, mode: [.readWrite, .create, .truncate])
        try all.withUnsafeBytes { try f.write($0, at: 0) }
    }
}

/// Errors of the sandbox, each saying what to fix.
public enum SandboxError: Error, CustomStringConvertible, Sendable {
    case guestMissing(directory: String, file: String)
    case qemuMissing(String)
    case qemuFailed(String)
    case badDisk(path: String, reason: String)

    public var description: String {
        switch self {
        case .guestMissing(let d, let f):
            "\(d)/\(f) is missing: build the sandbox guest first (kanshi sandbox build, or scripts/guest/build-guest.sh \(d))"
        case .qemuMissing(let q): "\(q) not found: install it with apt-get install -y qemu-system-x86"
        case .qemuFailed(let why): "QEMU failed: \(why)"
        case .badDisk(let p, let why): "\(p): \(why)"
        }
    }
}

import Crypto

enum SHA256Hex {
    static func of(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
