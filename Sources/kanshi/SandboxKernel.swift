import ArgumentParser
import Foundation
import KanshiGuestKernel
import KanshiVMSensor

struct SandboxKernel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel",
        abstract: "Show what the VM sensor reads from the guest kernel image: release, symbols, structure offsets.",
        discussion: """
            Everything comes from the image itself (its kallsyms and BTF): no debug package, nothing \
            from inside the guest. Addresses are link-time; the running kernel adds its KASLR slide \
            (the sensor learns it at boot, and reports it). SYMBOL... prints those symbols' addresses, \
            one per line, as 0x... (for scripts; exit 1 if one is missing).
            """)

    @Option(help: "Guest directory (vmlinuz), default: the one kanshi sandbox build made.")
    var guest: String?

    @Option(help: "Sandbox directory (of kanshi sandbox build).")
    var dir: String = SandboxLayout.defaultDirectory

    @Flag(help: "Print as JSON.")
    var json = false

    @Argument(help: "Symbols to look up.")
    var symbols: [String] = []

    func run() throws {
        let path = (guest ?? SandboxLayout.guest(dir)) + "/vmlinuz"
        let kernel: GuestKernel
        do { kernel = try GuestKernel(path: path) } catch { throw CLIError("\(error)") }
        if !symbols.isEmpty {
            let table: Kallsyms
            do { table = try kernel.kallsyms() } catch { throw CLIError("\(path): \(error)") }
            var missing: [String] = []
            for s in symbols {
                if let a = table.address(of: s) { Output.line("0x" + String(a, radix: 16)) } else { missing.append(s) }
            }
            if !missing.isEmpty { throw CLIError("\(path): no symbol \(missing.joined(separator: ", ")) in the kernel's kallsyms") }
            return
        }
        let facts: VMSensorKernel
        do { facts = try VMSensorKernel(kernel: kernel) } catch { throw CLIError("\(error)") }
        func hex(_ v: UInt64?) -> String { v.map { "0x" + String($0, radix: 16) } ?? "-" }
        if json {
            let o: [String: Any] = [
                "release": facts.release, "image": path,
                "symbols": ["entry_SYSCALL_64": hex(facts.entrySyscall64), "do_syscall_64": hex(facts.syscall64),
                            "do_fast_syscall_32": hex(facts.fastSyscall32), "int80": hex(facts.int80), "do_exit": hex(facts.doExit),
                            "current_task": hex(facts.currentTask)],
                "offsets": ["task_struct.pid": facts.taskPid, "task_struct.tgid": facts.taskTgid, "task_struct.comm": facts.taskComm,
                            "task_struct.real_parent": facts.taskRealParent],
                "entrySignature": facts.entrySignature.map { String(format: "%02x", $0) }.joined(),
            ]
            Output.line(try Output.json(o))
            return
        }
        Output.line("""
            kernel \(facts.release) (\(path))
              system call entry   entry_SYSCALL_64 \(hex(facts.entrySyscall64)) (signature \(facts.entrySignature.map { String(format: "%02x", $0) }.joined()))
              hooks               do_syscall_64 \(hex(facts.syscall64)), 32-bit \(hex(facts.fastSyscall32)), int 0x80 \(hex(facts.int80)), do_exit \(hex(facts.doExit))
              current task        per-cpu current_task at +\(hex(facts.currentTask))
              task_struct         pid +0x\(String(facts.taskPid, radix: 16)), tgid +0x\(String(facts.taskTgid, radix: 16)), comm +0x\(String(facts.taskComm, radix: 16)), real_parent +0x\(String(facts.taskRealParent, radix: 16))
            """)
    }
}
