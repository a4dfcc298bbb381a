import CLZMA
import Foundation
import KanshiSystem

/// A Volatility 3 symbol table (an ISF JSON document, format 6.2.0) for a
/// guest kernel, made from its image alone: types and structure layouts from
/// the BTF, symbol addresses from kallsyms, the banner and other constant data
/// from the ELF. No DWARF, no debug package, no dwarf2json.
///
/// Volatility finds a table by its banner: `symbols.linux_banner.constant_data`
/// is matched against the memory image, then `init_task`, `init_files`,
/// `init_mm` (typed) give the KASLR shifts and `init_top_pgt` the page tables.
public struct VolatilitySymbols: Sendable {
    /// How `write(toDirectory:compression:)` stores the document.
    public enum Compression: Sendable {
        /// `<release>.json.xz`, as Volatility's symbol directories hold them.
        case xz
        /// Plain `<release>.json`.
        case none

        var suffix: String {
            switch self {
            case .xz: return ".json.xz"
            case .none: return ".json"
            }
        }
    }

    /// The ISF format written (Volatility's schema-6.2.0.json).
    public static let format = "6.2.0"
    /// The producer named in the metadata.
    public static let producerName = "kanshi"
    /// The version of this writer, bumped when what it writes changes.
    public static let producerVersion = "1.0.0"
    /// Volatility looks for Linux tables under this subdirectory of a symbol directory.
    public static let linuxDirectory = "linux"

    /// The kernel release, e.g. "6.1.0-57-cloud-amd64" (names the file).
    public let release: String
    /// The whole `linux_banner` string ("Linux version ...\n", without its NUL).
    public let banner: String
    /// The ISF document (UTF-8 JSON).
    public let json: [UInt8]
    /// Counts of the document's sections.
    public let userTypes: Int
    public let symbols: Int
    public let enums: Int
    public let baseTypes: Int
    /// Symbols given a type (BTF variables and the kernel objects Volatility reads by symbol).
    public let typedSymbols: Int

    /// Reads the kernel image at `vmlinuz` (a bzImage or a vmlinux) and builds its table.
    public init(vmlinuz path: String) throws(GuestKernelError) {
        try self.init(kernel: try GuestKernel(path: path))
    }

    /// Builds the table of an already-read kernel.
    public init(kernel: GuestKernel) throws(GuestKernelError) {
        let btf = try kernel.btf()
        let kallsyms = try kernel.kallsyms()
        guard let bannerSymbol = kallsyms.symbol(named: "linux_banner") else {
            throw .bannerNotFound(detail: "kallsyms has no linux_banner symbol (the kernel needs CONFIG_KALLSYMS_ALL)")
        }
        guard let bannerOffset = kernel.elf.fileOffset(ofVirtualAddress: bannerSymbol.address),
              let banner = kernel.elf.bytes.cString(bannerOffset, limit: Self.bannerLimit)
        else {
            throw .bannerNotFound(detail: "linux_banner at 0x\(String(bannerSymbol.address, radix: 16)) is not a NUL-terminated string in the image's data")
        }
        guard banner.hasPrefix(Self.bannerPrefix) else {
            throw .bannerNotFound(detail: "linux_banner at 0x\(String(bannerSymbol.address, radix: 16)) reads \"\(banner.prefix(Self.quoteLimit))\", not \"\(Self.bannerPrefix)...\"")
        }
        let release = kernel.release.isEmpty
            ? String(banner.dropFirst(Self.bannerPrefix.count).prefix { $0 != " " })
            : kernel.release
        guard !release.isEmpty, !release.contains("/") else {
            throw .bannerNotFound(detail: "no usable kernel release in the setup header or in \"\(banner.prefix(Self.quoteLimit))\"")
        }
        var writer = ISFWriter(btf: btf, kallsyms: kallsyms, elf: kernel.elf)
        // The banner's bytes as the kernel holds them: the string and its NUL.
        writer.write(bannerBytes: Array(banner.utf8) + [0])
        self.release = release
        self.banner = banner
        self.json = writer.out
        self.userTypes = writer.userTypeCount
        self.symbols = writer.symbolCount
        self.enums = writer.enumCount
        self.baseTypes = writer.baseTypeCount
        self.typedSymbols = writer.typedSymbolCount
    }

    /// Where `write` puts the table under `dir`: `dir/linux/<release>.json.xz` (or `.json`).
    public func path(inDirectory dir: String, compression: Compression = .xz) -> String {
        (dir.hasSuffix("/") ? dir : dir + "/") + Self.linuxDirectory + "/" + release + compression.suffix
    }

