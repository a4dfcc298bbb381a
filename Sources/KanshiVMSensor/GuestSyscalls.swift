/// System call numbers and names of the guest's two ABIs (x86_64 and i386),
/// as strace and the kernel's unistd headers name them (the ABIs are stable).
public enum GuestSyscalls {
    /// x86_64 names by number, 0 to 450.
    public static let x86_64: [String?] = [
        "read", "write", "open", "close", "stat", "fstat", "lstat", "poll",
        "lseek", "mmap", "mprotect", "munmap", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
        "ioctl", "pread64", "pwrite64", "readv", "writev", "access", "pipe", "select",
        "sched_yield", "mremap", "msync", "mincore", "madvise", "shmget", "shmat", "shmctl",
        "dup", "dup2", "pause", "nanosleep", "getitimer", "alarm", "setitimer", "getpid",
        "sendfile", "socket", "connect", "accept", "sendto", "recvfrom", "sendmsg", "recvmsg",
        "shutdown", "bind", "listen", "getsockname", "getpeername", "socketpair", "setsockopt", "getsockopt",
        "clone", "fork", "vfork", "execve", "exit", "wait4", "kill", "uname",
        "semget", "semop", "semctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
        "fcntl", "flock", "fsync", "fdatasync", "truncate", "ftruncate", "getdents", "getcwd",
        "chdir", "fchdir", "rename", "mkdir", "rmdir", "creat", "link", "unlink",
        "symlink", "readlink", "chmod", "fchmod", "chown", "fchown", "lchown", "umask",
        "gettimeofday", "getrlimit", "getrusage", "sysinfo", "times", "ptrace", "getuid", "syslog",
        "getgid", "setuid", "setgid", "geteuid", "getegid", "setpgid", "getppid", "getpgrp",
        "setsid", "setreuid", "setregid", "getgroups", "setgroups", "setresuid", "getresuid", "setresgid",
        "getresgid", "getpgid", "setfsuid", "setfsgid", "getsid", "capget", "capset", "rt_sigpending",
        "rt_sigtimedwait", "rt_sigqueueinfo", "rt_sigsuspend", "sigaltstack", "utime", "mknod", "uselib", "personality",
        "ustat", "statfs", "fstatfs", "sysfs", "getpriority", "setpriority", "sched_setparam", "sched_getparam",
        "sched_setscheduler", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "mlock", "munlock", "mlockall",
        "munlockall", "vhangup", "modify_ldt", "pivot_root", nil, "prctl", "arch_prctl", "adjtimex",
        "setrlimit", "chroot", "sync", "acct", "settimeofday", "mount", "umount", "swapon",
        "swapoff", "reboot", "sethostname", "setdomainname", "iopl", "ioperm", "create_module", "init_module",
        "delete_module", "get_kernel_syms", "query_module", "quotactl", "nfsservctl", "getpmsg", "putpmsg", "afs_syscall",
        "tuxcall", "security", "gettid", "readahead", "setxattr", "lsetxattr", "fsetxattr", "getxattr",
        "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
        "tkill", "time", "futex", "sched_setaffinity", "sched_getaffinity", "set_thread_area", "io_setup", "io_destroy",
        "io_getevents", "io_submit", "io_cancel", "get_thread_area", "lookup_dcookie", "epoll_create", "epoll_ctl_old", "epoll_wait_old",
        "remap_file_pages", "getdents64", "set_tid_address", "restart_syscall", "semtimedop", "fadvise64", "timer_create", "timer_settime",
        "timer_gettime", "timer_getoverrun", "timer_delete", "clock_settime", "clock_gettime", "clock_getres", "clock_nanosleep", "exit_group",
        "epoll_wait", "epoll_ctl", "tgkill", "utimes", nil, "mbind", "set_mempolicy", "get_mempolicy",
        "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr", "kexec_load", "waitid",
        "add_key", "request_key", "keyctl", "ioprio_set", "ioprio_get", "inotify_init", "inotify_add_watch", "inotify_rm_watch",
        "migrate_pages", "openat", "mkdirat", "mknodat", "fchownat", "futimesat", "newfstatat", "unlinkat",
        "renameat", "linkat", "symlinkat", "readlinkat", "fchmodat", "faccessat", "pselect6", "ppoll",
        "unshare", "set_robust_list", "get_robust_list", "splice", "tee", "sync_file_range", "vmsplice", "move_pages",
        "utimensat", "epoll_pwait", "signalfd", "timerfd_create", "eventfd", "fallocate", "timerfd_settime", "timerfd_gettime",
        "accept4", "signalfd4", "eventfd2", "epoll_create1", "dup3", "pipe2", "inotify_init1", "preadv",
        "pwritev", "rt_tgsigqueueinfo", "perf_event_open", "recvmmsg", "fanotify_init", "fanotify_mark", "prlimit64", "name_to_handle_at",
        "open_by_handle_at", "clock_adjtime", "syncfs", "sendmmsg", "setns", "getcpu", "process_vm_readv", "process_vm_writev",
        "kcmp", "finit_module", "sched_setattr", "sched_getattr", "renameat2", "seccomp", "getrandom", "memfd_create",
        "kexec_file_load", "bpf", "execveat", "userfaultfd", "membarrier", "mlock2", "copy_file_range", "preadv2",
        "pwritev2", "pkey_mprotect", "pkey_alloc", "pkey_free", "statx", "io_pgetevents", "rseq", nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        nil, nil, nil, nil, nil, nil, nil, nil,
        "pidfd_send_signal", "io_uring_setup", "io_uring_enter", "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig",
        "fsmount", "fspick", "pidfd_open", "clone3", "close_range", "openat2", "pidfd_getfd", "faccessat2",
        "process_madvise", "epoll_pwait2", "mount_setattr", "quotactl_fd", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "memfd_secret",
        "process_mrelease", "futex_waitv", "set_mempolicy_home_node",
    ]

