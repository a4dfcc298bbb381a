/// x86_64 system call numbers the sensor decodes (the ABI is stable; the
/// sensor supports x86_64 only).
enum SC {
    static let read: Int64 = 0, write: Int64 = 1, open: Int64 = 2, close: Int64 = 3
    static let mmap: Int64 = 9, pread64: Int64 = 17, pwrite64: Int64 = 18, readv: Int64 = 19, writev: Int64 = 20
    static let pipe: Int64 = 22, dup: Int64 = 32, dup2: Int64 = 33, sendfile: Int64 = 40
    static let socket: Int64 = 41, connect: Int64 = 42, accept: Int64 = 43, sendto: Int64 = 44
    static let recvfrom: Int64 = 45, sendmsg: Int64 = 46, recvmsg: Int64 = 47, bind: Int64 = 49
    static let socketpair: Int64 = 53, clone: Int64 = 56, fork: Int64 = 57, vfork: Int64 = 58
    static let execve: Int64 = 59, fcntl: Int64 = 72, truncate: Int64 = 76, ftruncate: Int64 = 77
    static let rename: Int64 = 82, rmdir: Int64 = 84, creat: Int64 = 85, link: Int64 = 86, unlink: Int64 = 87
    static let symlink: Int64 = 88, ptrace: Int64 = 101, restartSyscall: Int64 = 219
    static let openat: Int64 = 257, unlinkat: Int64 = 263, renameat: Int64 = 264, linkat: Int64 = 265
    static let symlinkat: Int64 = 266, splice: Int64 = 275, tee: Int64 = 276, vmsplice: Int64 = 278
    static let accept4: Int64 = 288, dup3: Int64 = 292, pipe2: Int64 = 293, preadv: Int64 = 295, pwritev: Int64 = 296
    static let recvmmsg: Int64 = 299, sendmmsg: Int64 = 307, processVmWritev: Int64 = 311
    static let renameat2: Int64 = 316, seccomp: Int64 = 317, execveat: Int64 = 322, copyFileRange: Int64 = 326
    static let preadv2: Int64 = 327, pwritev2: Int64 = 328
    static let ioUringSetup: Int64 = 425, ioUringEnter: Int64 = 426, ioUringRegister: Int64 = 427
    static let clone3: Int64 = 435, openat2: Int64 = 437, prctl: Int64 = 157
    static let utime: Int64 = 132, utimes: Int64 = 235, futimesat: Int64 = 261, utimensat: Int64 = 280

    static let names: [Int64: String] = [
        0: "read", 1: "write", 2: "open", 3: "close", 9: "mmap", 17: "pread64", 18: "pwrite64", 19: "readv",
        20: "writev", 22: "pipe", 32: "dup", 33: "dup2", 40: "sendfile", 41: "socket", 42: "connect",
        43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 49: "bind", 53: "socketpair",
        56: "clone", 57: "fork", 58: "vfork", 59: "execve", 72: "fcntl", 76: "truncate", 77: "ftruncate",
        82: "rename", 101: "ptrace", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink", 88: "symlink", 257: "openat",
        263: "unlinkat", 264: "renameat", 265: "linkat", 266: "symlinkat", 275: "splice", 276: "tee",
        278: "vmsplice", 288: "accept4", 292: "dup3", 293: "pipe2", 295: "preadv", 296: "pwritev",
        299: "recvmmsg", 307: "sendmmsg", 311: "process_vm_writev", 316: "renameat2", 322: "execveat", 326: "copy_file_range",
        327: "preadv2", 328: "pwritev2", 425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register",
        435: "clone3", 437: "openat2", 132: "utime", 235: "utimes", 261: "futimesat", 280: "utimensat",
    ]

    static func name(_ nr: Int64) -> String { names[nr] ?? "syscall_\(nr)" }

    static let reads: [Int64] = [read, pread64, readv, preadv, preadv2]
    static let writes: [Int64] = [write, pwrite64, writev, pwritev, pwritev2]
    static let sends: [Int64] = [sendto, sendmsg, sendmmsg]
    static let recvs: [Int64] = [recvfrom, recvmsg, recvmmsg]
}

/// Which calls stop the tracer.
public struct FilterPolicy: Sendable {
    /// Calls every traced process stops on: file names, descriptors, processes, network.
    static let base: [Int64] = [
        SC.open, SC.openat, SC.openat2, SC.creat, SC.close, SC.dup, SC.dup2, SC.dup3, SC.fcntl,
        SC.pipe, SC.pipe2, SC.socket, SC.socketpair, SC.connect, SC.bind, SC.accept, SC.accept4,
        SC.execve, SC.execveat, SC.rename, SC.renameat, SC.renameat2, SC.link, SC.linkat,
        SC.symlink, SC.symlinkat, SC.unlink, SC.unlinkat, SC.rmdir, SC.truncate, SC.ftruncate,
        SC.sendfile, SC.splice, SC.tee, SC.vmsplice, SC.copyFileRange,
        SC.utime, SC.utimes, SC.futimesat, SC.utimensat,
    ] + SC.sends + SC.recvs
    /// Added for managed processes: everything that moves data out of the process, and ptrace
    /// (a request that writes another process is refused at its stop).
    static let managedExtra: [Int64] = SC.writes + [SC.ptrace]
    /// Refused outright for managed processes (fail closed): io_uring can move
    /// data without any call the filter sees; writing another process's memory.
    static let managedDeny: [Int64] = [SC.ioUringSetup, SC.ioUringEnter, SC.ioUringRegister, SC.processVmWritev]
}