    /// Writes the table to `dir/linux/<release>.json.xz` (`.json` uncompressed),
    /// creating the directories, through a temporary file renamed into place.
    /// Returns the path. Pass `dir` to Volatility as `-s dir`.
    @discardableResult
    public func write(toDirectory dir: String, compression: Compression = .xz) throws(GuestKernelError) -> String {
        let target = path(inDirectory: dir, compression: compression)
        let folder = String(target[..<target.lastIndex(of: "/")!])
        do {
            try FileSystem.createDirectory(folder)
        } catch {
            throw .symbolTableFile(path: target, reason: "cannot create the directory \(folder): \(error)")
        }
        let bytes: [UInt8]
        switch compression {
        case .none: bytes = json
        case .xz:
            do throws(XZFailure) {
                bytes = try Self.xz(json)
            } catch {
                throw .symbolTableFile(path: target, reason: "xz compression failed: \(error.detail)")
            }
        }
        let temporary = target + ".tmp-\(Host.processID)"
        do {
            let file = try SystemFile(path: temporary, mode: [.readWrite, .create, .truncate])
            try file.write(bytes, at: 0)
            try file.sync()
        } catch {
            try? FileSystem.remove(temporary)
            throw .symbolTableFile(path: target, reason: "cannot write: \(error)")
        }
        do {
            try FileSystem.rename(temporary, target)
        } catch {
            try? FileSystem.remove(temporary)
            throw .symbolTableFile(path: target, reason: "cannot rename \(temporary) into place: \(error)")
        }
        return target
    }

    // MARK: - xz

    struct XZFailure: Error { var detail: String }

    /// xz preset: 1 makes 1.3 MB of a 6.1 kernel's 10 MB table in about a second;
    /// xz's default 6 saves a fifth of that in four times the time.
    static let xzPreset: UInt32 = 1
    /// The check the xz stream carries (what `xz` writes by default).
    static let xzCheck = LZMA_CHECK_CRC64
    /// Output grows by this much at a time.
    static let xzChunk = 1 << 20

    /// `bytes` as one xz stream.
    static func xz(_ bytes: [UInt8]) throws(XZFailure) -> [UInt8] {
        var stream = clzma_stream_init()
        let started = lzma_easy_encoder(&stream, xzPreset, xzCheck)
        guard started == LZMA_OK else { throw XZFailure(detail: "lzma_easy_encoder returned \(started.rawValue)") }
        defer { lzma_end(&stream) }
        var out = [UInt8](repeating: 0, count: xzChunk)
        var length = 0
        var code = LZMA_OK
        // SAFETY: next_in points into `bytes` and next_out into `out` for each
        // lzma_code call; `out` grows only between calls.
        bytes.withUnsafeBufferPointer { src in
            stream.next_in = src.baseAddress
            stream.avail_in = src.count
            while code == LZMA_OK {
                if out.count - length < xzChunk / 2 { out.append(contentsOf: repeatElement(0, count: xzChunk)) }
                let room = out.count - length
                out.withUnsafeMutableBufferPointer { dst in
                    stream.next_out = dst.baseAddress!.advanced(by: length)
                    stream.avail_out = room
                    code = lzma_code(&stream, LZMA_FINISH)
                }
                length += room - stream.avail_out
            }
        }
        guard code == LZMA_STREAM_END else { throw XZFailure(detail: "liblzma code \(code.rawValue)") }
        out.removeSubrange(length...)
        return out
    }

    // MARK: - The banner

    static let bannerPrefix = "Linux version "
    /// Longest banner read (the kernel's is about 150 bytes).
    static let bannerLimit = 1024
    /// At most this much of a bad banner is quoted in an error.
    static let quoteLimit = 80
}

/// Writes the ISF document: metadata, base_types, user_types, enums, symbols.
struct ISFWriter {
    let btf: BTF
    let kallsyms: Kallsyms
    let elf: ELFImage
    var out: [UInt8] = []
    /// The ISF name of every STRUCT, UNION, FWD and ENUM type id ("" for other kinds).
    var names: [String]
    /// STRUCT/UNION ids written as user types, and names of forward declarations without a definition.
    var aggregates: [UInt32] = []
    var placeholders: [(name: String, union: Bool)] = []
    /// ENUM ids written as enums.
    var enumIDs: [UInt32] = []
    /// Base types by name.
    var baseTypes: [String: BaseType] = [:]
    var userTypeCount = 0, symbolCount = 0, enumCount = 0, baseTypeCount = 0, typedSymbolCount = 0

