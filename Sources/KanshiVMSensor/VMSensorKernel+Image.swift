import Foundation
import KanshiGuestKernel
import KanshiSystem

extension VMSensorKernel {
    /// Bytes of entry_SYSCALL_64 the plugin compares: `swapgs` and the store of the user stack
    /// pointer, which boot-time patching leaves alone.
    static let signatureLength = 12

    /// What the plugin needs, read from the kernel image itself (kallsyms and BTF): no debug
    /// package, nothing from inside the guest. Throws naming everything missing.
    public init(kernel: GuestKernel) throws {
        let symbols = try kernel.kallsyms()
        let btf = try kernel.btf()
        var missing: [String] = []
        func symbol(_ names: String...) -> UInt64? { names.lazy.compactMap { symbols.address(of: $0) }.first }
        func required(_ name: String) -> UInt64 {
            if let a = symbols.address(of: name) { return a }
            missing.append("symbol \(name)")
            return 0
        }
        func offset(_ s: String, _ m: String) -> Int {
            do { return try btf.offset(s, m) } catch {
                missing.append("\(s).\(m) (\(error))")
                return 0
            }
        }
        let entry = required("entry_SYSCALL_64")
        let sys64 = required("do_syscall_64")
        let current = required("current_task")
        let pid = offset("task_struct", "pid"), tgid = offset("task_struct", "tgid")
        let comm = offset("task_struct", "comm"), parent = offset("task_struct", "real_parent")
        var signature: [UInt8] = []
        if entry != 0 {
            if let b = kernel.elf.read(virtualAddress: entry, count: Self.signatureLength) { signature = Array(b) }
            else { missing.append("the bytes of entry_SYSCALL_64 at 0x\(String(entry, radix: 16)) in the image") }
        }
        guard missing.isEmpty else {
            throw VMSensorError.kernel("kernel \(kernel.release) (\(kernel.path)) lacks \(missing.joined(separator: ", "))")
        }
        self.init(release: kernel.release, entrySyscall64: entry, entrySignature: signature, syscall64: sys64,
                  fastSyscall32: symbol("do_fast_syscall_32"), int80: symbol("do_int80_emulation", "do_int80_syscall_32"),
                  doExit: symbol("do_exit"), currentTask: current, taskPid: pid, taskTgid: tgid, taskComm: comm,
                  taskRealParent: parent)
        if let t = symbols.address(of: "cpu_current_top_of_stack") {
            topOfStack = t
        } else if let hot = symbols.address(of: "pcpu_hot"), let at = try? btf.offset("pcpu_hot", "top_of_stack") {
            topOfStack = hot + UInt64(at)
        }
        timerInterrupt = symbols.address(of: "asm_sysvec_apic_timer_interrupt")
    }

    /// The kernel facts for `vmlinuz`, kept in `guestDirectory/vm-sensor-kernel.json` and made
    /// again when the image changes (its size and modification time are the key).
    public static func cached(guestDirectory: String, vmlinuz: String) throws -> VMSensorKernel {
        try KernelFactsCache.cached("vm-sensor-kernel.json", guestDirectory: guestDirectory, vmlinuz: vmlinuz, format: 3) {
            let kernel: GuestKernel
            do { kernel = try GuestKernel(path: vmlinuz) } catch { throw VMSensorError.kernel("\(error)") }
            return try VMSensorKernel(kernel: kernel)
        }
    }
}
