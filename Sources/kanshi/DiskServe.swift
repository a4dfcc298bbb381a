import ArgumentParser
import Foundation
import KanshiBlock
import KanshiCore
import KanshiHistory
import KanshiJournal
import KanshiRules
import KanshiSystem
import Logging
import NIOCore
import NIOPosix

struct Disk: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve and record disks.",
        subcommands: [DiskServe.self, DiskMount.self, DiskRestore.self, DiskRollback.self, DiskDiff_.self])
}

struct DiskServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a raw disk image over NBD and journal every block read and write.",
        discussion: """
            Clients connect with an NBD URI, printed on standard output once the server \
            listens, e.g.:
              qemu-io -f raw 'nbd+unix:///?socket=/tmp/k.sock' -c 'write -P 0x5a 0 64k'
              qemu-system-x86_64 -drive file=nbd+unix:///?socket=/tmp/k.sock,format=raw,if=virtio ...
            Any export name is accepted. Writes are journaled (time, LBA, length, entropy \
            and data) before they reach the image; reads are journaled with time, LBA and \
            length. FLUSH and FUA writes are durable in both before they are acknowledged. \
            Stop with Ctrl-C or SIGTERM: the journal is synced and the socket removed.
            """)

    @Option(help: "The raw disk image to serve (its size must be a multiple of 512 bytes).")
    var image: String

    @Option(help: "Journal directory (created if missing). Required unless --no-journal.")
    var journal: String?

    @Flag(help: "Serve without recording (a baseline for benchmarks).")
    var noJournal = false

    @Option(help: "Serve a read-only view of the disk as it was at this moment (RFC 3339, ns since the epoch, or seq:N), read from --journal; nothing is recorded.")
    var at: String?

    @Option(help: "Listen on this Unix socket path.")
    var socket: String?

    @Option(help: "Listen on this TCP port (0 picks a free one).")
    var port: Int?

    @Option(help: "Address to listen on with --port.")
    var host: String = "127.0.0.1"

    @Flag(help: "Refuse writes, trims and zeroing (EPERM); reads are still journaled.")
    var readOnly = false

    @Option(name: .customLong("segment-mib"), help: "Seal a journal segment and start a new one at this size, in MiB.")
    var segmentMiB: UInt64 = 256

    @Option(help: "Drop clients that have not finished the handshake within this many seconds.")
    var handshakeTimeout: Int64 = 30

    @Option(help: ArgumentHelp("Rules (a file, or builtin) run on the journal as it is written: block records and notes (ev = block_write, lba, length, entropy...); alerts as JSON lines on standard error (and --alerts, --webhook, --syslog).", valueName: "file|builtin"))
    var rules: String?
    @OptionGroup var alertSinks: AlertSinkOptions
    @OptionGroup var shipping: ShipOptions

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if rules != nil && (journal == nil || at != nil) { throw ValidationError("--rules needs the journal being written: give --journal DIR (and no --at)") }
        if socket == nil && port == nil { throw ValidationError("give --socket PATH or --port N") }
        if socket != nil && port != nil { throw ValidationError("give either --socket or --port, not both") }
        if let port, !(0...65535).contains(port) { throw ValidationError("--port \(port) is not a TCP port (0-65535)") }
        if journal == nil && !noJournal { throw ValidationError("give --journal DIR (or --no-journal to serve without recording)") }
        if journal != nil && noJournal { throw ValidationError("--journal and --no-journal contradict each other") }
        if segmentMiB < 1 { throw ValidationError("--segment-mib must be at least 1") }
        if shipping.ship != nil && (journal == nil || at != nil) { throw ValidationError("--ship needs the journal being written: give --journal DIR (and no --at)") }
        if handshakeTimeout < 1 { throw ValidationError("--handshake-timeout must be at least 1 second") }
        if at != nil && journal == nil { throw ValidationError("--at needs --journal DIR (the journal to read the past from)") }
        if let at { _ = try parseTime(at, option: "--at") }
    }

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.disk", level: global.logLevel)
        // Before anything else: a stop signal from now on is kept until we wait for it.
        let stop = try StopSignals()
        let writer: JournalWriter?
        let backend: any BlockBackend
        var disk: JournaledDisk?
        if let at {
            // A view of the past: the journal is only read (a live server may be writing it).
            let point = try parseTime(at, option: "--at")
            let (index, _) = try HistoryOptions.open(journal: journal!, image: image)
            do {
                backend = PastDisk(past: try PastImage(index: index, at: point, imagePath: image))
            } catch {
                throw CLIError("\(error)")
            }
            writer = nil
        } else {
            if let journal {
                do {
                    writer = try JournalWriter(directory: journal, options: .init(segmentBytes: segmentMiB << 20, staged: true), logger: logger)
                } catch {
                    throw CLIError("cannot open journal: \(error)")
                }
                if let r = writer?.recovery { FileHandle.standardError.write(Data("kanshi: journal recovered: \(r)\n".utf8)) }
                if let n = writer?.recoveredStagedBytes, n > 0 {
                    FileHandle.standardError.write(Data("kanshi: journal recovered: wrote \(n) bytes of records a server that stopped early (killed, or out of space) had left in memory\n".utf8))
                }
            } else {
                writer = nil
            }
            do {
                disk = try JournaledDisk(imagePath: image, journal: writer, readOnly: readOnly)
            } catch {
                throw CLIError("\(error)")
            }
            backend = disk!
            disk!.note("{\"event\":\"serve-start\",\"image\":\"\(FileSystem.absolutePath(image).jsonEscaped)\",\"size\":\(disk!.size),\"readOnly\":\(readOnly),\"pid\":\(ProcessInfo.processInfo.processIdentifier)}")
        }

        // Rules follow the journal as the server writes it.
        let ruleSet = try rules.map { try RulesFileOption.load($0 == "builtin" ? nil : $0) }
        let fanout = try ruleSet.map { _ in try alertSinks.sinks(standardOutput: false, standardError: true) }
        let ruleWatch = ruleSet.map { RuleWatch(engine: RuleEngine($0), source: .journal(journal!), fanout: fanout!) }
        ruleWatch?.start()
        let shipper = try at == nil ? shipping.start(journal: journal, log: nil) : nil
        if let shipper { disk?.admission = { shipper.waitForRoom() } }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let server = NBDServer(backend: backend, group: group, threadPool: pool,
                               handshakeTimeout: .seconds(handshakeTimeout), logger: logger)
        let endpoint: NBDServer.Endpoint = socket.map { .unix(path: $0) } ?? .tcp(host: host, port: port!)
        let channel: any Channel
        do {
            channel = try await server.listen(on: endpoint)
        } catch {
            throw CLIError("cannot listen on \(endpoint): \(error)")
        }
        var shown = endpoint
        if case .tcp(let h, _) = endpoint, let p = channel.localAddress?.port { shown = .tcp(host: h, port: p) }
        if let at {
            Output.line("kanshi: serving \(image) as of \(at) (\(backend.size) bytes, read-only) at \(shown) from journal \(journal!)")
        } else {
            Output.line("kanshi: serving \(image) (\(backend.size) bytes\(readOnly ? ", read-only" : "")) at \(shown)\(journal.map { " journal \($0)" } ?? " without a journal")")
        }

        let signal = await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            let t = Thread { c.resume(returning: stop.wait()) }
            t.start()
        }
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        try? await channel.close()
        try? await group.shutdownGracefully()
        try? await pool.shutdownGracefully()
        disk?.note("{\"event\":\"serve-stop\",\"signal\":\(signal)}")
        do {
            try disk?.image.syncData()
            try writer?.close()
        } catch {
            ruleWatch?.finish()
            fanout?.close()
            throw CLIError("closing the journal failed: \(error)")
        }
        ShipOptions.finish(shipper)
        if let ruleWatch {
            let alerts = ruleWatch.finish()
            fanout?.close()
            FileHandle.standardError.write(Data("kanshi: rules: \(alerts.count) alert(s) on \(ruleWatch.engine.stats.events) journal records\(ruleWatch.failure.map { "; stopped early: \($0)" } ?? "")\n".utf8))
        }
        if let socket { unlink(socket) }
    }
}

/// A failure to report to the user as one line, with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ message: String) { description = message }
}
