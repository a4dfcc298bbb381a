import Foundation
import KanshiSystem
import KanshiTrace

/// What the QEMU plugin needs to know about the guest kernel: link-time
/// addresses (the plugin learns the KASLR slide itself) and structure offsets,
/// all from the kernel image's own kallsyms and BTF.
public struct VMSensorKernel: Codable, Sendable, Equatable {
    /// The kernel release (for messages).
    public var release: String
    /// entry_SYSCALL_64, and its first bytes in the image (how the plugin recognises it at run time).
    public var entrySyscall64: UInt64
    public var entrySignature: [UInt8]
    /// do_syscall_64, do_fast_syscall_32, the int 0x80 handler, do_exit.
    public var syscall64: UInt64
    public var fastSyscall32: UInt64?
    public var int80: UInt64?
    public var doExit: UInt64?
    /// Per-cpu offset of current_task; task_struct offsets of pid, tgid, comm, real_parent.
    public var currentTask: UInt64
    public var taskPid: Int
    public var taskTgid: Int
    public var taskComm: Int
    public var taskRealParent: Int
    /// KASLR moves the kernel by multiples of this (CONFIG_PHYSICAL_ALIGN, at least 2 MiB).
    public var kaslrAlign: UInt64 = 0x200000
    /// Per-cpu offset of the running task's top of kernel stack (cpu_current_top_of_stack, or
    /// pcpu_hot.top_of_stack from 6.2): the plugin finds a call's pt_regs there, in memory,
    /// instead of reading a register at every entry and return. Nil: registers are read.
    public var topOfStack: UInt64?
    /// asm_sysvec_apic_timer_interrupt: the local timer's interrupt entry, where the interrupted
    /// user instruction is sampled (`execSampleEvery`). Nil: no execution samples.
    public var timerInterrupt: UInt64?

    public init(release: String, entrySyscall64: UInt64, entrySignature: [UInt8], syscall64: UInt64, fastSyscall32: UInt64?,
                int80: UInt64?, doExit: UInt64?, currentTask: UInt64, taskPid: Int, taskTgid: Int, taskComm: Int, taskRealParent: Int) {
        self.release = release; self.entrySyscall64 = entrySyscall64; self.entrySignature = entrySignature
        self.syscall64 = syscall64; self.fastSyscall32 = fastSyscall32; self.int80 = int80; self.doExit = doExit
        self.currentTask = currentTask; self.taskPid = taskPid; self.taskTgid = taskTgid; self.taskComm = taskComm
        self.taskRealParent = taskRealParent
    }

    /// The plugin's arguments (after its path), for `-plugin PATH,ARGS`.
    func pluginArguments(ring: String, allCalls: Bool, guestRAMBytes: UInt64? = nil, execEvery: Int = 0) -> String {
        // (execEvery: sample every Nth timer interrupt that came in user mode.)
        func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        var a = ["ring=\(ring)", "entry=\(hex(entrySyscall64))", "sig=" + entrySignature.map { String(format: "%02x", $0) }.joined(),
                 "sys64=\(hex(syscall64))", "current_task=\(hex(currentTask))", "pid=\(taskPid)", "tgid=\(taskTgid)",
                 "comm=\(taskComm)", "parent=\(taskRealParent)", "align=\(hex(kaslrAlign))"]
        if let v = fastSyscall32 { a.append("fast32=\(hex(v))") }
        if let v = int80 { a.append("int80=\(hex(v))") }
        if let v = doExit { a.append("exit=\(hex(v))") }
        if let v = topOfStack { a.append("top_of_stack=\(hex(v))") }
        if allCalls { a.append("all=1") }
        if let v = guestRAMBytes { a.append("ram=\(v)") }
        if execEvery > 0, let t = timerInterrupt { a.append("exec=\(execEvery)"); a.append("timer=\(hex(t))") }
        return a.joined(separator: ",")
    }
}

