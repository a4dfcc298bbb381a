import Foundation
import KanshiBlock
import KanshiSystem
import Logging

/// How to mount a disk through Kanshi.
public struct MountOptions: Sendable {
    /// Where the file system appears (an existing, empty, unmounted directory).
    public var mountPoint: String
    /// The file system type for mount(8); nil detects it (blkid).
    public var fileSystemType: String?
    /// Extra mount options (mount -o), e.g. "noatime".
    public var mountOptions: String?
    public var readOnly: Bool
    /// Format the image (mkfs.ext4 -b 4096, or mkfs.TYPE with a type) when,
    /// and only when, it holds no file system. Formatting goes through the journal.
    public var makeFileSystem: Bool
    /// The loop device's logical sector size (512 or 4096).
    public var sectorSize: Int

    public init(mountPoint: String, fileSystemType: String? = nil, mountOptions: String? = nil,
                readOnly: Bool = false, makeFileSystem: Bool = false, sectorSize: Int = 4096) {
        self.mountPoint = mountPoint
        self.fileSystemType = fileSystemType
        self.mountOptions = mountOptions
        self.readOnly = readOnly
        self.makeFileSystem = makeFileSystem
        self.sectorSize = sectorSize
    }
}

/// Mounts a journaled disk on the host: FUSE file → loop device (direct I/O)
/// → file system at the mount point; and takes it all down again.
public enum DiskMounter {
    /// Checks, before anything is opened or created, what would make the
    /// mount fail: not root, no /dev/fuse, a missing or busy mount point, a
    /// missing image or one of the wrong size. Returns the mount point's
    /// canonical path.
    public static func preflight(image: String, options: MountOptions) throws(MountError) -> String {
        guard Host.isRoot else { throw .notRoot }
        guard FileSystem.isCharacterDevice("/dev/fuse") else { throw .noFuseDevice }
        guard FileSystem.isDirectory(options.mountPoint), let mp = FileSystem.realPath(options.mountPoint) else {
            throw .mountPointMissing(options.mountPoint)
        }
        guard !MountTable.isMountPoint(mp) else { throw .mountPointBusy(options.mountPoint) }
        let size: UInt64
        do {
            size = try SystemFile(path: image, mode: .readOnly).size()
        } catch {
            if error.errno == ENOENT { throw .imageMissing(image) }
            throw .system(error)
        }
        guard size > 0, size % UInt64(options.sectorSize) == 0 else {
            throw .badImageSize(path: image, size: size, sectorSize: size % 512 == 0 ? options.sectorSize : 512)
        }
        return mp
    }

    /// Serves `file` through FUSE, attaches a loop device to it and mounts
    /// the file system on it. On failure everything done so far is undone.
    public static func mount(file: DiskFile, options: MountOptions, logger: Logger) throws(MountError) -> MountedDisk {
        guard let mountPoint = FileSystem.realPath(options.mountPoint) else { throw .mountPointMissing(options.mountPoint) }
        var undo: [() -> Void] = []
        func rollback() { for u in undo.reversed() { u() } }
        do throws(MountError) {
            let dir = try makePrivateDirectory()
            undo.append { try? FileSystem.removeDirectory(dir) }
            let fuse = try FuseDisk(file: file, directory: dir, logger: logger)
            fuse.start()
            undo.append { fuse.stop() }
            let loop = try LoopDevice.attach(file: fuse.path, sectorSize: options.sectorSize, readOnly: options.readOnly)
            undo.append { try? loop.detach() }
            var type = try probe(loop.path)
            var formatted = false
            if type == nil && options.makeFileSystem {
                guard !options.readOnly else { throw .noFileSystem(image: file.disk.image.path) }
                let fs = options.fileSystemType ?? "ext4"
                logger.info("formatting", metadata: ["device": "\(loop.path)", "type": "\(fs)"])
                if fs == "ext4" {
                    try HostTool.check("mkfs.ext4", ["-q", "-F", "-b", "4096", loop.path])
                } else {
                    try HostTool.check("mkfs", ["-t", fs, loop.path])
                }
                formatted = true
                type = try probe(loop.path)
            }
            guard let fsType = options.fileSystemType ?? type else { throw .noFileSystem(image: file.disk.image.path) }
            var opts: [String] = []
            if options.readOnly { opts.append("ro") }
            if let o = options.mountOptions, !o.isEmpty { opts.append(o) }
            try HostTool.check("mount", ["-t", fsType] + (opts.isEmpty ? [] : ["-o", opts.joined(separator: ",")]) + [loop.path, mountPoint])
            return MountedDisk(fuse: fuse, loop: loop, mountPoint: mountPoint, fileSystemType: fsType,
                               privateDirectory: dir, formatted: formatted, logger: logger)
        } catch {
            rollback()
            throw error
        }
    }