    /// i386 names of the calls the sensor decodes (the rest are logged as `i386_N`).
    public static let i386: [Int64: String] = [
        1: "exit", 2: "fork", 3: "read", 4: "write", 5: "open", 6: "close", 8: "creat", 9: "link", 10: "unlink",
        11: "execve", 12: "chdir", 14: "mknod", 15: "chmod", 20: "getpid", 21: "mount", 33: "access", 38: "rename",
        39: "mkdir", 40: "rmdir", 41: "dup", 42: "pipe", 45: "brk", 54: "ioctl", 63: "dup2", 64: "getppid",
        83: "symlink", 85: "readlink", 90: "mmap", 91: "munmap", 92: "truncate", 93: "ftruncate", 102: "socketcall",
        106: "stat", 107: "lstat", 119: "sigreturn", 120: "clone", 122: "uname", 125: "mprotect", 140: "_llseek",
        145: "readv", 146: "writev", 173: "rt_sigreturn", 174: "rt_sigaction", 175: "rt_sigprocmask",
        180: "pread64", 181: "pwrite64", 183: "getcwd", 187: "sendfile", 190: "vfork", 192: "mmap2",
        195: "stat64", 196: "lstat64", 197: "fstat64", 199: "getuid32", 224: "gettid", 239: "sendfile64",
        243: "set_thread_area", 252: "exit_group", 258: "set_tid_address", 295: "openat", 296: "mkdirat",
        300: "fstatat64", 301: "unlinkat", 302: "renameat", 303: "linkat", 304: "symlinkat", 305: "readlinkat",
        307: "faccessat", 313: "splice", 330: "dup3", 331: "pipe2", 353: "renameat2", 358: "execveat",
        359: "socket", 360: "socketpair", 361: "bind", 362: "connect", 363: "listen", 364: "accept4",
        369: "sendto", 370: "sendmsg", 371: "recvfrom", 372: "recvmsg", 377: "copy_file_range", 383: "statx",
        384: "arch_prctl", 435: "clone3", 437: "openat2", 55: "fcntl", 221: "fcntl64", 193: "truncate64",
        194: "ftruncate64", 315: "tee", 316: "vmsplice", 334: "pwritev", 379: "pwritev2", 345: "sendmmsg", 337: "recvmmsg",
    ]

    /// The x86_64 number with the same meaning as an i386 call the behaviour model decodes.
    static let i386ToX86_64: [Int64: Int64] = [
        1: 60, 2: 57, 3: 0, 4: 1, 5: 2, 6: 3, 8: 85, 9: 86, 10: 87, 11: 59, 38: 82, 40: 84, 41: 32, 42: 22,
        63: 33, 83: 88, 92: 76, 93: 77, 120: 56, 180: 17, 181: 18, 145: 19, 146: 20, 187: 40, 190: 58,
        239: 40, 252: 231, 295: 257, 301: 263, 302: 264, 303: 265, 304: 266, 313: 275, 330: 292, 331: 293,
        353: 316, 358: 322, 359: 41, 360: 53, 361: 49, 362: 42, 364: 288, 369: 44, 370: 46, 371: 45, 372: 47,
        377: 326, 435: 435, 437: 437, 55: 72, 221: 72, 12: 80, 133: 81, 193: 76, 194: 77, 192: 9, 315: 276,
        316: 278, 334: 296, 379: 328, 345: 307, 337: 299, 30: 132, 271: 235, 299: 261, 320: 280,
    ]

    /// The name of call `nr` of `abi`.
    public static func name(_ nr: Int64, i386 isI386: Bool) -> String {
        if isI386 { return i386[nr] ?? "i386_\(nr)" }
        if nr >= 0, nr < Int64(x86_64.count), let n = x86_64[Int(nr)] { return n }
        return "syscall_\(nr)"
    }
}
