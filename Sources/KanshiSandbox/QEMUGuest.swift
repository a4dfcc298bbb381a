import Foundation
import KanshiSystem

/// A QEMU process running the sandbox guest: its console comes out line by
/// line, it can be paused and stopped through QMP, and it never outlives us
/// (launched under `setpriv --pdeathsig KILL` where available).
public final class QEMUGuest: @unchecked Sendable {
    public struct Options: Sendable {
        public var qemu = "qemu-system-x86_64"
        public var accel = "tcg"
        public var memoryMiB = 512
        public var vcpus = 1
        /// A CPU model (`-cpu`), e.g. qemu64,vendor=GenuineIntel (page-table isolation on); nil: QEMU's default.
        public var cpu: String?
        /// More arguments (the VM sensor's -plugin, the network).
        public var extraArguments: [String] = []
        /// More kernel command line options (kanshi.net=1).
        public var kernelArguments: [String] = []
        public init() {}
    }

    // SAFETY: `process` is set up in init and only queried afterwards;
    // `lines` is called from the one console thread.
    let process = Process()
    let qmpPath: String
    private let consoleDone = DispatchSemaphore(value: 0)

    /// Boots the guest with `nbdURI` as its data disk and `jobDisk` as its job disk.
    public init(guest: GuestImage, nbdURI: String, jobDisk: String, qmpPath: String, options: Options,
                lines: @escaping @Sendable (String) -> Void) throws {
        self.qmpPath = qmpPath
        guard let qemu = HostProgram.which(options.qemu) else { throw SandboxError.qemuMissing(options.qemu) }
        var args = [
            "-accel", options.accel, "-machine", "pc", "-m", "\(options.memoryMiB)", "-smp", "\(options.vcpus)",
            "-nodefaults", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-display", "none",
            "-qmp", "unix:\(qmpPath),server=on,wait=off",
            "-kernel", guest.kernel, "-initrd", guest.initramfs,
            "-append", (["console=ttyS0 quiet loglevel=3 panic=-1"] + options.kernelArguments).joined(separator: " "),
            "-drive", "file=\(nbdURI),format=raw,if=none,id=kdisk,cache=none",
            "-device", "virtio-blk-pci,drive=kdisk,serial=kanshi-disk",
            "-drive", "file=\(jobDisk),format=raw,if=none,id=kjob,readonly=on",
            "-device", "virtio-blk-pci,drive=kjob,serial=kanshi-job",
        ]
        if let cpu = options.cpu { args += ["-cpu", cpu] }
        args += options.extraArguments
        if let setpriv = HostProgram.which("setpriv") {
            process.executableURL = URL(fileURLWithPath: setpriv)
            args = ["--pdeathsig", "KILL", "--", qemu] + args
        } else {
            process.executableURL = URL(fileURLWithPath: qemu)
        }
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw SandboxError.qemuFailed("cannot start \(qemu): \(error)") }
        let done = consoleDone
        let handle = pipe.fileHandleForReading
        Thread {
            var pending = [UInt8]()
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending += data
                while let nl = pending.firstIndex(of: 10) {
                    var line = String(decoding: pending[..<nl], as: UTF8.self)
                    if line.hasSuffix("\r") { line.removeLast() }
                    pending.removeSubrange(...nl)
                    lines(line)
                }
            }
            if !pending.isEmpty { lines(String(decoding: pending, as: UTF8.self)) }
            done.signal()
        }.start()
    }

    public var isRunning: Bool { process.isRunning }
    public var pid: Int32 { process.processIdentifier }

    /// Waits for QEMU to end, up to `seconds`; true if it ended.
    public func wait(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { return false }
        process.waitUntilExit()
        _ = consoleDone.wait(timeout: .now() + 2)
        return true
    }

    /// Pauses the guest's CPUs (QMP `stop`): no more disk I/O is issued.
    public func pause() throws { try qmp("stop") }

    /// Resumes the guest's CPUs (QMP `cont`).
    public func resume() throws { try qmp("cont") }

    /// Ends QEMU: QMP `quit`, then SIGTERM, then SIGKILL.
    public func terminate() {
        guard process.isRunning else { return }
        try? qmp("quit")
        if wait(seconds: 3) { return }
        kill(process.processIdentifier, SIGTERM)
        if wait(seconds: 3) { return }
        kill(process.processIdentifier, SIGKILL)
        _ = wait(seconds: 5)
    }

    /// Sends one QMP command and waits for its reply.
    func qmp(_ command: String) throws {
        _ = try Self.qmp(path: qmpPath, command)
    }

    /// Sends one QMP command to the QMP socket at `path` and returns its reply line ("" for `quit`, which has none). Another process may
    /// use it: `kanshi sandbox dump` pauses a running sandbox this way.
    @discardableResult
    public static func qmp(path: String, _ command: String) throws -> String {
        let socket = try UnixStream(path: path)
        defer { socket.close() }
        _ = try socket.readLine()  // greeting
        try socket.write("{\"execute\":\"qmp_capabilities\"}\n")
        _ = try socket.readReply()
        try socket.write("{\"execute\":\"\(command)\"}\n")
        return command == "quit" ? "" : try socket.readReply()
    }

    /// Whether the guest's CPUs run (QMP `query-status`), from the QMP socket at `path`.
    public static func isRunning(qmp path: String) throws -> Bool {
        let reply = try qmp(path: path, "query-status")
        guard let o = try? JSONSerialization.jsonObject(with: Data(reply.utf8)) as? [String: Any],
              let r = o["return"] as? [String: Any], let running = r["running"] as? Bool
        else { throw SandboxError.qemuFailed("QMP query-status: unexpected reply \(reply)") }
        return running
    }
}

/// A connected Unix stream socket, line oriented (for QMP).
final class UnixStream {
    private let fd: Int32
    private var buffer = [UInt8]()

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SandboxError.qemuFailed("socket: errno \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.close(fd)
            throw SandboxError.qemuFailed("QMP socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw SandboxError.qemuFailed("cannot reach QMP at \(path): errno \(e)")
        }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func write(_ s: String) throws {
        let b = Array(s.utf8)
        var done = 0
        while done < b.count {
            let n = b[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw SandboxError.qemuFailed("QMP write failed: errno \(errno)") }
            done += n
        }
    }

    func readLine() throws -> String {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw SandboxError.qemuFailed("QMP connection closed") }
            buffer += chunk[0..<n]
        }
    }

    /// Reads lines until a `return` or `error` reply (skipping events); returns the reply.
    func readReply() throws -> String {
        while true {
            let line = try readLine()
            if line.contains("\"return\"") { return line }
            if line.contains("\"error\"") { throw SandboxError.qemuFailed("QMP: \(line)") }
        }
    }

    func close() { Glibc.close(fd) }
}