    /// The file system type on a device, or nil if blkid finds none.
    static func probe(_ device: String) throws(MountError) -> String? {
        let r = try HostTool.run("blkid", ["-p", "-o", "value", "-s", "TYPE", device])
        // blkid exits 2 when it finds nothing.
        if r.status == 2 { return nil }
        guard r.ok else { throw .tool(command: "blkid -p \(device)", message: r.message) }
        let t = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// A directory only root can enter, under /run/kanshi (or the temporary directory).
    static func makePrivateDirectory() throws(MountError) -> String {
        var base = "/run/kanshi"
        if !FileSystem.isDirectory(base) { try? FileSystem.createDirectory(base, permissions: 0o755) }
        if !FileSystem.isDirectory(base) {
            base = NSTemporaryDirectory()
            while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        }
        for attempt in 0..<100 {
            let dir = "\(base)/mount-\(Host.processID)-\(attempt)"
            do {
                try FileSystem.createDirectory(dir, permissions: 0o700)
                return dir
            } catch {
                if error.errno != EEXIST { throw .system(error) }
            }
        }
        throw .tool(command: "mkdir \(base)/mount-\(Host.processID)-*", message: "100 such directories exist already")
    }
}

/// A disk mounted through Kanshi: FUSE file, loop device, file system.
public final class MountedDisk: @unchecked Sendable {
    // SAFETY: all properties are immutable; unmount() is called from one thread.
    public let fuse: FuseDisk
    public let loop: LoopDevice
    /// The canonical path the file system is mounted on.
    public let mountPoint: String
    public let fileSystemType: String
    /// The directory the FUSE file system is mounted on (removed on unmount).
    public let privateDirectory: String
    /// Whether the image was formatted by this mount (--mkfs).
    public let formatted: Bool
    let logger: Logger
    private let device: String?

    init(fuse: FuseDisk, loop: LoopDevice, mountPoint: String, fileSystemType: String,
         privateDirectory: String, formatted: Bool, logger: Logger) {
        self.fuse = fuse
        self.loop = loop
        self.mountPoint = mountPoint
        self.fileSystemType = fileSystemType
        self.privateDirectory = privateDirectory
        self.formatted = formatted
        self.logger = logger
        self.device = loop.majorMinor
    }

    /// Whether the file system is still mounted from our loop device (false
    /// once someone ran `umount MOUNTPOINT`).
    public var isMounted: Bool {
        MountTable.entries().contains { $0.mountPoint == mountPoint && (device == nil || $0.device == device) }
    }

    /// Unmounts the file system (if still mounted), detaches the loop
    /// device, unmounts FUSE and removes the private directory. While the
    /// file system is busy it retries every second, calling `busy` once.
    public func unmount(busy: (String) -> Void = { _ in }) throws(MountError) {
        var told = false
        while isMounted {
            let r = try HostTool.run("umount", [mountPoint])
            if r.ok || !isMounted { break }
            if !told {
                busy("\(mountPoint) is busy (\(r.message)); close what uses it (fuser -vm \(mountPoint)); retrying every second")
                told = true
            }
            sleep(1)
        }
        try loop.detach()
        guard fuse.stop() else {
            throw .fuse("the FUSE file system at \(privateDirectory) did not stop; something still holds \(fuse.path) open")
        }
        do { try FileSystem.removeDirectory(privateDirectory) } catch { throw .system(error) }
    }
}