    struct BaseType {
        var size: Int
        var signed: Bool
        var kind: String
    }

    static let pointerSize = 8
    /// Room reserved for the document (a 6.1 kernel's is about 10 MB).
    static let expectedSize = 16 << 20
    /// Descriptors nest no deeper than this (arrays of arrays, pointers to pointers).
    static let maxDepth = 32
    static let bitsPerByte = 8
    /// A BTF member's offset word with kind_flag: the bitfield width in the top 8 bits.
    static let bitfieldWidthShift: UInt32 = 24
    static let bitOffsetMask: UInt32 = 0xff_ffff
    /// Entries of x86_64's idt_table (IDT_ENTRIES).
    static let idtEntries = 256
    /// Entries of registered_fb (FB_MAX).
    static let framebuffers = 32
    /// The most taint flags read from taint_flags (TAINT_FLAGS_COUNT is 19 in 6.1).
    static let maxTaintFlags = 64

    /// C's base types under the names Volatility's own code and plugins use
    /// ("long unsigned int", "unsigned long", "pointer", ...), besides the BTF's.
    static let standardBaseTypes: [(String, BaseType)] = [
        ("pointer", BaseType(size: pointerSize, signed: false, kind: "int")),
        ("void", BaseType(size: 0, signed: false, kind: "void")),
        ("char", BaseType(size: 1, signed: true, kind: "char")),
        ("signed char", BaseType(size: 1, signed: true, kind: "char")),
        ("unsigned char", BaseType(size: 1, signed: false, kind: "char")),
        ("_Bool", BaseType(size: 1, signed: false, kind: "bool")),
        ("bool", BaseType(size: 1, signed: false, kind: "bool")),
        ("short", BaseType(size: 2, signed: true, kind: "int")),
        ("short int", BaseType(size: 2, signed: true, kind: "int")),
        ("unsigned short", BaseType(size: 2, signed: false, kind: "int")),
        ("short unsigned int", BaseType(size: 2, signed: false, kind: "int")),
        ("int", BaseType(size: 4, signed: true, kind: "int")),
        ("unsigned int", BaseType(size: 4, signed: false, kind: "int")),
        ("long", BaseType(size: 8, signed: true, kind: "int")),
        ("long int", BaseType(size: 8, signed: true, kind: "int")),
        ("unsigned long", BaseType(size: 8, signed: false, kind: "int")),
        ("long unsigned int", BaseType(size: 8, signed: false, kind: "int")),
        ("long long", BaseType(size: 8, signed: true, kind: "int")),
        ("long long int", BaseType(size: 8, signed: true, kind: "int")),
        ("unsigned long long", BaseType(size: 8, signed: false, kind: "int")),
        ("long long unsigned int", BaseType(size: 8, signed: false, kind: "int")),
        ("float", BaseType(size: 4, signed: true, kind: "float")),
        ("double", BaseType(size: 8, signed: true, kind: "float")),
    ]

    /// The type a symbol is given when BTF has no variable for it.
    enum KnownType {
        case aggregate(String)
        case pointer(to: String)
        case base(String)
        case array(of: String, count: Int)
        case pointers(to: String, count: Int)
        /// taint_flags: `struct taint_flag`s, counted in the image's data.
        case taintFlags
        /// A variable of an anonymous struct type (tk_core), known by its members' names.
        case anonymous(members: [String])
    }

