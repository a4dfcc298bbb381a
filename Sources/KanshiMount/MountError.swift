import KanshiBlock
import KanshiSystem

/// Why mounting a disk through Kanshi failed; each message says what to fix.
public enum MountError: Error, CustomStringConvertible, Sendable {
    /// The process is not root (attaching loop devices and mounting need it).
    case notRoot
    /// /dev/fuse is missing or not the FUSE character device.
    case noFuseDevice
    /// The mount point does not exist or is not a directory.
    case mountPointMissing(String)
    /// Something is already mounted on the mount point.
    case mountPointBusy(String)
    /// The image does not exist.
    case imageMissing(String)
    /// The image's size does not fit the loop device's sector size.
    case badImageSize(path: String, size: UInt64, sectorSize: Int)
    /// libfuse could not create or mount the FUSE file system.
    case fuse(String)
    /// No loop device could be attached (`losetup` failed).
    case noLoopDevice(String)
    /// The image holds no file system the host recognises.
    case noFileSystem(image: String)
    /// A host tool (losetup, mount, umount, mkfs) failed; with its message.
    case tool(command: String, message: String)
    /// A host tool is not installed.
    case toolMissing(String)
    /// A system call failed.
    case system(SystemError)
    /// A write starts at or past the end of the disk (ENOSPC to the writer).
    case noSpace

    public var description: String {
        switch self {
        case .notRoot:
            "kanshi disk mount must run as root: it attaches a loop device and mounts a file system (run it with sudo)"
        case .noFuseDevice:
            "/dev/fuse is missing: load the FUSE module (modprobe fuse) or, in a container, pass the device through (--device /dev/fuse)"
        case .mountPointMissing(let p):
            "mount point \(p) does not exist or is not a directory: create it (mkdir -p \(p))"
        case .mountPointBusy(let p):
            "mount point \(p) is busy: something is already mounted there; unmount it (umount \(p)) or choose another directory"
        case .imageMissing(let p):
            "image \(p) does not exist: create it first (truncate -s 1G \(p) && mkfs.ext4 -b 4096 \(p))"
        case .badImageSize(let p, let size, let sector):
            "\(p): the image is \(size) bytes, not a whole number of \(sector)-byte sectors; resize it (truncate -s)"
                + (sector == 4096 ? " or mount with --sector-size 512" : "")
        case .fuse(let why):
            "cannot set up the FUSE file: \(why)"
        case .noLoopDevice(let why):
            "no free loop device (\(why)): detach unused ones (losetup -D) or allow more (modprobe loop max_loop=N)"
        case .noFileSystem(let image):
            "\(image) holds no file system: format it first (mkfs.ext4 -b 4096 \(image)) or pass --mkfs to format it through the journal"
        case .tool(let command, let message):
            "\(command) failed: \(message)"
        case .toolMissing(let name):
            "\(name) is not installed: install it (apt-get install util-linux mount e2fsprogs fuse3)"
        case .system(let e):
            e.description
        case .noSpace:
            "write past the end of the disk"
        }
    }
}
