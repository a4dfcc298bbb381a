import ArgumentParser
import Foundation
import KanshiGuestKernel
import KanshiMemory
import KanshiSandbox
import KanshiSystem

/// Which guest memory a memory command reads: a running sandbox's RAM or a LiME image.
struct GuestMemoryOptions: ParsableArguments {
    @Option(help: "Read this LiME image (kanshi sandbox run --memory-dump, kanshi sandbox dump) instead of a running sandbox.")
    var image: String?

    @Option(help: "The shared RAM of the running sandbox to read (/dev/shm/kanshi-ram-*; default: the only one running).")
    var ram: String?

    @Option(help: "With --image: the guest directory whose kernel the image holds (default: the one kanshi sandbox build made).")
    var guest: String?

    @Option(help: "Sandbox directory (of kanshi sandbox build).")
    var dir: String = SandboxLayout.defaultDirectory

    func validate() throws {
        if image != nil && ram != nil { throw ValidationError("give --image or --ram, not both") }
    }

    func source() throws -> GuestMemorySource {
        do {
            if let image { return try GuestMemorySource(image: image, guestDirectory: guest ?? SandboxLayout.guest(dir)) }
            return try GuestMemorySource(ram: ram)
        } catch { throw CLIError("\(error)") }
    }

    func view() throws -> (GuestMemorySource, GuestKernelView) {
        let s = try source()
        do { return (s, try s.kernelView()) } catch { throw CLIError("\(s.running.map { "sandbox \($0.ram)" } ?? image ?? ""): \(error)") }
    }
}

struct SandboxPS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps",
        abstract: "List the guest's processes from its kernel's task list, read from outside the guest.",
        discussion: """
            No helper runs in the guest: Kanshi finds the kernel in the guest's physical memory \
            (its banner, then its own page tables, KASLR included), and walks init_task's task \
            list with offsets from the kernel image's BTF. The memory is a running sandbox's \
            RAM (shared through /dev/shm while it runs) or a LiME image (--image). Kernel \
            threads are shown in [brackets], as ps does. A running guest changes under the \
            reader: tasks that could not be read are reported, not guessed.
            """)

    @OptionGroup var source: GuestMemoryOptions

    @Flag(help: "Print JSON: {processes: [{pid, ppid, uid, name, kernelThread, startSeconds, task, pageTable}], gaps: [...]}.")
    var json = false

    func run() throws {
        let (_, view) = try source.view()
        let list = view.processes()
        if json {
            let o: [String: Any] = [
                "processes": list.processes.map { p -> [String: Any] in
                    var d: [String: Any] = ["pid": p.pid, "ppid": p.ppid, "name": p.name, "kernelThread": p.kernelThread,
                                            "task": hexAddress(p.task)]
                    if let u = p.uid { d["uid"] = u }
                    if let s = p.startNs { d["startSeconds"] = Double(s) / 1e9 }
                    if let t = p.pageTable { d["pageTable"] = hexAddress(t) }
                    return d
                },
                "gaps": list.gaps,
            ]
            Output.line(try Output.json(o))
        } else {
            func pad(_ s: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
            Output.line([pad("PID", 7), pad("PPID", 7), pad("UID", 6), pad("START", 10), " NAME"].joined(separator: " "))
            for p in list.processes {
                let name = p.kernelThread ? "[\(p.name)]" : p.name
                let start = p.startNs.map { String(format: "%.2f", Double($0) / 1e9) } ?? "-"
                Output.line([pad("\(p.pid)", 7), pad("\(p.ppid)", 7), pad(p.uid.map { "\($0)" } ?? "-", 6), pad(start, 10), " " + name]
                    .joined(separator: " "))
            }
        }
        for g in list.gaps { Output.error("sandbox ps: \(g)") }
    }
}