    /// Kernel objects Volatility's Linux code reads by symbol (object_from_symbol);
    /// each is written only when the symbol and its type exist in this kernel.
    static let knownSymbols: [(String, KnownType)] = [
        ("init_task", .aggregate("task_struct")), ("init_files", .aggregate("files_struct")),
        ("init_mm", .aggregate("mm_struct")), ("init_fs", .aggregate("fs_struct")),
        ("init_pid_ns", .aggregate("pid_namespace")), ("init_uts_ns", .aggregate("uts_namespace")),
        ("init_nsproxy", .aggregate("nsproxy")), ("init_cred", .aggregate("cred")), ("init_net", .aggregate("net")),
        ("net_namespace_list", .aggregate("list_head")), ("modules", .aggregate("list_head")),
        ("tty_drivers", .aggregate("list_head")), ("super_blocks", .aggregate("list_head")),
        ("bpf_kallsyms", .aggregate("list_head")), ("ftrace_mod_maps", .aggregate("list_head")),
        ("ftrace_ops_trampoline_list", .aggregate("list_head")), ("mem_map", .pointer(to: "page")),
        ("ftrace_ops_list", .pointer(to: "ftrace_ops")), ("ftrace_list_end", .aggregate("ftrace_ops")),
        ("mod_tree", .aggregate("mod_tree_root")), ("prb", .pointer(to: "printk_ringbuffer")),
        ("printk_rb_static", .aggregate("printk_ringbuffer")), ("printk_rb_dynamic", .aggregate("printk_ringbuffer")),
        ("module_kset", .pointer(to: "kset")), ("prog_idr", .aggregate("idr")),
        ("tcp4_seq_afinfo", .aggregate("tcp_seq_afinfo")), ("tcp6_seq_afinfo", .aggregate("tcp_seq_afinfo")),
        ("udp4_seq_afinfo", .aggregate("udp_seq_afinfo")), ("udp6_seq_afinfo", .aggregate("udp_seq_afinfo")),
        ("udplite4_seq_afinfo", .aggregate("udp_seq_afinfo")), ("udplite6_seq_afinfo", .aggregate("udp_seq_afinfo")),
        ("raw_seq_ops", .aggregate("seq_operations")), ("raw6_seq_ops", .aggregate("seq_operations")),
        ("udp_seq_ops", .aggregate("seq_operations")), ("udp6_seq_ops", .aggregate("seq_operations")),
        ("tcp_seq_ops", .aggregate("seq_operations")), ("tcp4_seq_ops", .aggregate("seq_operations")),
        ("tcp6_seq_ops", .aggregate("seq_operations")), ("arp_seq_ops", .aggregate("seq_operations")),
        ("unix_seq_ops", .aggregate("seq_operations")), ("packet_seq_ops", .aggregate("seq_operations")),
        ("socket_file_ops", .aggregate("file_operations")), ("sockfs_dentry_operations", .aggregate("dentry_operations")),
        ("keyboard_notifier_list", .aggregate("atomic_notifier_head")),
        ("iomem_resource", .aggregate("resource")), ("ioport_resource", .aggregate("resource")),
        ("idt_table", .array(of: "gate_struct", count: idtEntries)),
        ("registered_fb", .pointers(to: "fb_info", count: framebuffers)), ("num_registered_fb", .base("int")),
        ("taint_flags", .taintFlags), ("tk_core", .anonymous(members: ["seq", "timekeeper"])), ("tainted_mask", .base("long unsigned int")),
        ("cap_last_cap", .base("int")), ("nr_threads", .base("int")),
        ("log_buf", .pointer(to: "char")), ("log_buf_len", .base("unsigned int")),
        ("vmemmap_base", .base("long unsigned int")), ("page_offset_base", .base("long unsigned int")),
        ("vmalloc_base", .base("long unsigned int")), ("phys_base", .base("long unsigned int")),
        ("jiffies", .base("long unsigned int")), ("jiffies_64", .base("long long unsigned int")),
        ("module_addr_min", .base("long unsigned int")), ("module_addr_max", .base("long unsigned int")),
        // Linker symbols: Volatility takes only their address (object_from_symbol(...).vol.offset).
        ("_text", .base("char")), ("_etext", .base("char")), ("_stext", .base("char")), ("stext", .base("char")),
        ("_sdata", .base("char")), ("_edata", .base("char")), ("_end", .base("char")),
        ("__start___tracepoints_ptrs", .base("int")), ("__stop___tracepoints_ptrs", .base("int")),
    ]

    init(btf: BTF, kallsyms: Kallsyms, elf: ELFImage) {
        self.btf = btf
        self.kallsyms = kallsyms
        self.elf = elf
        names = [String](repeating: "", count: btf.types.count)
        nameTypes()
        for (name, type) in Self.standardBaseTypes { baseTypes[name] = type }
        for (id, t) in btf.types.enumerated() where t.kind == .int || t.kind == .float {
            let name = btf.name(at: t.nameOffset)
            guard !name.isEmpty else { continue }
            if t.kind == .float {
                baseTypes[name] = BaseType(size: Int(t.sizeOrType), signed: true, kind: "float")
            } else if let e = btf.intEncoding(of: UInt32(id)) {
                let kind = e.bool ? "bool" : (e.char || name.hasSuffix("char")) ? "char" : "int"
                // Plain char is signed on x86_64; BTF leaves its sign unset.
                baseTypes[name] = BaseType(size: Int(t.sizeOrType), signed: e.signed || name == "char", kind: kind)
            }
        }
    }

