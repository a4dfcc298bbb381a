import ArgumentParser
import Foundation
import KanshiBlock
import KanshiCore
import KanshiJournal
import KanshiMount
import KanshiSystem
import Logging

struct DiskMount: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a disk image's file system on the host, journaling every block read and write.",
        discussion: """
            The image is served as a FUSE file in a private directory under /run/kanshi, a \
            loop device is attached to that file (direct I/O, 4096-byte sectors) and the \
            file system on it is mounted at MOUNTPOINT. Programs on the host then read and \
            write through Kanshi: every block is journaled as `disk serve` journals it \
            (writes with their data, before they reach the image; fsync is durable in both). \
            Stays in the foreground; Ctrl-C or SIGTERM, or `umount MOUNTPOINT`, unmounts the \
            file system, detaches the loop device, unmounts FUSE and closes the journal. \
            Needs root, /dev/fuse, losetup, blkid and mount.
              kanshi disk mount --image disk.img --journal j /mnt/disk
              kanshi disk mount --image blank.img --journal j --mkfs /mnt/disk
            """)

    @Option(help: "The raw disk image (its size must be a multiple of the sector size).")
    var image: String

    @Option(help: "Journal directory (created if missing). Required unless --no-journal.")
    var journal: String?

    @Flag(help: "Mount without recording (a baseline for benchmarks).")
    var noJournal = false

    @Argument(help: "An existing directory, not already a mount point, to mount the file system on.")
    var mountPoint: String

    @Option(help: "File system type for mount(8); 'auto' detects it with blkid.")
    var fstype: String = "auto"

    @Option(name: .customLong("options"), help: "Extra mount options (mount -o), e.g. noatime.")
    var mountOptions: String?

    @Flag(help: "Mount read-only and refuse writes to the disk; reads are still journaled.")
    var readOnly = false

    @Flag(help: "If the image holds no file system, format it first (mkfs.ext4 -b 4096, or mkfs -t FSTYPE) through the journal. An existing file system is never overwritten.")
    var mkfs = false

    @Option(help: "The loop device's logical sector size: 4096 or 512.")
    var sectorSize: Int = 4096

    @Option(name: .customLong("segment-mib"), help: "Seal a journal segment and start a new one at this size, in MiB.")
    var segmentMiB: UInt64 = 256

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if sectorSize != 512 && sectorSize != 4096 { throw ValidationError("--sector-size must be 512 or 4096") }
        if segmentMiB < 1 { throw ValidationError("--segment-mib must be at least 1") }
        if readOnly && mkfs { throw ValidationError("--mkfs cannot format a --read-only disk") }
        if journal == nil && !noJournal { throw ValidationError("give --journal DIR (or --no-journal to mount without recording)") }
        if journal != nil && noJournal { throw ValidationError("--journal and --no-journal contradict each other") }
    }

    func run() async throws {
        let logger = try CLILogging.logger(label: "kanshi.mount", level: global.logLevel)
        let stop = try StopSignals()
        let options = MountOptions(mountPoint: mountPoint, fileSystemType: fstype == "auto" ? nil : fstype,
                                   mountOptions: mountOptions, readOnly: readOnly, makeFileSystem: mkfs,
                                   sectorSize: sectorSize)
        // Everything that can be checked before the journal is created.
        do { _ = try DiskMounter.preflight(image: image, options: options) } catch { throw CLIError("\(error)") }

        var writer: JournalWriter?
        if let journal {
            do {
                writer = try JournalWriter(directory: journal, options: .init(segmentBytes: segmentMiB << 20, staged: true), logger: logger)
            } catch {
                throw CLIError("cannot open journal: \(error)")
            }
            if let r = writer?.recovery { Output.error("kanshi: journal recovered: \(r)") }
        }
        let disk: JournaledDisk
        do {
            disk = try JournaledDisk(imagePath: image, journal: writer, readOnly: readOnly)
        } catch {
            try? writer?.close()
            throw CLIError("\(error)")
        }
        let pid = ProcessInfo.processInfo.processIdentifier
        disk.note("{\"event\":\"mount-start\",\"image\":\"\(image.jsonEscaped)\",\"size\":\(disk.size),\"mountPoint\":\"\(mountPoint.jsonEscaped)\",\"readOnly\":\(readOnly),\"pid\":\(pid)}")

        let mounted: MountedDisk
        do {
            mounted = try DiskMounter.mount(file: DiskFile(disk: disk), options: options, logger: logger)
        } catch {
            disk.note("{\"event\":\"mount-failed\",\"error\":\"\("\(error)".jsonEscaped)\"}")
            try? disk.image.syncData()
            try? writer?.close()
            throw CLIError("\(error)")
        }
        disk.note("{\"event\":\"mounted\",\"device\":\"\(mounted.loop.path)\",\"fstype\":\"\(mounted.fileSystemType.jsonEscaped)\",\"formatted\":\(mounted.formatted)}")
        Output.line("kanshi: mounted \(image) (\(disk.size) bytes, \(mounted.fileSystemType)\(readOnly ? ", read-only" : "")\(mounted.formatted ? ", formatted" : "")) at \(mounted.mountPoint) via \(mounted.loop.path) and \(mounted.fuse.path); \(journal.map { "journal \($0)" } ?? "without a journal")")

        // `umount MOUNTPOINT` by the user ends the session as a signal would (code 0).
        let watcher = Thread {
            while mounted.isMounted { usleep(250_000) }
            stop.trigger(0)
        }
        watcher.start()
        let signal = await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            Thread { c.resume(returning: stop.wait()) }.start()
        }
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        var failure: String?
        do {
            try mounted.unmount(busy: { Output.error("kanshi: \($0)") })
        } catch {
            failure = "unmounting failed: \(error)"
        }
        disk.note("{\"event\":\"mount-stop\",\"signal\":\(signal)\(signal == 0 ? ",\"reason\":\"unmounted\"" : "")}")
        do {
            try disk.image.syncData()
            try writer?.close()
        } catch {
            throw CLIError("closing the journal failed: \(error)")
        }
        if let failure { throw CLIError(failure) }
        Output.line("kanshi: unmounted \(mounted.mountPoint)\(journal.map { "; journal \($0) closed" } ?? "")")
    }
}