struct SandboxMemory: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "One guest process's memory, through its page tables: its map, bytes at an address, a pattern's addresses.",
        discussion: """
            The process's top-level page table (its CR3) comes from its mm in the task list; \
            Kanshi walks it in the guest's physical memory (4- or 5-level paging, 2 MiB and \
            1 GiB pages). The map lists runs of pages: resident (with rwx), swapped out, \
            PROT_NONE, or pointing outside RAM. Only what the page tables hold is seen: pages \
            never touched or swapped out cannot be read (and are reported as such).
            """)

    @OptionGroup var source: GuestMemoryOptions

    @Option(help: "The guest process (pid of a thread-group leader).")
    var pid: Int32

    @Option(help: "Read bytes at this virtual address (hex with 0x, or decimal).")
    var read: String?

    @Option(help: "With --read: how many bytes.")
    var length: Int = 256

    @Option(help: "With --read: write the bytes to this file instead of a hex dump.")
    var out: String?

    @Option(help: "Find this text in the process's resident memory and print its virtual addresses.")
    var find: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        if let read, Self.address(read) == nil { throw ValidationError("--read \(read): give an address, hex (0x...) or decimal") }
        if length <= 0 || length > 1 << 30 { throw ValidationError("--length must be from 1 to 1 GiB") }
        if out != nil && read == nil { throw ValidationError("--out needs --read") }
        if let find, find.isEmpty { throw ValidationError("--find: give a non-empty text") }
    }

    static func address(_ text: String) -> UInt64? {
        text.hasPrefix("0x") || text.hasPrefix("0X") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }

    func run() throws {
        let (_, view) = try source.view()
        let process: GuestKernelView.Process
        do { process = try view.process(pid: pid) } catch { throw CLIError("sandbox memory: \(error)") }
        if let read, let address = Self.address(read) {
            let bytes: [UInt8]
            do { bytes = try view.read(process, at: address, count: length) } catch { throw CLIError("sandbox memory: \(error)") }
            if let out {
                do {
                    let f = try SystemFile(path: out, mode: [.readWrite, .create, .truncate])
                    try bytes.withUnsafeBytes { try f.write($0, at: 0) }
                } catch { throw CLIError("sandbox memory: cannot write \(out): \(error)") }
                Output.error("sandbox memory: \(bytes.count) bytes of pid \(pid) at 0x\(String(address, radix: 16)) written to \(out)")
            } else if json {
                Output.line(try Output.json(["pid": pid, "address": hexAddress(address),
                                             "hex": bytes.map { String(format: "%02x", $0) }.joined()]))
            } else {
                Output.line(HexDump.lines(bytes, address: address).joined(separator: "\n"))
            }
            return
        }
        if let find {
            let hits: [UInt64]
            do { hits = try view.find(Array(find.utf8), in: process) } catch { throw CLIError("sandbox memory: \(error)") }
            if json {
                Output.line(try Output.json(["pid": pid, "pattern": find, "addresses": hits.map { hexAddress($0) }]))
            } else {
                for h in hits { Output.line(hexAddress(h)) }
                if hits.isEmpty { Output.error("sandbox memory: \"\(find)\" is not in the resident memory of pid \(pid)") }
            }
            return
        }
        let runs: [GuestKernelView.MapRun]
        do { runs = try view.memoryMap(process) } catch { throw CLIError("sandbox memory: \(error)") }
        if json {
            Output.line(try Output.json(["pid": pid, "name": process.name, "runs": runs.map { r -> [String: Any] in
                ["start": hexAddress(r.start), "end": hexAddress(r.end), "state": r.state.rawValue,
                 "permissions": r.permissions, "bytes": r.end - r.start, "hugeBytes": r.hugeBytes]
            }]))
            return
        }
        Output.line("pid \(pid) (\(process.name)), page table at 0x\(String(process.pageTable ?? 0, radix: 16)):")
        var resident: UInt64 = 0
        for r in runs {
            if r.state == .resident { resident += r.end - r.start }
            let huge = r.hugeBytes > 0 ? "  (\(Output.bytes(r.hugeBytes)) in huge pages)" : ""
            let state = r.state.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
            Output.line(String(format: "%016llx-%016llx ", r.start, r.end) + "\(r.permissions) \(state) \(Output.bytes(r.end - r.start))" + huge)
        }
        Output.line("resident: \(Output.bytes(resident))")
    }
}

/// An address as the JSON output gives it: "0x7f...".
func hexAddress(_ a: UInt64) -> String { "0x" + String(a, radix: 16) }

/// Hex dump lines: address, 16 bytes, their printable characters.
enum HexDump {
    static func lines(_ bytes: [UInt8], address: UInt64) -> [String] {
        stride(from: 0, to: bytes.count, by: 16).map { i in
            let row = bytes[i..<min(i + 16, bytes.count)]
            let hex = row.map { String(format: "%02x", $0) }.joined(separator: " ")
            let text = String(row.map { (0x20..<0x7f).contains($0) ? Character(UnicodeScalar($0)) : "." })
            return String(format: "%016llx  ", address + UInt64(i)) + hex.padding(toLength: 47, withPad: " ", startingAt: 0) + "  " + text
        }
    }
}