    /// Gives every STRUCT, UNION, FWD and ENUM its ISF name: its own, or
    /// "unnamed_<id>" when anonymous, or "<name>_<id>" for a second definition
    /// of a name (the first complete one keeps the plain name, as BTF.aggregate
    /// picks). A FWD is its definition's name; one without a definition
    /// becomes an empty placeholder type.
    mutating func nameTypes() {
        var enumByName: [String: UInt32] = [:]
        for (i, t) in btf.types.enumerated() where t.kind == .enumeration || t.kind == .enumeration64 {
            let name = btf.name(at: t.nameOffset)
            guard !name.isEmpty else { continue }
            if let old = enumByName[name], btf.types[Int(old)].vlen > 0 { continue }
            enumByName[name] = UInt32(i)
        }
        var placed = Set<String>()
        for (i, t) in btf.types.enumerated() {
            let id = UInt32(i)
            let raw = btf.name(at: t.nameOffset)
            switch t.kind {
            case .structure, .union:
                names[i] = raw.isEmpty ? "unnamed_\(id)" : btf.aggregate(named: raw) == id ? raw : "\(raw)_\(id)"
                aggregates.append(id)
            case .enumeration, .enumeration64:
                if raw.isEmpty {
                    names[i] = "unnamed_\(id)"
                } else if enumByName[raw] == id {
                    names[i] = raw
                } else if t.vlen == 0 {  // a forward-declared enum: the defined one
                    continue
                } else {
                    names[i] = "\(raw)_\(id)"
                }
                enumIDs.append(id)
            default:
                break
            }
        }
        // Second pass: declarations name what they declare.
        for (i, t) in btf.types.enumerated() {
            let raw = btf.name(at: t.nameOffset)
            if t.kind == .forward {
                if let defined = btf.aggregate(named: raw) {
                    names[i] = names[Int(defined)]
                } else {
                    names[i] = raw.isEmpty ? "unnamed_\(i)" : raw
                    if placed.insert(names[i]).inserted { placeholders.append((names[i], t.kindFlag)) }
                }
            } else if (t.kind == .enumeration || t.kind == .enumeration64), names[i].isEmpty, let defined = enumByName[raw] {
                names[i] = names[Int(defined)]
            }
        }
    }

    // MARK: - The document

    mutating func write(bannerBytes: [UInt8]) {
        out.reserveCapacity(Self.expectedSize)
        raw("{\"metadata\":{\"format\":")
        string(VolatilitySymbols.format)
        raw(",\"producer\":{\"name\":")
        string(VolatilitySymbols.producerName)
        raw(",\"version\":")
        string(VolatilitySymbols.producerVersion)
        raw("}},\n\"base_types\":{")
        writeBaseTypes()
        raw("},\n\"user_types\":{")
        writeUserTypes()
        raw("},\n\"enums\":{")
        writeEnums()
        raw("},\n\"symbols\":{")
        writeSymbols(bannerBytes: bannerBytes)
        raw("}}\n")
    }

    mutating func writeBaseTypes() {
        var first = true
        for name in baseTypes.keys.sorted() {
            let t = baseTypes[name]!
            separator(&first)
            string(name)
            raw(":{\"size\":"); number(t.size)
            raw(",\"signed\":"); raw(t.signed ? "true" : "false")
            raw(",\"kind\":"); string(t.kind)
            raw(",\"endian\":\"little\"}")
        }
        baseTypeCount = baseTypes.count
    }

    mutating func writeUserTypes() {
        var entries: [(name: String, id: UInt32?, union: Bool)] = aggregates.map { (names[Int($0)], $0, false) }
        entries += placeholders.map { ($0.name, nil, $0.union) }
        entries.sort { $0.name < $1.name }
        var first = true
        for entry in entries {
            separator(&first)
            string(entry.name)
            guard let id = entry.id else {
                raw(entry.union ? ":{\"kind\":\"union\",\"size\":0,\"fields\":{}}" : ":{\"kind\":\"struct\",\"size\":0,\"fields\":{}}")
                continue
            }
            let t = btf.types[Int(id)]
            raw(t.kind == .union ? ":{\"kind\":\"union\",\"size\":" : ":{\"kind\":\"struct\",\"size\":")
            number(Int(t.sizeOrType))
            raw(",\"fields\":{")
            writeFields(of: id)
            raw("}}")
        }
        userTypeCount = entries.count
    }

