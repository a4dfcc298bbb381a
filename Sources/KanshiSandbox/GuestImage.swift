import Foundation
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

/// A host file put into the guest before the job runs (`sandbox run --add`).
public struct AddedFile: Sendable, Equatable {
    public var host: String
    public var guest: String
    public init(host: String, guest: String) { self.host = host; self.guest = guest }

    /// `HOSTFILE[:GUESTPATH]`; without a guest path an executable goes to /usr/local/bin/NAME
    /// (on the job's PATH), anything else to /root/NAME.
    public init(argument: String) throws {
        let parts = argument.split(separator: ":", maxSplits: 1).map(String.init)
        guard let hostPart = parts.first, !hostPart.isEmpty else { throw SandboxError.badAdd(argument, "no host file given") }
        host = hostPart
        guard FileSystem.exists(host), !FileSystem.isDirectory(host) else { throw SandboxError.badAdd(argument, "\(host) is not a file") }
        let name = (host as NSString).lastPathComponent
        if parts.count == 2 {
            guard parts[1].hasPrefix("/"), !parts[1].hasSuffix("/"), !parts[1].split(separator: "/").contains("..") else {
                throw SandboxError.badAdd(argument, "the guest path must be absolute, name a file and have no '..'")
            }
            guest = parts[1]
        } else {
            guest = (access(host, X_OK) == 0 ? "/usr/local/bin/" : "/root/") + name
        }
    }
}

/// The job disk: a 512-byte header `KANSHI-JOB 1 <length> <sha256>\n`, then the script, zero
/// padded to whole sectors; with added files `KANSHI-JOB 2 <length> <sha256> <tarlength>
/// <tarsha256>\n` and a ustar archive of them after the script (scripts/guest/init extracts it into /).
public enum JobDisk {
    public static func write(script: String, files: [AddedFile] = [], to path: String) throws {
        let body = Array(script.utf8)
        var archive: [UInt8] = []
        if !files.isEmpty {
            var tar = UStarWriter()
            for f in files {
                let data: [UInt8]
                do { data = Array(try Data(contentsOf: URL(fileURLWithPath: f.host))) } catch {
                    throw SandboxError.badAdd(f.host, "cannot read it: \(error.localizedDescription)")
                }
                let mode = (try? FileManager.default.attributesOfItem(atPath: f.host)[.posixPermissions] as? Int) ?? 0o644
                try tar.add(path: f.guest, data: data, mode: mode & 0o7777)
            }
            archive = tar.finish()
        }
        var line = "KANSHI-JOB 1 \(body.count) \(SHA256Hex.of(body))\n"
        if !archive.isEmpty { line = "KANSHI-JOB 2 \(body.count) \(SHA256Hex.of(body)) \(archive.count) \(SHA256Hex.of(archive))\n" }
        var header = Array(line.utf8)
        header += [UInt8](repeating: 0, count: 512 - header.count)
        var all = header + body
        all += [UInt8](repeating: 0, count: (512 - all.count % 512) % 512)
        all += archive
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
    case badAdd(String, String)
    /// A selective undo could not start or finish (the journal's past, the mount).
    case undoFailed(String)
    /// The memory sensor: the guest's shared RAM, its description, a dump.
    case memory(String)

    public var description: String {
        switch self {
        case .guestMissing(let d, let f):
            "\(d)/\(f) is missing: build the sandbox guest first (kanshi sandbox build, or scripts/guest/build-guest.sh \(d))"
        case .qemuMissing(let q): "\(q) not found: install it with apt-get install -y qemu-system-x86"
        case .qemuFailed(let why): "QEMU failed: \(why)"
        case .badDisk(let p, let why): "\(p): \(why)"
        case .badAdd(let a, let why): "--add \(a): \(why)"
        case .undoFailed(let why): "selective undo: \(why)"
        case .memory(let why): "memory: \(why)"
        }
    }
}

import Crypto

enum SHA256Hex {
    static func of(_ bytes: [UInt8]) -> String {
        SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }
}