struct SandboxDump: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Write a running sandbox's guest RAM to a LiME image (Volatility 3 reads it).",
        discussion: """
            The guest is paused through QMP for a consistent image and resumed after (--live: \
            it runs on, and the image may be torn where it changed meanwhile). The file is \
            never overwritten; a failed dump leaves none. Read it with kanshi sandbox ps \
            --image FILE, or Volatility 3 with kanshi sandbox symbols: \
            vol -f FILE -s SYMBOLS linux.pslist.
            """)

    @Option(help: "The LiME image to write (must not exist).")
    var out: String

    @Option(help: "The shared RAM of the running sandbox to dump (default: the only one running).")
    var ram: String?

    @Flag(help: "Do not pause the guest.")
    var live = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let source: GuestMemorySource
        do { source = try GuestMemorySource(ram: ram) } catch { throw CLIError("sandbox dump: \(error)") }
        let report: MemoryDump.Report
        do {
            report = try MemoryDump.take(memory: source.memory, to: out, qmp: source.running?.qmp, live: live, moment: "on-demand")
        } catch { throw CLIError("sandbox dump: \(error)") }
        let w = report.written
        if json {
            Output.line(try Output.json(["path": w.path, "ramBytes": w.ramBytes, "ranges": w.ranges, "seconds": w.seconds,
                                         "bytesPerSecond": w.bytesPerSecond, "paused": report.paused]))
        } else {
            Output.error("sandbox dump: \(w.path): \(Output.bytes(w.ramBytes)) of RAM in \(w.ranges) ranges, \(String(format: "%.2f s, %.2f GB/s", w.seconds, w.bytesPerSecond / 1e9)), \(report.paused ? "guest paused" : "live")")
        }
    }
}

struct SandboxSymbols: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "symbols",
        abstract: "Write a Volatility 3 symbol table for the sandbox's guest kernel, from its vmlinuz alone.",
        discussion: """
            The table (ISF JSON, xz-compressed, as DIR/linux/<release>.json.xz) is made from \
            what the VM sensor already reads from the kernel image: its BTF types and its \
            kallsyms addresses, with the banner Volatility matches in the image. No debug \
            package, no dwarf2json. Then: vol -f dump.lime -s DIR linux.pslist (dumps from \
            kanshi sandbox run --memory-dump or kanshi sandbox dump).
            """)

    @Option(help: "Directory to write the symbol table under (DIR/linux/<release>.json.xz).")
    var out: String

    @Option(help: "Guest directory whose vmlinuz to read (default: the one kanshi sandbox build made).")
    var guest: String?

    @Option(help: "Sandbox directory (of kanshi sandbox build).")
    var dir: String = SandboxLayout.defaultDirectory

    @Flag(help: "Write plain JSON (.json) instead of xz.")
    var uncompressed = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let vmlinuz = (guest ?? SandboxLayout.guest(dir)) + "/vmlinuz"
        guard FileSystem.exists(vmlinuz) else { throw CLIError("sandbox symbols: \(vmlinuz) is missing: build the sandbox (kanshi sandbox build) or give --guest DIR") }
        let start = FileSystem.monotonicNs()
        let table: VolatilitySymbols
        let path: String
        do {
            table = try VolatilitySymbols(vmlinuz: vmlinuz)
            path = try table.write(toDirectory: out, compression: uncompressed ? .none : .xz)
        } catch { throw CLIError("sandbox symbols: \(error)") }
        let seconds = Double(FileSystem.monotonicNs() - start) / 1e9
        if json {
            Output.line(try Output.json(["path": path, "release": table.release, "userTypes": table.userTypes, "symbols": table.symbols,
                                         "enums": table.enums, "seconds": seconds]))
        } else {
            Output.error("sandbox symbols: \(path): kernel \(table.release), \(table.userTypes) types, \(table.symbols) symbols, \(table.enums) enums (\(String(format: "%.1f s", seconds)))")
            Output.error("sandbox symbols: use it with vol -f DUMP -s \(out) linux.pslist")
        }
    }
}