    /// The members of a struct or union: offsets in bytes; bitfields with
    /// their bit position inside a storage unit of their type's size;
    /// anonymous structs and unions as "unnamed_field_<index>" marked anonymous
    /// (Volatility lifts their members into the container).
    mutating func writeFields(of id: UInt32) {
        let container = btf.types[Int(id)]
        var first = true
        for (index, m) in btf.members(of: id).enumerated() {
            var bitOffset = container.kindFlag ? Int(m.offset & Self.bitOffsetMask) : Int(m.offset)
            var width = container.kindFlag ? Int(m.offset >> Self.bitfieldWidthShift) : 0
            let target = btf.resolve(m.type)
            let targetKind = btf.types[Int(target)].kind
            let targetSize = btf.size(of: target)
            if width == 0, let e = btf.intEncoding(of: target), e.bits != targetSize * Self.bitsPerByte || e.bitOffset != 0 {
                width = e.bits  // a bitfield in BTF without kind_flag: the INT carries it
                bitOffset += e.bitOffset
            }
            let anonymous = m.nameOffset == 0
            if anonymous && targetKind != .structure && targetKind != .union { continue }  // unnamed padding
            separator(&first)
            if anonymous { string("unnamed_field_\(index)") } else { string(btf.name(at: m.nameOffset)) }
            raw(":{\"type\":")
            if width > 0 {
                let unitBits = max(targetSize, 1) * Self.bitsPerByte
                var start = bitOffset / unitBits * unitBits
                if bitOffset - start + width > unitBits { start = bitOffset / Self.bitsPerByte * Self.bitsPerByte }
                raw("{\"kind\":\"bitfield\",\"bit_position\":"); number(bitOffset - start)
                raw(",\"bit_length\":"); number(width)
                raw(",\"type\":"); descriptor(target)
                raw("},\"offset\":"); number(start / Self.bitsPerByte)
            } else {
                descriptor(m.type)
                raw(",\"offset\":"); number(bitOffset / Self.bitsPerByte)
            }
            raw(anonymous ? ",\"anonymous\":true}" : "}")
        }
    }

    mutating func writeEnums() {
        let sorted = enumIDs.sorted { names[Int($0)] < names[Int($1)] }
        var first = true
        for id in sorted {
            let t = btf.types[Int(id)]
            separator(&first)
            string(names[Int(id)])
            raw(":{\"size\":"); number(Int(t.sizeOrType))
            raw(",\"base\":"); string(enumBase(id))
            raw(",\"constants\":{")
            var firstConstant = true
            for e in btf.enumerators(of: id) {
                separator(&firstConstant)
                string(btf.name(at: e.nameOffset))
                raw(":")
                if t.kind == .enumeration64 && !t.kindFlag { number(UInt64(bitPattern: e.value)) } else { number(e.value) }
            }
            raw("}}")
        }
        enumCount = sorted.count
    }

    /// The base type an enum is read as: its size, signed when a constant is negative
    /// (or BTF's kind_flag says so).
    func enumBase(_ id: UInt32) -> String {
        let t = btf.types[Int(id)]
        let signed = t.kindFlag || btf.enumerators(of: id).contains { $0.value < 0 }
        let names = Self.integerNames[Int(t.sizeOrType)] ?? Self.integerNames[MemoryLayout<Int32>.size]!
        return signed ? names.signed : names.unsigned
    }

    /// C's integer type names by size in bytes.
    static let integerNames: [Int: (signed: String, unsigned: String)] = [
        MemoryLayout<Int8>.size: ("signed char", "unsigned char"),
        MemoryLayout<Int16>.size: ("short int", "short unsigned int"),
        MemoryLayout<Int32>.size: ("int", "unsigned int"),
        MemoryLayout<Int64>.size: ("long int", "long unsigned int"),
    ]

