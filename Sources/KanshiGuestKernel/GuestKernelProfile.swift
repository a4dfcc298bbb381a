import Foundation

/// What a VM-introspection plugin needs to know about one guest kernel:
/// link-time symbol addresses (add the KASLR slide at run time), structure
/// member offsets and structure sizes. Made from the kernel image alone.
public struct GuestKernelProfile: Codable, Sendable, Equatable {
    /// The kernel release, e.g. "6.1.0-57-cloud-amd64".
    public var release: String
    /// Link-time addresses by symbol name; per-cpu variables (current_task)
    /// are offsets into a CPU's per-cpu area.
    public var symbols: [String: UInt64]
    /// Byte offsets by "struct.member.path", e.g. "task_struct.pid", "file.f_path.dentry".
    public var offsets: [String: Int]
    /// Sizes in bytes by struct name, e.g. "task_struct".
    public var sizes: [String: Int]

    /// Symbols a profile must have.
    public static let requiredSymbols = [
        "entry_SYSCALL_64", "entry_SYSCALL_64_after_hwframe", "current_task", "init_task",
        "__per_cpu_offset", "_text", "linux_banner",
    ]
    /// Symbols taken when the kernel has them: the 32-bit entry points need
    /// CONFIG_IA32_EMULATION, and `int 0x80` enters at entry_INT80_compat up to
    /// the 2024 fixes, at asm_int80_emulation after them (Debian 6.1.0-57 has
    /// only the latter); the return path's name varies between versions.
    public static let optionalSymbols = [
        "entry_SYSCALL_compat", "entry_SYSENTER_compat", "entry_INT80_compat", "asm_int80_emulation",
        "swapgs_restore_regs_and_return_to_usermode",
    ]
    /// Member paths a profile must have, as "struct.member.path".
    public static let requiredOffsets = [
        "task_struct.pid", "task_struct.tgid", "task_struct.comm", "task_struct.real_parent",
        "task_struct.mm", "task_struct.files", "task_struct.tasks", "task_struct.flags",
        "mm_struct.pgd", "mm_struct.exe_file",
        "files_struct.fdt", "fdtable.fd", "fdtable.max_fds",
        "file.f_inode", "file.f_path.dentry", "file.f_flags", "file.f_mode",
        "dentry.d_name.name", "dentry.d_parent", "dentry.d_iname",
        "inode.i_ino", "inode.i_mode", "qstr.name", "list_head.next",
    ]
    /// Member paths taken when present.
    public static let optionalOffsets = ["task_struct.thread_group"]
    /// Struct sizes a profile must have.
    public static let requiredSizes = ["task_struct", "qstr"]

    public init(release: String, symbols: [String: UInt64], offsets: [String: Int], sizes: [String: Int]) {
        self.release = release
        self.symbols = symbols
        self.offsets = offsets
        self.sizes = sizes
    }

    /// Reads the kernel image at `vmlinuz` (a bzImage or a vmlinux) and fills
    /// every required and available optional item; throws
    /// `GuestKernelError.profileIncomplete` naming all that are missing.
    public init(vmlinuz path: String) throws(GuestKernelError) {
        try self.init(kernel: try GuestKernel(path: path))
    }

    /// Builds the profile of an already-read kernel.
    public init(kernel: GuestKernel) throws(GuestKernelError) {
        let btf = try kernel.btf()
        let kallsyms = try kernel.kallsyms()
        var missing: [String] = []
        var symbols: [String: UInt64] = [:]
        for name in Self.requiredSymbols + Self.optionalSymbols {
            if let address = kallsyms.address(of: name) {
                symbols[name] = address
            } else if name == "current_task", let offset = btf.variableOffset(name, inSection: ".data..percpu") {
                symbols[name] = UInt64(offset)  // kallsyms without CONFIG_KALLSYMS_ALL: BTF knows per-cpu variables
            } else if Self.requiredSymbols.contains(name) {
                missing.append("symbol \(name)")
            }
        }
        var offsets: [String: Int] = [:]
        for key in Self.requiredOffsets + Self.optionalOffsets {
            let (type, path) = Self.split(key)
            do throws(GuestKernelError) {
                offsets[key] = try btf.offset(type, path)
            } catch {
                if Self.requiredOffsets.contains(key) { missing.append("offset \(key)") }
            }
        }
        var sizes: [String: Int] = [:]
        for name in Self.requiredSizes {
            if let size = try? btf.size(ofStruct: name) { sizes[name] = size } else { missing.append("size \(name)") }
        }
        guard missing.isEmpty else { throw .profileIncomplete(missing: missing) }
        let release = kernel.release.isEmpty ? (kernel.bannerRelease(kallsyms) ?? "") : kernel.release
        self.init(release: release, symbols: symbols, offsets: offsets, sizes: sizes)
    }

    /// Checks that every required item is present; throws naming all that are not.
    public func validate() throws(GuestKernelError) {
        let missing = Self.requiredSymbols.filter { symbols[$0] == nil }.map { "symbol \($0)" }
            + Self.requiredOffsets.filter { offsets[$0] == nil }.map { "offset \($0)" }
            + Self.requiredSizes.filter { sizes[$0] == nil }.map { "size \($0)" }
        guard missing.isEmpty else { throw .profileIncomplete(missing: missing) }
    }

    /// "task_struct.pid" -> ("task_struct", "pid").
    static func split(_ key: String) -> (String, String) {
        guard let dot = key.firstIndex(of: ".") else { return (key, "") }
        return (String(key[..<dot]), String(key[key.index(after: dot)...]))
    }

    /// Writes the profile as JSON (sorted keys) to `path`.
    public func write(to path: String) throws(GuestKernelError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .profileFile(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// Reads a profile written by `write(to:)` and checks it is complete.
    public static func load(from path: String) throws(GuestKernelError) -> GuestKernelProfile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .profileFile(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let profile: GuestKernelProfile
        do {
            profile = try JSONDecoder().decode(GuestKernelProfile.self, from: data)
        } catch {
            throw .profileFile(path: path, reason: "not a guest kernel profile (JSON with release, symbols, offsets, sizes): \(error)")
        }
        try profile.validate()
        return profile
    }
}
