import Foundation
import Testing

@testable import KanshiMemory

/// Page tables laid out by hand in guest RAM, walked as a guest's would be.
@Suite struct PageWalkerTests {
    typealias E = PageWalker.Entry
    static let pml4: UInt64 = 0x10000, pdpt: UInt64 = 0x11000, pd: UInt64 = 0x12000, pt: UInt64 = 0x13000, pml5: UInt64 = 0x14000
    static let base: UInt64 = 0x7f00_0000_0000  // PML4 slot 0xfe
    static let table: UInt64 = E.present | E.writable | E.user

    /// 4 MiB of RAM with: 4 KiB pages (mapped, swapped, PROT_NONE, outside RAM), a 2 MiB page,
    /// a read-only 1 GiB page, a table outside RAM, and a 5-level root above it all.
    static func tables(_ s: Scratch) throws -> GuestRAM {
        let ram = try GuestRAM(creatingIn: s.path, size: 4 << 20)
        func put(_ at: UInt64, _ value: UInt64) { ram.memory.bytes.storeBytes(of: value.littleEndian, toByteOffset: Int(at), as: UInt64.self) }
        put(pml4 + 0xfe * 8, pdpt | table)
        put(pml4 + 0x10 * 8, 0x5000_0000 | table)  // a table beyond RAM
        put(pdpt + 0 * 8, pd | table)
        put(pdpt + 1 * 8, 0 | E.present | E.user | E.hugePage)  // 1 GiB, read-only
        put(pd + 0 * 8, pt | table)
        put(pd + 1 * 8, 0x20_0000 | E.present | E.writable | E.user | E.hugePage | E.noExecute | E.dirty)
        put(pt + 0 * 8, 0x30_0000 | E.present | E.writable | E.user | E.noExecute | E.accessed)
        put(pt + 1 * 8, 0x1234 << 12 | 0x40)  // swapped out: not present, no PROT_NONE bit
        put(pt + 2 * 8, 0x30_1000 | E.protNone)
        put(pt + 3 * 8, 0x9000_0000 | E.present | E.user)
        put(pml5, pml4 | table)
        for i in 0..<64 { ram.memory.bytes[0x30_0000 + i] = UInt8(i) }
        return ram
    }

    @Test func translatesEveryKindOfEntry() throws {
        let s = Scratch("walk")
        let ram = try Self.tables(s)
        let w = PageWalker(memory: ram, levels: 4)
        guard case .mapped(let p, let size, let f) = w.translate(Self.base + 0x123, root: Self.pml4) else {
            Issue.record("a 4 KiB page was not mapped"); return
        }
        #expect(p == 0x30_0123 && size == 4096)
        #expect(f == [.writable, .user, .accessed] && f.permissions == "rw-")
        #expect(w.translate(Self.base + 0x1000, root: Self.pml4) == .swapped(entry: 0x1234 << 12 | 0x40))
        #expect(w.translate(Self.base + 0x2000, root: Self.pml4) == .protNone(entry: 0x30_1000 | E.protNone))
        #expect(w.translate(Self.base + 0x3000, root: Self.pml4) == .outsideRAM(physical: 0x9000_0000, level: 1))
        #expect(w.translate(Self.base + 0x4000, root: Self.pml4) == .notMapped(level: 1))
        // 2 MiB and 1 GiB pages.
        #expect(w.translate(Self.base + 0x20_0000 + 0x1_2345, root: Self.pml4)
                == .mapped(physical: 0x21_2345, pageSize: 2 << 20, flags: [.writable, .user, .dirty]))
        #expect(w.translate(Self.base + (1 << 30) + 0x5678, root: Self.pml4)
                == .mapped(physical: 0x5678, pageSize: 1 << 30, flags: [.user, .executable]))
        // A table beyond RAM; nothing at all; the PCID bits of a CR3 value are not an address.
        #expect(w.translate(0x10 << 39, root: Self.pml4) == .outsideRAM(physical: 0x5000_0000, level: 3))
        #expect(w.translate(0x5 << 39, root: Self.pml4) == .notMapped(level: 4))
        #expect(w.translate(Self.base + 0x10, root: Self.pml4 | 0x5) == w.translate(Self.base + 0x10, root: Self.pml4))
        // A root outside RAM.
        #expect(w.translate(Self.base, root: 0x7000_0000) == .outsideRAM(physical: 0x7000_0000 + 0xfe * 8, level: 4))
    }

    @Test func fiveLevelsReachTheSamePages() throws {
        let s = Scratch("walk5")
        let ram = try Self.tables(s)
        let four = PageWalker(memory: ram, levels: 4), five = PageWalker(memory: ram, levels: 5)
        for va in [Self.base + 0x10, Self.base + 0x1000, Self.base + 0x20_0000, Self.base + (1 << 30), 0x10 << 39] {
            #expect(five.translate(va, root: Self.pml5) == four.translate(va, root: Self.pml4))
        }
        #expect(five.userSpace.upperBound == 1 << 56 && four.userSpace.upperBound == 1 << 47)
    }

    @Test func enumeratesPagesInAddressOrder() throws {
        let s = Scratch("walk-pages")
        let ram = try Self.tables(s)
        let w = PageWalker(memory: ram, levels: 4)
        var pages: [PageWalker.Page] = []
        w.pages(root: Self.pml4, in: w.userSpace) { pages.append($0) }
        #expect(pages.map(\.virtual) == [0x10 << 39, Self.base, Self.base + 0x1000, Self.base + 0x2000, Self.base + 0x3000,
                                         Self.base + 0x20_0000, Self.base + (1 << 30)])
        #expect(pages.map(\.size) == [1 << 39, 4096, 4096, 4096, 4096, 2 << 20, 1 << 30])
        #expect(pages[0].state == .outsideRAM(physical: 0x5000_0000, level: 3))
        #expect(pages[1].state == .mapped(physical: 0x30_0000, pageSize: 4096, flags: [.writable, .user, .accessed]))
        #expect(pages[4].state == .outsideRAM(physical: 0x9000_0000, level: 1))
        // A range selects what overlaps it.
        var some: [UInt64] = []
        w.pages(root: Self.pml4, in: Self.base + 0x1000..<Self.base + 0x3000) { some.append($0.virtual) }
        #expect(some == [Self.base + 0x1000, Self.base + 0x2000])
    }
}