/// The VM sensor of one QEMU guest: the plugin's ring, a thread that decodes
/// it into the behaviour model, the behaviour log and the managed set.
public final class VMSensor: @unchecked Sendable {
    public struct Config: Sendable {
        public var kernel: VMSensorKernel
        /// libkanshi-vmi.so (default: beside the kanshi executable).
        public var plugin: String
        public var behaviour = GuestBehaviourOptions()
        public var logPath: String
        public var managedSetPath: String
        /// The ring between the plugin and kanshi (bytes, a power of two, `ringSizes`). When it is
        /// full the guest waits for kanshi.
        public var ringBytes = 32 << 20
        /// The guest's RAM (MiB). Given, QEMU keeps it in a memfd the plugin finds in its own
        /// address space: it walks page tables and reads guest memory there, without QEMU's
        /// slower debug reads (checked against them first).
        /// (Only below 3.5 GiB, where the pc machine keeps RAM in one piece.)
        public var guestMemoryMiB: Int?
        /// QEMU arguments for that RAM when the caller backs it itself (the sandbox's RAM shared
        /// through /dev/shm with the memory sensor; the plugin finds that mapping too); nil: a memfd.
        public var ramBackend: [String]?
        /// The guest's network through kanshi (user networking; frames of managed processes dropped).
        public var network: Network?
        /// Sample user code running: the user instruction a guest timer interrupt stopped, every
        /// Nth such interrupt of a vCPU (0: off; 1: every tick, the guest's HZ per busy vCPU).
        /// The windows go to `Result.execution` and, as CSV, to LOG.exec.csv.
        public var execSampleEvery = 0
        /// The guest's vCPUs: with too few host cores beside them, the reader writes the
        /// behaviour log itself instead of handing it to a thread of its own (`logWriter`).
        public var vcpus = 1
        public struct Network: Sendable {
            /// Where the relay's sockets go (the run's work directory).
            public var directory: String
            /// Every frame the guest sent, as pcap.
            public var pcap: String?
            public init(directory: String, pcap: String? = nil) { self.directory = directory; self.pcap = pcap }
        }
        public init(kernel: VMSensorKernel, plugin: String, logPath: String) {
            self.kernel = kernel; self.plugin = plugin; self.logPath = logPath; self.managedSetPath = logPath + ".managed.json"
        }
    }

    public struct Result: Sendable {
        public var summary: TraceSummary
        public var managed: ManagedSet
        public var stats: VMIRing.Stats
        public var events: UInt64
        public var unreturned: UInt64
        public var egressAttempts: [String]
        /// Frames the guest sent through the relay, and those dropped (by process and destination).
        public var framesSeen: UInt64 = 0
        public var framesDropped: UInt64 = 0
        public var droppedFlows: [String: UInt64] = [:]
        /// User code sampled running (with `execSampleEvery`), per second.
        public var execution = ExecutionSamples()
        /// A record kanshi could not decode (reading stopped there), or a log write error.
        public var error: String?
    }

    /// Where the execution samples' windows go (CSV), beside the behaviour log.
    public var executionPath: String { config.logPath + ".exec.csv" }

    let config: Config
    let ring: VMIRing
    let log: EventLog
    let behaviour: GuestBehaviour
    let relay: EgressRelay?
    /// Guards `behaviour`: the consumer thread and the relay's decisions.
    private let model = NSLock()
    private let lock = NSLock()
    // SAFETY: `running` and `failure` are touched under `lock`; `behaviour` only by the consumer thread
    // until `stop` has joined it.
    private var running = false
    private var failure: String?
    /// Why the guest's network was cut (`isolate`), if it was: every frame is dropped from then on.
    private var isolated: String?
    private let done = DispatchSemaphore(value: 0)
    private var thread: Thread?

    public init(config: Config) throws {
        guard FileSystem.exists(config.plugin) else { throw VMSensorError.pluginMissing(config.plugin) }
        guard Self.ringSizes.contains(config.ringBytes), config.ringBytes & (config.ringBytes - 1) == 0 else {
            throw VMSensorError.ring("a ring of \(config.ringBytes) bytes: give a power of two from 64 KiB to 1 GiB")
        }
        self.config = config
        let set = try ManagedSet.load(path: config.managedSetPath, protect: config.behaviour.protect)
        do {
            ring = try VMIRing(name: "kanshi-vmi-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).ring", capacity: config.ringBytes)
        } catch { throw VMSensorError.ring("\(error)") }
        log = try EventLog(path: config.logPath, writer: Self.logWriter(vcpus: config.vcpus))
        behaviour = GuestBehaviour(options: config.behaviour, log: log, managed: set)
        do { relay = try config.network.map { try EgressRelay(directory: $0.directory, pcap: $0.pcap) } } catch {
            throw VMSensorError.network("\(error)")
        }
    }

