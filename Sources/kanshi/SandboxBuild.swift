import ArgumentParser
import Foundation
import KanshiSandbox
import KanshiSystem

/// Where the sandbox's parts live and how to make them.
enum SandboxLayout {
    /// This executable.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The source tree this kanshi was built from (for scripts/guest), if it is there.
    static var projectRoot: String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["KANSHI_ROOT"] { candidates.append(env) }
        // .build/<config>/kanshi or .build/<triple>/<config>/kanshi
        var dir = (executable as NSString).deletingLastPathComponent
        for _ in 0..<4 {
            candidates.append(dir)
            dir = (dir as NSString).deletingLastPathComponent
        }
        candidates.append(FileManager.default.currentDirectoryPath)
        return candidates.first { FileSystem.exists($0 + "/scripts/guest/build-guest.sh") }
    }

    /// Default cache: .build/sandbox in the source tree, else ~/.cache/kanshi/sandbox.
    static var defaultDirectory: String {
        if let root = projectRoot { return root + "/.build/sandbox" }
        return (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/kanshi/sandbox"
    }

    static func guest(_ dir: String) -> String { dir + "/guest" }
    static func victim(_ dir: String) -> String { dir + "/victim.img" }
}

struct SandboxBuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build",
        abstract: "Assemble the sandbox: guest kernel and initramfs (with kanshi inside), and a victim disk.",
        discussion: """
            Into DIR (default: .build/sandbox in the source tree, or ~/.cache/kanshi/sandbox): \
            guest/ — the Debian cloud kernel extracted from its package (apt-get download; \
            nothing installed on the host), a busybox initramfs with the virtio and ext4 \
            modules the kernel needs and this kanshi binary (stripped) with its shared \
            libraries, so workloads run in the guest; victim.img — an ext4 disk (-b 4096) \
            holding a victim corpus generated from --seed under /corpus. Each part is \
            rebuilt only when its inputs change (kernel package, busybox, init, kanshi \
            binary; seed and size).
            """)

    @Option(help: "Sandbox directory.")
    var dir: String = SandboxLayout.defaultDirectory

    @Option(help: "Seed of the victim corpus.")
    var seed: UInt64 = 1

    @Option(name: .customLong("corpus-mib"), help: "Size of the victim corpus, in MiB.")
    var corpusMiB: Int = 48

    @Option(name: .customLong("disk-mib"), help: "Size of the victim disk, in MiB.")
    var diskMiB: Int = 256

    @Flag(help: "Rebuild everything.")
    var force = false

    @Option(help: "Debian package whose kernel the guest boots (default: linux-image-cloud-amd64).")
    var kernelPackage: String?

    func validate() throws {
        if corpusMiB < 1 || diskMiB < corpusMiB * 2 + 16 {
            throw ValidationError("--disk-mib must be at least twice --corpus-mib plus 16 (room for the workloads' output)")
        }
    }

    func run() throws {
        try Self.build(dir: dir, seed: seed, corpusMiB: corpusMiB, diskMiB: diskMiB, force: force, kernelPackage: kernelPackage)
    }

    static func build(dir: String, seed: UInt64, corpusMiB: Int, diskMiB: Int, force: Bool, kernelPackage: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        guard let root = SandboxLayout.projectRoot else {
            throw CLIError("cannot find scripts/guest/build-guest.sh; run kanshi from its source tree or set KANSHI_ROOT")
        }
        // The kanshi binary for the guest: a stripped copy, so the initramfs stays small.
        let binDir = dir + "/bin"
        try FileManager.default.createDirectory(atPath: binDir, withIntermediateDirectories: true)
        let stripped = binDir + "/kanshi"
        try? FileManager.default.removeItem(atPath: stripped + ".tmp")
        try FileManager.default.copyItem(atPath: SandboxLayout.executable, toPath: stripped + ".tmp")
        _ = try? runTool(["strip", stripped + ".tmp"])
        if try !sameFile(stripped + ".tmp", stripped) {
            try? FileManager.default.removeItem(atPath: stripped)
            try FileManager.default.moveItem(atPath: stripped + ".tmp", toPath: stripped)
        } else {
            try FileManager.default.removeItem(atPath: stripped + ".tmp")
        }
        Output.error("sandbox: guest (kernel from Debian's package, busybox initramfs, kanshi inside)")
        var args = [root + "/scripts/guest/build-guest.sh", "--add-binary", stripped, SandboxLayout.guest(dir)]
        if force { args.insert("--force", at: 1) }
        if let kernelPackage { args.insert(contentsOf: ["--kernel-package", kernelPackage], at: 1) }
        let g = try runTool(args, passStderr: true)
        guard g.status == 0 else { throw CLIError("building the guest failed (see above)") }

        // The victim disk, rebuilt when its inputs change.
        let stamp = "seed \(seed) corpus \(corpusMiB) MiB disk \(diskMiB) MiB corpus-format 1"
        let stampPath = dir + "/victim.stamp"
        let victim = SandboxLayout.victim(dir)
        if !force, FileSystem.exists(victim), (try? String(contentsOfFile: stampPath, encoding: .utf8)) == stamp {
            Output.error("sandbox: victim disk up to date: \(victim)")
        } else {
            Output.error("sandbox: victim corpus (seed \(seed), \(corpusMiB) MiB) on an ext4 disk of \(diskMiB) MiB")
            let staging = dir + "/victim-root"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: staging + "/corpus", withIntermediateDirectories: true)
            let c = try runTool([SandboxLayout.executable, "corpus", "build", "--dir", staging + "/corpus",
                                 "--seed", "\(seed)", "--size-mib", "\(corpusMiB)"], passStderr: true)
            guard c.status == 0 else { throw CLIError("building the victim corpus failed (see above)") }
            try? FileManager.default.removeItem(atPath: victim)
            let m = try runTool(["mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "kanshi-victim", "-d", staging, victim, "\(diskMiB)M"])
            guard m.status == 0 else { throw CLIError("mkfs.ext4 failed: \(m.stderr) (install e2fsprogs)") }
            try? FileManager.default.removeItem(atPath: staging)
            try stamp.write(toFile: stampPath, atomically: true, encoding: .utf8)
        }
        Output.line("sandbox ready in \(dir): guest \(SandboxLayout.guest(dir)), victim disk \(victim)")
    }

    static func sameFile(_ a: String, _ b: String) throws -> Bool {
        guard FileSystem.exists(b) else { return false }
        return FileManager.default.contentsEqual(atPath: a, andPath: b)
    }
}

/// Runs a program to completion (see `HostProgram.run`); errors as one line for the user.
@discardableResult
func runTool(_ args: [String], passStderr: Bool = false) throws -> HostProgram.Result {
    do { return try HostProgram.run(args[0], Array(args.dropFirst()), passStderr: passStderr) } catch {
        throw CLIError("\(error)")
    }
}
