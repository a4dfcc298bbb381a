import Foundation
import KanshiMemory
import KanshiSystem

/// A running sandbox as other kanshi processes find it (`kanshi sandbox ps`, `dump`): a JSON
/// file beside its shared RAM under /dev/shm, removed when the run ends.
public struct RunningSandbox: Codable, Sendable, Equatable {
    public var kanshiPid: Int32
    public var qemuPid: Int32
    /// The guest's shared RAM file, and its size.
    public var ram: String
    public var ramBytes: UInt64
    /// QEMU's QMP socket (pause, resume).
    public var qmp: String
    /// The guest's kernel image and its directory (where kernel facts are cached).
    public var vmlinuz: String
    public var guestDirectory: String
    public var command: String
    /// Wall clock, ns.
    public var startedNs: UInt64

    public init(kanshiPid: Int32, qemuPid: Int32, ram: String, ramBytes: UInt64, qmp: String, vmlinuz: String,
                guestDirectory: String, command: String, startedNs: UInt64) {
        self.kanshiPid = kanshiPid; self.qemuPid = qemuPid; self.ram = ram; self.ramBytes = ramBytes; self.qmp = qmp
        self.vmlinuz = vmlinuz; self.guestDirectory = guestDirectory; self.command = command; self.startedNs = startedNs
    }

    /// The description's file for the shared RAM at `ram`.
    public static func sidecar(ram: String) -> String { ram + ".json" }

    public func write() throws {
        let data = try JSONEncoder().encode(self)
        try data.write(to: URL(fileURLWithPath: Self.sidecar(ram: ram)), options: .atomic)
    }

    /// The sandbox whose shared RAM is `ram`.
    public static func load(ram: String) throws(SandboxError) -> RunningSandbox {
        let path = sidecar(ram: ram)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .memory("\(path) is missing: \(ram) is not the shared RAM of a running sandbox")
        }
        do { return try JSONDecoder().decode(RunningSandbox.self, from: data) } catch {
            throw .memory("\(path): not a running sandbox's description: \(error)")
        }
    }

    /// Whether its kanshi and its QEMU still run.
    public var isAlive: Bool { Host.processExists(kanshiPid) && Host.processExists(qemuPid) }

    /// The sandboxes running on this host, oldest first (descriptions left by runs that died are skipped).
    public static func all(directory: String = "/dev/shm") -> [RunningSandbox] {
        let names = (try? FileSystem.list(directory)) ?? []
        return names.filter { $0.hasPrefix(GuestRAM.namePrefix) && $0.hasSuffix(".json") }
            .compactMap { try? load(ram: directory + "/" + String($0.dropLast(".json".count))) }
            .filter(\.isAlive)
            .sorted { $0.startedNs < $1.startedNs }
    }
}

/// Acquisitions of a guest's memory: a LiME image Volatility reads.
public enum MemoryDump {
    /// What a dump did.
    public struct Report: Sendable, Equatable {
        public var written: LiME.Written
        /// Whether the guest was paused for it (a consistent image) or ran on (a live one).
        public var paused: Bool
        /// Why it was taken: "job-end", "alert", "timeout", "interrupted", "on-demand".
        public var moment: String
    }

    /// Writes a LiME image of `memory` to `path`. With `qmp` and not `live`, the guest is paused
    /// for it and resumed afterwards if it was running (also when writing fails: the guest never
    /// stays stopped because of a dump).
    public static func take(memory: PhysicalMemory, to path: String, qmp: String?, live: Bool, moment: String) throws -> Report {
        var resume = false
        var paused = false
        if let qmp, !live {
            let running = try QEMUGuest.isRunning(qmp: qmp)
            if running { try QEMUGuest.qmp(path: qmp, "stop") }
            resume = running
            paused = true
        }
        defer { if resume, let qmp { _ = try? QEMUGuest.qmp(path: qmp, "cont") } }
        let written = try LiME.write(memory, to: path)
        return Report(written: written, paused: paused, moment: moment)
    }
}

/// Guest memory to read from outside, and the kernel image it runs: a running sandbox's shared
/// RAM, or a LiME image.
public struct GuestMemorySource: Sendable {
    public let memory: PhysicalMemory
    /// The sandbox, when the memory is a running one's.
    public let running: RunningSandbox?
    public let vmlinuz: String
    public let guestDirectory: String

    /// A LiME image of a guest whose kernel is `guestDirectory/vmlinuz`.
    public init(image: String, guestDirectory: String) throws {
        let vmlinuz = guestDirectory + "/vmlinuz"
        guard FileSystem.exists(vmlinuz) else {
            throw SandboxError.memory("\(vmlinuz) is missing: give the guest directory the image was taken from (--guest)")
        }
        memory = try LiMEImage(path: image)
        running = nil
        self.vmlinuz = vmlinuz
        self.guestDirectory = guestDirectory
    }

    /// A running sandbox: the one whose shared RAM is `ram`, else the only one running.
    public init(ram: String?, sandboxes directory: String = "/dev/shm") throws {
        let sandbox: RunningSandbox
        if let ram {
            sandbox = try RunningSandbox.load(ram: ram)
            guard sandbox.isAlive else { throw SandboxError.memory("the sandbox of \(ram) (kanshi pid \(sandbox.kanshiPid)) is not running any more") }
        } else {
            let all = RunningSandbox.all(directory: directory)
            guard let only = all.first else {
                throw SandboxError.memory("no sandbox is running (start one with kanshi sandbox run, or read a dump with --image FILE)")
            }
            guard all.count == 1 else {
                throw SandboxError.memory("\(all.count) sandboxes are running; choose one with --ram: "
                    + all.map { "\($0.ram) (kanshi pid \($0.kanshiPid): \($0.command))" }.joined(separator: ", "))
            }
            sandbox = only
        }
        memory = try GuestRAM(path: sandbox.ram)
        running = sandbox
        vmlinuz = sandbox.vmlinuz
        guestDirectory = sandbox.guestDirectory
    }

    /// The guest kernel in this memory (its facts read from the image once, then cached beside it).
    public func kernelView() throws -> GuestKernelView {
        let facts = try MemoryKernelFacts.cached(guestDirectory: guestDirectory, vmlinuz: vmlinuz)
        return try GuestKernelView(memory: memory, facts: facts)
    }
}