    /// The ring's file under /dev/shm (removed once QEMU has mapped it).
    public var ringPath: String { ring.path }

    /// QEMU arguments that load the plugin on this sensor's ring (and the network through kanshi).
    public var qemuArguments: [String] {
        var ram: [String] = []
        let mib = config.guestMemoryMiB.flatMap { $0 > 0 && $0 < Self.onePieceRAMLimitMiB ? $0 : nil }
        let ramBytes = mib.map { UInt64($0) << 20 }
        if let mib {
            ram = config.ramBackend ?? ["-object", "memory-backend-memfd,id=kanshi-ram,size=\(mib)M,share=on", "-machine", "memory-backend=kanshi-ram"]
        }
        let plugin = config.kernel.pluginArguments(ring: ring.path, allCalls: config.behaviour.allCalls, guestRAMBytes: ramBytes,
                                                   execEvery: config.execSampleEvery)
        return ram + ["-plugin", config.plugin + "," + plugin] + (relay?.qemuArguments ?? [])
    }

    /// Who writes the behaviour log. Each vCPU is a busy thread, and the reader is
    /// another; a log writer thread as well takes a core from a vCPU unless the host
    /// has room for all of them and QEMU's own thread (on 2 cores with `--all-calls`,
    /// kanshi's reader and writer took 72 % and 52 % of the cores while the vCPU got 69 %;
    /// with the reader writing, one kanshi thread and the vCPU each had a core).
    /// The ring in front of the reader is the queue either way.
    static func logWriter(vcpus: Int) -> EventLog.Writer {
        ProcessInfo.processInfo.activeProcessorCount >= vcpus + 3 ? .thread : .caller
    }

    /// Sizes a ring may have: room for the largest record many times over, and not absurd.
    public static let ringSizes = (64 << 10)...(1 << 30)

    /// The pc machine splits RAM from 3.5 GiB up around the 4 GiB hole.
    static let onePieceRAMLimitMiB = 3584

    /// Starts decoding on a thread of its own (and relaying the guest's frames).
    public func start() {
        relay?.start { [self] frame in self.allow(frame) }
        lock.lock(); running = true; lock.unlock()
        ring.setReading(true)
        let t = Thread { [self] in self.consumeLoop() }
        t.name = "kanshi-vm-sensor"
        thread = t
        t.start()
    }

    /// Once QEMU has loaded the plugin (it mapped the ring), the ring's name is removed, so
    /// nothing is left behind whatever happens next. Returns false if it did not load in time.
    public func waitForPlugin(seconds: Double) -> Bool {
        let deadline = FileSystem.monotonicNs() + UInt64(seconds * 1e9)
        while FileSystem.monotonicNs() < deadline {
            if ring.stats.state != 0 { ring.removeFile(); return true }
            if ring.stats.error != nil { return false }
            usleep(20_000)
        }
        return false
    }

    public var stats: VMIRing.Stats { ring.stats }

    /// Stops (after QEMU has ended), reads what is left, closes the log and saves the managed set.
    public func stop() -> Result {
        let relayError = relay?.stop()
        lock.lock(); running = false; lock.unlock()
        if thread != nil { done.wait() }
        ring.removeFile()
        model.lock()
        let (summary, managed) = behaviour.finish()
        var result = Result(summary: summary, managed: managed, stats: ring.stats, events: behaviour.events,
                            unreturned: behaviour.unreturned, egressAttempts: behaviour.egressAttempts,
                            framesSeen: relay?.framesSeen ?? 0, framesDropped: relay?.framesDropped ?? 0,
                            droppedFlows: behaviour.droppedFrames, error: nil)
        result.execution = behaviour.execution
        model.unlock()
        if config.execSampleEvery > 0 {
            do { try result.execution.csv.write(toFile: executionPath, atomically: true, encoding: .utf8) } catch {
                result.error = (result.error.map { $0 + "; " } ?? "") + "writing \(executionPath) failed: \(error)"
            }
        }
        lock.lock(); result.error = failure; lock.unlock()
        if let relayError { result.error = (result.error.map { $0 + "; " } ?? "") + "network relay: \(relayError)" }
        let writeError = log.close()
        if writeError != 0 { result.error = (result.error.map { $0 + "; " } ?? "") + "writing \(config.logPath) failed (errno \(writeError))" }
        result.summary.dropped = log.dropped
        do { try managed.save(path: config.managedSetPath) } catch { result.error = (result.error.map { $0 + "; " } ?? "") + "\(error)" }
        return result
    }