    mutating func writeSymbols(bannerBytes: [UInt8]) {
        // BTF's variables (the per-cpu ones, and every global with newer pahole).
        var variables: [String: UInt32] = [:]
        for t in btf.types where t.kind == .variable {
            variables[btf.name(at: t.nameOffset)] = t.sizeOrType
        }
        var known: [String: KnownType] = [:]
        for (name, type) in Self.knownSymbols { known[name] = type }
        // kallsyms_num_syms and the markers: unsigned int since 4.20, unsigned long before.
        let counter = kallsyms.tables.markerWidth == MemoryLayout<UInt32>.size ? "unsigned int" : "long unsigned int"
        known["kallsyms_num_syms"] = .base(counter)
        known["kallsyms_markers"] = .base(counter)
        var seen = Set<String>()
        var entries: [Kallsyms.Symbol] = []
        entries.reserveCapacity(kallsyms.symbols.count)
        for s in kallsyms.symbols + kallsymsTableSymbols() where !s.name.isEmpty && seen.insert(s.name).inserted {
            entries.append(s)
        }
        entries.sort { $0.name < $1.name }
        var first = true
        for s in entries {
            separator(&first)
            string(s.name)
            raw(":{\"address\":"); number(s.address)
            if s.name == "linux_banner" {
                raw(",\"type\":{\"kind\":\"array\",\"count\":"); number(bannerBytes.count)
                raw(",\"subtype\":{\"kind\":\"base\",\"name\":\"char\"}},\"constant_data\":")
                string(Data(bannerBytes).base64EncodedString())
                typedSymbolCount += 1
            } else if let type = variables[s.name] {
                raw(",\"type\":"); descriptor(type)
                typedSymbolCount += 1
            } else if let type = known[s.name], writeKnown(type, at: s.address) {
                typedSymbolCount += 1
            }
            raw("}")
        }
        symbolCount = entries.count
    }

    /// The kallsyms tables' own labels, which kallsyms leaves out of itself
    /// (linux.kallsyms reads the tables through them): where the finder found them.
    func kallsymsTableSymbols() -> [Kallsyms.Symbol] {
        let t = kallsyms.tables
        let count = Int(elf.bytes.u32(t.numSyms) ?? 0)
        var labels: [(String, Int)] = [
            ("kallsyms_num_syms", t.numSyms), ("kallsyms_names", t.names), ("kallsyms_markers", t.markers),
            ("kallsyms_token_table", t.tokenTable), ("kallsyms_token_index", t.tokenIndex),
        ]
        if let seqs = t.seqsOfNames { labels.append(("kallsyms_seqs_of_names", seqs)) }
        if t.relativeBase != nil {
            labels.append(("kallsyms_offsets", t.offsets))
            // kallsyms_relative_base follows the offsets (padded to 8) in both layouts.
            labels.append(("kallsyms_relative_base", t.offsets + alignUp(MemoryLayout<UInt32>.size * count, MemoryLayout<UInt64>.size)))
        } else {
            labels.append(("kallsyms_addresses", t.offsets))
        }
        return labels.compactMap { name, offset in
            elf.virtualAddress(ofFileOffset: offset).map { Kallsyms.Symbol(name: name, address: $0, type: "R") }
        }
    }

    /// Writes `,"type":...` for a known symbol if its types exist here; false if not.
    mutating func writeKnown(_ type: KnownType, at address: UInt64) -> Bool {
        func aggregate(_ name: String) -> String? {
            btf.aggregate(named: name).map { names[Int($0)] }
        }
        switch type {
        case .aggregate(let name):
            guard let isf = aggregate(name) else { return false }
            raw(",\"type\":"); structReference(isf)
        case .pointer(let name):
            if baseTypes[name] != nil {
                raw(",\"type\":{\"kind\":\"pointer\",\"subtype\":{\"kind\":\"base\",\"name\":"); string(name); raw("}}")
            } else {
                guard let isf = aggregate(name) else { return false }
                raw(",\"type\":{\"kind\":\"pointer\",\"subtype\":"); structReference(isf); raw("}")
            }
        case .base(let name):
            guard baseTypes[name] != nil else { return false }
            raw(",\"type\":{\"kind\":\"base\",\"name\":"); string(name); raw("}")
        case .array(let name, let count):
            guard let isf = aggregate(name) else { return false }
            raw(",\"type\":{\"kind\":\"array\",\"count\":"); number(count)
            raw(",\"subtype\":"); structReference(isf); raw("}")
        case .pointers(let name, let count):
            guard let isf = aggregate(name) else { return false }
            raw(",\"type\":{\"kind\":\"array\",\"count\":"); number(count)
            raw(",\"subtype\":{\"kind\":\"pointer\",\"subtype\":"); structReference(isf); raw("}}")
        case .taintFlags:
            guard let id = btf.aggregate(named: "taint_flag") else { return false }
            let count = taintFlagCount(at: address, size: Int(btf.types[Int(id)].sizeOrType))
            guard count > 0 else { return false }
            raw(",\"type\":{\"kind\":\"array\",\"count\":"); number(count)
            raw(",\"subtype\":"); structReference(names[Int(id)]); raw("}")
        case .anonymous(let members):
            guard let id = anonymousStruct(members: members) else { return false }
            raw(",\"type\":"); structReference(names[Int(id)])
        }
        return true
    }

