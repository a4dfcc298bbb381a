/// Signals sent to a guest process from outside, with no helper in the guest: Kanshi marks the
/// signal pending in the guest kernel's own state (the task's pending set and its
/// signal-pending flag), in the guest's RAM, and the kernel delivers it through its usual path.
public enum GuestSignals {
    /// SIGKILL (signal 9) in a sigset_t.
    static let killBit: UInt64 = 1 << 8
    /// TIF_SIGPENDING (bit 2) in x86-64's `thread_info.flags`.
    static let signalPendingBit: UInt64 = 1 << 2

    public struct Sent: Sendable, Equatable {
        public var process: GuestKernelView.Process
        /// SIGKILL was pending already (a kill asked twice).
        public var alreadyPending: Bool
    }

    /// Marks SIGKILL pending for guest process `pid` (a thread-group leader). It dies, with its
    /// threads, when it next returns to user mode: within a clock tick when it runs, after its
    /// current wait when it sleeps. The guest must be paused while this writes: the kernel
    /// changes the pending set without atomics, under its own lock.
    public static func kill(pid: Int32, view: GuestKernelView, ram: GuestRAM) throws(MemoryError) -> Sent {
        guard let flags = view.facts.task.threadFlags, let pending = view.facts.task.pendingSignal else {
            throw .cannotSignal(pid: pid, why: "the kernel's BTF has no task_struct.thread_info.flags or pending.signal")
        }
        guard ram.writable else { throw .cannotSignal(pid: pid, why: "the guest's RAM is open read-only here (only the run that shares it can write)") }
        guard let p = view.processes().processes.first(where: { $0.pid == pid }) else {
            throw .cannotSignal(pid: pid, why: "no process in the guest's task list (it has ended)")
        }
        guard !p.exiting else { throw .cannotSignal(pid: pid, why: "it is exiting (it has ended)") }
        guard !p.kernelThread else { throw .cannotSignal(pid: pid, why: "it is a kernel thread (\(p.name))") }
        guard let pendingAt = view.physical(ofKernel: p.task &+ UInt64(pending)),
              let flagsAt = view.physical(ofKernel: p.task &+ UInt64(flags)) else {
            throw .cannotSignal(pid: pid, why: "its task_struct at 0x\(String(p.task, radix: 16)) is not mapped")
        }
        // The signal first, then the flag that makes the kernel look for it.
        guard let before = ram.setBits(killBit, at: pendingAt), ram.setBits(signalPendingBit, at: flagsAt) != nil else {
            throw .cannotSignal(pid: pid, why: "its task_struct (physical 0x\(String(pendingAt, radix: 16))) is outside the shared RAM")
        }
        return Sent(process: p, alreadyPending: before & killBit != 0)
    }
}
