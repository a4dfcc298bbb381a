@testable import KanshiMount
import Testing

@Suite struct MountTableTests {
    @Test func unescapesOctal() {
        #expect(MountTable.unescape("/mnt/my\\040disk") == "/mnt/my disk")
        #expect(MountTable.unescape("/a\\011b\\134c") == "/a\tb\\c")
        #expect(MountTable.unescape("/plain") == "/plain")
        #expect(MountTable.unescape("/trailing\\04") == "/trailing\\04", "an incomplete escape is kept as is")
    }

    @Test func readsThisProcessesMounts() {
        let entries = MountTable.entries()
        #expect(entries.contains { $0.mountPoint == "/" }, "the root file system is mounted")
        #expect(entries.allSatisfy { $0.device.contains(":") && !$0.fileSystemType.isEmpty })
        #expect(MountTable.isMountPoint("/"))
    }
}
