import Testing
@testable import KanshiVMSensor

@Suite struct ExecutionSamplesTests {
    /// Samples are counted per window: distinct code pages by address space and page, the
    /// address spaces; an empty window is left out and the open one closes at the end.
    @Test func samplesAreCountedPerWindowByPageAndAddressSpace() {
        let s: UInt64 = 1_000_000_000, base: UInt64 = 1_800_000_000 * s
        var x = ExecutionSamples()
        x.add(timeNs: base + 1, pageTable: 0x1000, ip: 0x40_1000)
        x.add(timeNs: base + 2, pageTable: 0x1000, ip: 0x40_1ff0)  // same page
        x.add(timeNs: base + 3, pageTable: 0x2000, ip: 0x40_1000)  // same address, another process
        x.add(timeNs: base + 4, pageTable: 0x1000, ip: 0x40_2000)
        x.add(timeNs: base + 3 * s + 9, pageTable: 0x2000, ip: 0x7f00_0000_1000)
        let w = x.allWindows
        #expect(w == [.init(startNs: base, samples: 4, pages: 3, spaces: 2), .init(startNs: base + 3 * s, samples: 1, pages: 1, spaces: 1)])
        #expect(x.total == 5)
        #expect(x.csv == "window_start_ns,exec_samples,exec_pages,exec_spaces\n\(base),4,3,2\n\(base + 3 * s),1,1,1\n")
        #expect(ExecutionSamples().allWindows.isEmpty)
    }
}
