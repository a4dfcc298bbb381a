import Foundation
import KanshiJournal
import Logging
import NIOCore
import NIOPosix
@testable import KanshiBlock

/// A running Kanshi NBD server on a temporary image, journal and Unix socket.
final class ServerFixture {
    let dir: String
    let imagePath: String
    let journalPath: String
    let socketPath: String
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let pool = NIOThreadPool(numberOfThreads: 2)
    let journal: JournalWriter
    let disk: JournaledDisk
    var channel: (any Channel)?

    init(sizeMiB: Int = 8, readOnly: Bool = false, handshakeTimeout: TimeAmount = .seconds(30)) async throws {
        dir = NSTemporaryDirectory() + "kanshi-nbd-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        imagePath = dir + "/disk.img"
        journalPath = dir + "/journal"
        socketPath = dir + "/nbd.sock"
        _ = FileManager.default.createFile(atPath: imagePath, contents: nil)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: imagePath))
        try h.truncate(atOffset: UInt64(sizeMiB) << 20)
        try h.close()
        var logger = Logger(label: "test.nbd")
        logger.logLevel = .critical
        journal = try JournalWriter(directory: journalPath, logger: logger)
        disk = try JournaledDisk(imagePath: imagePath, journal: journal, readOnly: readOnly)
        pool.start()
        let server = NBDServer(backend: disk, name: "kanshi", group: group, threadPool: pool,
                               handshakeTimeout: handshakeTimeout, logger: logger)
        channel = try await server.listen(on: .unix(path: socketPath))
    }

    func client() throws -> RawNBDClient { try RawNBDClient(socketPath: socketPath) }

    func stop() async throws {
        try await channel?.close()
        try await group.shutdownGracefully()
        try await pool.shutdownGracefully()
        try journal.close()
    }

    /// LBAs and data of journaled writes.
    func journaledWrites() throws -> [(UInt64, [UInt8], Bool)] {
        var out: [(UInt64, [UInt8], Bool)] = []
        try JournalReader(directory: journalPath).forEachBlockEvent { e, d in
            if e.operation == .write { out.append((e.lba, Array(d), e.fua)) }
        }
        return out
    }

    func imageBytes(_ offset: Int, _ length: Int) -> [UInt8] {
        let all = FileManager.default.contents(atPath: imagePath)!
        return [UInt8](all[offset..<offset + length])
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}
