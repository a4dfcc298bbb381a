import KanshiGuestKernel
import Testing

/// A small BTF blob written by hand: anonymous unions and structs, a typedef'd
/// const member, a bitfield struct (kind_flag), arrays, a per-cpu DATASEC.
enum BTFFixture {
    struct Builder {
        var strings: [UInt8] = [0]
        var types: [UInt8] = []
        var count = 0

        mutating func name(_ s: String) -> UInt32 {
            if s.isEmpty { return 0 }
            let o = UInt32(strings.count)
            strings += Array(s.utf8) + [0]
            return o
        }
        mutating func u32(_ v: UInt32) { types += withUnsafeBytes(of: v.littleEndian, Array.init) }

        @discardableResult
        mutating func type(_ name: String, kind: UInt32, vlen: Int = 0, kindFlag: Bool = false, _ sizeOrType: UInt32, _ extra: [UInt32] = []) -> UInt32 {
            let n = self.name(name)
            u32(n)
            u32(UInt32(vlen) | kind << 24 | (kindFlag ? 1 << 31 : 0))
            u32(sizeOrType)
            for e in extra { u32(e) }
            count += 1
            return UInt32(count)
        }

        mutating func members(_ list: [(String, UInt32, UInt32)]) -> [UInt32] {
            list.flatMap { [name($0.0), $0.1, $0.2] }
        }

        func blob() -> [UInt8] {
            var out: [UInt8] = [0x9f, 0xeb, 1, 0]
            for v in [UInt32(24), 0, UInt32(types.count), UInt32(types.count), UInt32(strings.count)] {
                out += withUnsafeBytes(of: v.littleEndian, Array.init)
            }
            return out + types + strings
        }
    }

    static let blob: [UInt8] = {
        var b = Builder()
        let int = b.type("int", kind: 1, 4, [0x0100_0020])            // 1: int, 32 bits, signed
        let char = b.type("char", kind: 1, 1, [8])                     // 2
        let pid = b.type("pid_t", kind: 8, int)                        // 3: typedef int pid_t
        let constPid = b.type("", kind: 10, pid)                       // 4: const pid_t
        let comm = b.type("", kind: 3, 0, [char, int, 16])             // 5: char[16]
        let lhMembers = b.members([("next", 7, 0), ("prev", 7, 64)])
        _ = b.type("list_head", kind: 4, vlen: 2, 16, lhMembers)       // 6
        _ = b.type("", kind: 2, 6)                                     // 7: struct list_head *
        let inner = b.members([("pid", constPid, 0), ("tgid", pid, 32)])
        _ = b.type("", kind: 4, vlen: 2, 8, inner)                     // 8: anonymous struct { const pid_t pid; pid_t tgid; }
        let union = b.members([("", 8, 0), ("both", 9, 0)])
        _ = b.type("", kind: 5, vlen: 2, 8, union)                     // 9: anonymous union { struct {..}; ... }
        let flags = b.members([("a", int, 3 << 24 | 0), ("b", int, 5 << 24 | 3)])
        _ = b.type("bits", kind: 4, vlen: 2, kindFlag: true, 4, flags) // 10: struct bits { int a:3; int b:5; }
        let task = b.members([("flags", 10, 0), ("", 9, 64), ("comm", comm, 128), ("tasks", 6, 256)])
        _ = b.type("task_struct", kind: 4, vlen: 4, 48, task)          // 11
        _ = b.type("task_struct", kind: 7, 0)                          // 12: a forward declaration of the same name
        _ = b.type("current_task", kind: 14, 7, [1])                   // 13: VAR
        _ = b.type(".data..percpu", kind: 15, vlen: 1, 64, [13, 0x40, 8]) // 14: DATASEC
        return b.blob()
    }()
}

struct SyntheticBTFTests {
    @Test func membersThroughAnonymousTypedefsAndBitfields() throws {
        let btf = try BTF(section: BTFFixture.blob[...])
        #expect(btf.count == 14)
        #expect(try btf.offset("task_struct", "pid") == 8)
        #expect(try btf.offset("task_struct", "tgid") == 12)
        #expect(try btf.layout("task_struct", "pid").size == 4, "const pid_t -> int")
        #expect(try btf.offset("task_struct", "comm") == 16)
        #expect(try btf.layout("task_struct", "comm").size == 16)
        #expect(try btf.offset("task_struct", "tasks.prev") == 40)
        #expect(try btf.layout("task_struct", "tasks.next").size == 8)
        let b = try btf.layout("task_struct", "flags.b")
        #expect(b.bitOffset == 3 && b.bitfieldSize == 5 && b.offset == 0)
        #expect(try btf.size(ofStruct: "task_struct") == 48, "the complete struct wins over the FWD")
        #expect(btf.variableOffset("current_task", inSection: ".data..percpu") == 0x40)
        #expect(btf.variableOffset("nothing", inSection: ".data..percpu") == nil)
    }

    @Test func missingNamesAreNamed() throws {
        let btf = try BTF(section: BTFFixture.blob[...])
        #expect(throws: GuestKernelError.missingType("mm_struct")) { try btf.offset("mm_struct", "pgd") }
        #expect(throws: GuestKernelError.missingMember(type: "task_struct", member: "tasks.nope", at: "nope")) {
            try btf.offset("task_struct", "tasks.nope")
        }
        #expect(throws: GuestKernelError.missingMember(type: "task_struct", member: "pid.x", at: "x")) {
            try btf.offset("task_struct", "pid.x")
        }
        let message = GuestKernelError.missingMember(type: "task_struct", member: "tasks.nope", at: "nope").description
        #expect(message.contains("struct task_struct") && message.contains("\"tasks.nope\""))
    }

    @Test func damagedBlobsAreErrors() throws {
        let blob = BTFFixture.blob
        var badMagic = blob
        badMagic[0] ^= 0xff
        #expect(throws: GuestKernelError.self) { try BTF(section: badMagic[...]) }
        // Every truncation is an error or a smaller valid blob, never a trap.
        for cut in stride(from: 0, to: blob.count, by: 3) {
            _ = try? BTF(section: blob[..<cut])
        }
        #expect(throws: GuestKernelError.self) { try BTF(section: blob[..<40]) }
        var badKind = blob
        badKind[24 + 7] = 0x1f  // first type's kind := 31
        #expect {
            try BTF(section: badKind[...])
        } throws: { error in
            guard case GuestKernelError.badBTF(let offset, let detail) = error else { return false }
            return offset == 24 && detail.contains("unknown kind 31")
        }
        // Member type ids that point nowhere give errors, not traps.
        var wild = blob
        for i in stride(from: 24, to: wild.count - 4, by: 4) where wild[i] == 7 && wild[i + 1] == 0 { wild[i + 1] = 0x70 }
        if let btf = try? BTF(section: wild[...]) { _ = try? btf.layout("task_struct", "tasks.next") }
    }
}