    /// Fewer records than this in a pass and the reader naps before the next one.
    static let batchRecords = 4096
    static let batchSleepUs: useconds_t = 500
    static let idleSleepUs: useconds_t = 2_000

    private func consumeLoop() {
        // A reader that stops (a record it cannot decode) must not leave the guest held.
        defer { ring.setReading(false); done.signal() }
        while true {
            lock.lock(); let go = running, failed = failure != nil; lock.unlock()
            if failed { return }
            let n = catchUp()
            log.flush()
            if !go && n == 0 { return }
            // Read in batches: a reader right behind the plugin would pull each record's cache
            // lines away from the vCPU writing the next one. (The egress relay reads the ring
            // itself before each decision, so no verdict waits for this loop.)
            if n < Self.batchRecords { usleep(n == 0 ? Self.idleSleepUs : Self.batchSleepUs) }
        }
    }

    /// Reads what the plugin has published (under the model's lock); -1 after a decoding error.
    @discardableResult
    private func catchUp() -> Int {
        model.lock(); defer { model.unlock() }
        do { return try ring.poll { behaviour.consume($0) } } catch {
            lock.lock(); failure = "\(error)"; lock.unlock()
            return 0
        }
    }

    /// Cuts the guest's network: every frame it sends from now on is dropped (and counted as such).
    /// False when the guest has no network through the sensor (`Config.network`).
    @discardableResult
    public func isolate(why: String) -> Bool {
        guard relay != nil else { return false }
        lock.lock(); isolated = isolated ?? why; lock.unlock()
        return true
    }

    /// The relay's question for each frame. The plugin publishes a call at its entry, before the
    /// guest kernel can build the frame, so reading the ring first makes the frame's owner known.
    private func allow(_ frame: [UInt8]) -> Bool {
        let f = EthernetFrame(frame)
        model.lock(); defer { model.unlock() }
        do { try ring.poll { behaviour.consume($0) } } catch {
            lock.lock(); failure = "\(error)"; lock.unlock()
            return false  // fail closed
        }
        lock.lock(); let failed = failure != nil; let cut = isolated; lock.unlock()
        if let cut {
            behaviour.recordDrop(f, pid: nil, why: "the guest's network is cut: \(cut)", time: FileSystem.nowNs())
            return false
        }
        let blind = !config.behaviour.protect.isEmpty && !ring.stats.calibrated && f.kind != .link
        let decision: EgressDecision = failed ? .drop(pid: nil, why: "the VM sensor stopped reading the plugin's ring (fail closed)")
            : blind ? .drop(pid: nil, why: "the VM sensor has not found the guest kernel's system call entry yet, and paths are protected (fail closed)")
            : behaviour.decide(f, now: FileSystem.nowNs())
        guard case .drop(let pid, let why) = decision else { return true }
        behaviour.recordDrop(f, pid: pid, why: why, time: FileSystem.nowNs())
        return false
    }
}

/// Errors of the VM sensor, each saying what to fix.
public enum VMSensorError: Error, CustomStringConvertible, Sendable {
    case pluginMissing(String)
    case ring(String)
    case pluginFailed(String)
    case kernel(String)
    case network(String)

    public var description: String {
        switch self {
        case .pluginMissing(let p):
            "the VM sensor's QEMU plugin \(p) is missing: build it with swift build --product kanshi-vmi (or set KANSHI_VMI_PLUGIN)"
        case .ring(let why): "cannot make the VM sensor's ring under /dev/shm: \(why)"
        case .pluginFailed(let why): "the VM sensor's QEMU plugin did not start: \(why)"
        case .kernel(let why): "the VM sensor cannot watch this guest kernel: \(why)"
        case .network(let why): "the VM's network through kanshi failed: \(why)"
        }
    }
}
