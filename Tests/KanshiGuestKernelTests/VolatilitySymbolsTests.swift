import Foundation
import KanshiGuestKernel
import Testing

/// The Volatility 3 symbol table of the Debian cloud kernel: layouts equal the
/// BTF's, addresses equal System.map's, the banner is the kernel's, the xz file
/// round-trips, and (with Volatility installed) the document passes Volatility's
/// own ISF schema.
@Suite(.serialized, .enabled(if: KernelFixture.unavailable == nil, "\(KernelFixture.unavailable ?? "")"))
struct VolatilitySymbolsTests {
    /// The table, made once for all tests.
    static let table: Result<VolatilitySymbols, any Error> = Result { () throws in
        let kernel = try KernelFixture.kernel.get()
        let start = Date()
        let table = try VolatilitySymbols(kernel: kernel)
        print("volatility symbols: \(table.userTypes) user types, \(table.symbols) symbols (\(table.typedSymbols) typed), \(table.enums) enums, \(table.baseTypes) base types, \(table.json.count) bytes of JSON in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        return table
    }

    static func document() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(try table.get().json))
        return try #require(object as? [String: Any])
    }

    static func temporaryDirectory(_ name: String) -> String {
        NSTemporaryDirectory() + "kanshi-isf-\(getpid())-\(name)"
    }

    /// Struct sizes, member offsets and bitfields equal BTF+Layout's; typedefs are
    /// resolved; the base types Volatility reads by name are there.
    @Test func layoutsEqualBTF() throws {
        let kernel = try KernelFixture.kernel.get()
        let btf = try kernel.btf()
        let doc = try Self.document()
        let metadata = try #require(doc["metadata"] as? [String: Any])
        #expect(metadata["format"] as? String == "6.2.0")
        #expect((metadata["producer"] as? [String: Any])?["name"] as? String == "kanshi")

        let base = try #require(doc["base_types"] as? [String: [String: Any]])
        #expect(base["pointer"]?["size"] as? Int == 8 && base["pointer"]?["endian"] as? String == "little")
        for name in ["char", "int", "unsigned int", "long", "unsigned long", "long unsigned int", "void", "_Bool"] {
            #expect(base[name] != nil, "base type \(name)")
        }
        #expect(base["int"]?["signed"] as? Bool == true && base["unsigned int"]?["signed"] as? Bool == false)

        let types = try #require(doc["user_types"] as? [String: [String: Any]])
        #expect(types.count > 9_000)
        func fields(_ name: String) throws -> [String: [String: Any]] {
            try #require(types[name]?["fields"] as? [String: [String: Any]], "user type \(name)")
        }
        for name in ["task_struct", "mm_struct", "files_struct", "list_head", "dentry", "file", "qstr"] {
            #expect(types[name]?["size"] as? Int == (try btf.size(ofStruct: name)), "size of \(name)")
            #expect(types[name]?["kind"] as? String == "struct")
        }
        let task = try fields("task_struct")
        for member in ["pid", "tgid", "comm", "tasks", "mm", "active_mm", "files", "real_parent", "flags"] {
            #expect(task[member]?["offset"] as? Int == (try btf.offset("task_struct", member)), "task_struct.\(member)")
        }
        #expect(task["pid"]?["type"] as? [String: String] == ["kind": "base", "name": "int"], "pid_t resolves to int")
        let comm = try #require(task["comm"]?["type"] as? [String: Any])
        #expect(comm["kind"] as? String == "array" && comm["count"] as? Int == 16)
        #expect(comm["subtype"] as? [String: String] == ["kind": "base", "name": "char"])
        let tasks = try #require(task["tasks"]?["type"] as? [String: String])
        #expect(tasks == ["kind": "struct", "name": "list_head"])
        let mm = try #require(task["mm"]?["type"] as? [String: Any])
        #expect(mm["kind"] as? String == "pointer" && mm["subtype"] as? [String: String] == ["kind": "struct", "name": "mm_struct"])

        // A bitfield: task_struct.sched_reset_on_fork (unsigned int : 1).
        let reset = try btf.layout("task_struct", "sched_reset_on_fork")
        let field = try #require(task["sched_reset_on_fork"])
        let bitfield = try #require(field["type"] as? [String: Any])
        #expect(bitfield["kind"] as? String == "bitfield" && bitfield["bit_length"] as? Int == reset.bitfieldSize)
        let position = try #require(bitfield["bit_position"] as? Int), offset = try #require(field["offset"] as? Int)
        #expect(offset * 8 + position == reset.bitOffset)
        #expect(bitfield["type"] as? [String: String] == ["kind": "base", "name": "unsigned int"])

        // An anonymous union lifted by Volatility: file.f_llist/f_rcuhead (6.1) share one.
        let file = try fields("file")
        let anonymous = file.filter { $0.value["anonymous"] as? Bool == true }
        #expect(!anonymous.isEmpty, "struct file has an anonymous union")
        for (_, value) in anonymous {
            let ref = try #require(value["type"] as? [String: String])
            #expect(types[ref["name"] ?? ""] != nil, "anonymous member type \(ref) is a user type")
        }

        // Every struct/union/enum referenced anywhere is defined.
        let enums = try #require(doc["enums"] as? [String: [String: Any]])
        #expect(enums.count > 1_000)
        var dangling: Set<String> = []
        func check(_ type: Any?) {
            guard let type = type as? [String: Any], let kind = type["kind"] as? String else { return }
            switch kind {
            case "struct", "union": if types[type["name"] as? String ?? ""] == nil { dangling.insert("\(kind) \(type["name"] ?? "")") }
            case "enum": if enums[type["name"] as? String ?? ""] == nil { dangling.insert("enum \(type["name"] ?? "")") }
            case "base": if base[type["name"] as? String ?? ""] == nil { dangling.insert("base \(type["name"] ?? "")") }
            case "pointer", "array": check(type["subtype"])
            case "bitfield": check(type["type"])
            default: break
            }
        }
        for (_, t) in types { for (_, f) in t["fields"] as? [String: [String: Any]] ?? [:] { check(f["type"]) } }
        for (_, e) in enums { #expect(base[e["base"] as? String ?? ""] != nil) }
        #expect(dangling.isEmpty, "undefined types referenced: \(dangling.sorted().prefix(20))")
        let state = try #require(enums["pid_type"]?["constants"] as? [String: Int])
        #expect(state["PIDTYPE_PID"] == 0 && state["PIDTYPE_MAX"] != nil)
    }

    /// Symbol addresses equal System.map's; the objects Volatility reads by
    /// symbol are typed; the banner's constant data is the kernel's banner.
    @Test func symbolsEqualSystemMap() throws {
        let table = try Self.table.get()
        let doc = try Self.document()
        let symbols = try #require(doc["symbols"] as? [String: [String: Any]])
        #expect(symbols.count == table.symbols && symbols.count > 80_000)
        var map: [String: Set<UInt64>] = [:]
        for e in try KernelFixture.systemMapEntries() { map[e.name, default: []].insert(e.address) }
        var mismatches: [String] = []
        for (name, symbol) in symbols {
            let address = (symbol["address"] as? NSNumber)?.uint64Value ?? 0
            if !(map[name]?.contains(address) ?? false) { mismatches.append("\(name) 0x\(String(address, radix: 16))") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) symbols differ from System.map: \(mismatches.prefix(20))")
        for name in ["init_top_pgt", "init_task", "init_files", "init_mm", "linux_banner", "_text", "taint_flags",
                     "kallsyms_num_syms", "kallsyms_names", "kallsyms_markers", "kallsyms_token_table",
                     "kallsyms_token_index", "kallsyms_offsets", "kallsyms_relative_base"] {
            #expect(symbols[name] != nil, "symbol \(name)")
        }
        #expect(symbols["init_task"]?["type"] as? [String: String] == ["kind": "struct", "name": "task_struct"])
        #expect(symbols["init_files"]?["type"] as? [String: String] == ["kind": "struct", "name": "files_struct"])
        #expect(symbols["init_mm"]?["type"] as? [String: String] == ["kind": "struct", "name": "mm_struct"])
        let taint = try #require(symbols["taint_flags"]?["type"] as? [String: Any])
        #expect(taint["kind"] as? String == "array" && taint["count"] as? Int == 19, "6.1 has TAINT_FLAGS_COUNT 19: \(taint)")
        #expect(taint["subtype"] as? [String: String] == ["kind": "struct", "name": "taint_flag"])
        // tk_core's type is anonymous: found by its members (linux.boottime reads it).
        let tk = try #require(symbols["tk_core"]?["type"] as? [String: String])
        #expect(tk["kind"] == "struct" && tk["name"]?.hasPrefix("unnamed_") == true)
        let types = try #require(doc["user_types"] as? [String: [String: Any]])
        let tkFields = try #require(types[tk["name"] ?? ""]?["fields"] as? [String: Any])
        #expect(tkFields["timekeeper"] != nil && tkFields["seq"] != nil)
        // Per-cpu variables are typed from BTF.
        let current = try #require(symbols["current_task"]?["type"] as? [String: Any])
        #expect(current["kind"] as? String == "pointer")

        let encoded = try #require(symbols["linux_banner"]?["constant_data"] as? String)
        let banner = try #require(Data(base64Encoded: encoded))
        let text = String(decoding: banner, as: UTF8.self)
        #expect(text.hasPrefix("Linux version 6.1.0-57-cloud-amd64 "), "\(text)")
        #expect(banner.last == 0 && text.dropLast().hasSuffix("\n"), "the banner's bytes end with its newline and NUL")
        #expect(table.banner + "\0" == text)
        #expect(table.release == "6.1.0-57-cloud-amd64")
    }

    /// The xz file decompresses (with the xz CLI) to the document; `.none`
    /// writes the document itself; the directories are made.
    @Test func writesXZThatRoundTrips() throws {
        let table = try Self.table.get()
        let dir = Self.temporaryDirectory("write") + "/deeper"
        defer { try? FileManager.default.removeItem(atPath: Self.temporaryDirectory("write")) }
        let start = Date()
        let path = try table.write(toDirectory: dir)
        let elapsed = Date().timeIntervalSince(start)
        #expect(path == dir + "/linux/6.1.0-57-cloud-amd64.json.xz")
        let compressed = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Array(compressed.prefix(6)) == [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], "xz magic")
        print("volatility symbols: \(compressed.count) bytes xz (\(table.json.count) JSON) written in \(String(format: "%.2f", elapsed)) s")
        #expect(compressed.count < table.json.count / 5)
        if let xz = KernelFixture.which("xz") {
            let r = KernelFixture.run([xz, "-dc", path])
            #expect(r.status == 0, "xz -t: \(r.stderr)")
            #expect(r.stdout == Data(table.json))
        } else {
            #expect(!KernelFixture.requireAll, "xz is not installed (apt-get install xz-utils)")
        }
        let plain = try table.write(toDirectory: dir, compression: .none)
        #expect(plain == dir + "/linux/6.1.0-57-cloud-amd64.json")
        #expect(try Data(contentsOf: URL(fileURLWithPath: plain)) == Data(table.json))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/linux").sorted()
            == ["6.1.0-57-cloud-amd64.json", "6.1.0-57-cloud-amd64.json.xz"], "no temporary files left")
    }

    /// Where Volatility (.build/python, from scripts/setup.sh) is: its venv's python, or why not.
    static let volatilityPython: (path: String?, missing: String?) = {
        let python = KernelFixture.root.appendingPathComponent(".build/python/bin/python3").path
        let probe = KernelFixture.run([python, "-c", "import volatility3, jsonschema"])
        if probe.status == 0 { return (python, nil) }
        let reason = "Volatility 3 and jsonschema are not in \(python) (scripts/setup.sh installs them): \(probe.stderr.suffix(200))"
        return (nil, KernelFixture.requireAll ? nil : reason)
    }()

    /// The document passes Volatility's own schema for ISF 6.2.0.
    @Test(.enabled(if: volatilityPython.missing == nil, "\(volatilityPython.missing ?? "")"))
    func passesVolatilitySchema() throws {
        let python = try #require(Self.volatilityPython.path, "Volatility 3 is required (KANSHI_REQUIRE_PEERS=1) but not installed: run scripts/setup.sh")
        let table = try Self.table.get()
        let dir = Self.temporaryDirectory("schema")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try table.write(toDirectory: dir, compression: .none)
        let script = """
            import json, os, sys, jsonschema, volatility3.schemas as s
            schema = json.load(open(os.path.join(os.path.dirname(s.__file__), "schema-6.2.0.json")))
            jsonschema.validate(json.load(open(sys.argv[1])), schema)
            print("valid")
            """
        let r = KernelFixture.run([python, "-c", script, path])
        #expect(r.status == 0 && String(decoding: r.stdout, as: UTF8.self).contains("valid"), "schema check: \(r.stderr.suffix(1500))")
    }

    /// A directory that cannot be made names the path and the cause.
    @Test func unwritableDirectory() throws {
        let table = try Self.table.get()
        let file = Self.temporaryDirectory("plain-file")
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        do {
            _ = try table.write(toDirectory: file + "/symbols")
            Issue.record("writing under a regular file succeeded")
        } catch {
            guard case .symbolTableFile(let path, let reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(path == file + "/symbols/linux/6.1.0-57-cloud-amd64.json.xz")
            #expect(reason.contains("cannot create the directory"), "\(reason)")
            #expect(error.description.contains(path))
        }
    }
}

/// Inputs that are not kernels fail with errors that name the file.
struct VolatilitySymbolsBadInputTests {
    @Test func missingKernel() {
        do {
            _ = try VolatilitySymbols(vmlinuz: "/nonexistent/vmlinuz")
            Issue.record("a missing vmlinuz gave a table")
        } catch {
            guard case .unreadable(let path, _) = error else { Issue.record("unexpected \(error)"); return }
            #expect(path == "/nonexistent/vmlinuz")
            #expect(error.description.contains("/nonexistent/vmlinuz"))
        }
    }

    @Test func notAKernel() throws {
        let path = NSTemporaryDirectory() + "kanshi-isf-\(getpid())-garbage"
        try Data(repeating: 0x41, count: 4096).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: GuestKernelError.notAKernelImage(path: path, firstBytes: [UInt8](repeating: 0x41, count: 16))) {
            try VolatilitySymbols(vmlinuz: path)
        }
    }
}