    /// The first anonymous struct whose members include all of `members`.
    func anonymousStruct(members wanted: [String]) -> UInt32? {
        for (i, t) in btf.types.enumerated() where t.kind == .structure && t.nameOffset == 0 && t.vlen >= wanted.count {
            let names = Set(btf.members(of: UInt32(i)).map { btf.name(at: $0.nameOffset) })
            if wanted.allSatisfy(names.contains) { return UInt32(i) }
        }
        return nil
    }

    /// How many `struct taint_flag { char c_true; char c_false; bool module; }`
    /// entries the image holds at `address`: each a letter, a printable
    /// character and 0 or 1 (TAINT_FLAGS_COUNT is a macro, not in BTF).
    func taintFlagCount(at address: UInt64, size: Int) -> Int {
        let letters = UInt8(ascii: "A")...UInt8(ascii: "Z")
        let printable = UInt8(ascii: " ")...UInt8(ascii: "~")
        let (cTrue, cFalse, module) = (0, 1, 2)  // the members' offsets
        guard size > module, let data = elf.read(virtualAddress: address, count: size * Self.maxTaintFlags) else { return 0 }
        var count = 0
        while count < Self.maxTaintFlags {
            let e = data.startIndex + count * size
            guard letters.contains(data[e + cTrue]), printable.contains(data[e + cFalse]), data[e + module] <= 1 else { break }
            count += 1
        }
        return count
    }

    // MARK: - Type descriptors

    mutating func structReference(_ name: String) {
        raw("{\"kind\":\"struct\",\"name\":"); string(name); raw("}")
    }

    /// The ISF descriptor of BTF type `id`, typedefs and qualifiers stripped.
    mutating func descriptor(_ id: UInt32, depth: Int = 0) {
        let r = btf.resolve(id)
        let t = btf.types[Int(r)]
        if depth > Self.maxDepth { raw("{\"kind\":\"base\",\"name\":\"void\"}"); return }
        switch t.kind {
        case .int, .float:
            raw("{\"kind\":\"base\",\"name\":"); string(btf.name(at: t.nameOffset)); raw("}")
        case .pointer:
            raw("{\"kind\":\"pointer\",\"subtype\":"); descriptor(t.sizeOrType, depth: depth + 1); raw("}")
        case .array:
            let (element, count) = btf.array(r) ?? (0, 0)
            raw("{\"kind\":\"array\",\"count\":"); number(count)
            raw(",\"subtype\":"); descriptor(element, depth: depth + 1); raw("}")
        case .structure:
            raw("{\"kind\":\"struct\",\"name\":"); string(names[Int(r)]); raw("}")
        case .union:
            raw("{\"kind\":\"union\",\"name\":"); string(names[Int(r)]); raw("}")
        case .forward:
            let defined = btf.aggregate(named: btf.name(at: t.nameOffset)).map { btf.types[Int($0)].kind == .union } ?? t.kindFlag
            raw(defined ? "{\"kind\":\"union\",\"name\":" : "{\"kind\":\"struct\",\"name\":"); string(names[Int(r)]); raw("}")
        case .enumeration, .enumeration64:
            raw("{\"kind\":\"enum\",\"name\":"); string(names[Int(r)]); raw("}")
        case .function, .functionPrototype:
            raw("{\"kind\":\"function\"}")
        default:
            raw("{\"kind\":\"base\",\"name\":\"void\"}")
        }
    }

    // MARK: - JSON

    @inline(__always)
    mutating func raw(_ s: StaticString) {
        // SAFETY: a StaticString's bytes live for the program's lifetime.
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    @inline(__always)
    mutating func separator(_ first: inout Bool) {
        if first { first = false } else { out.append(UInt8(ascii: ",")) }
    }

    mutating func number<T: BinaryInteger>(_ n: T) {
        out.append(contentsOf: String(n).utf8)
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    mutating func string(_ s: String) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                out.append(UInt8(ascii: "\\")); out.append(b)
            case 0..<0x20:
                let digits = Array("0123456789abcdef".utf8)
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xf)])
            default:
                out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
