// Which arguments of a system call point to memory the VM sensor reads:
// paths, socket addresses, argv, descriptor pairs written at return.
// x86_64 and i386 numbers (the ABIs are stable).

#include "plugin.h"

#define NONE -1

static const kvmi_argspec empty = {NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, 0, NONE, 0};


static kvmi_argspec written(int8_t buf, int8_t len) {
    kvmi_argspec s = empty;
    s.wbuf = buf;
    s.wlen = len;
    return s;
}

static kvmi_argspec spec(int8_t p1, int8_t p2) {
    kvmi_argspec s = empty;
    s.path1 = p1;
    s.path2 = p2;
    return s;
}

static kvmi_argspec timed(int8_t path, int8_t times, uint8_t size) {
    kvmi_argspec s = spec(path, NONE);
    s.times = times;
    s.times_size = size;
    return s;
}

static kvmi_argspec sockaddr(int8_t ptr, int8_t len) {
    kvmi_argspec s = empty;
    s.sa_ptr = ptr;
    s.sa_len = len;
    return s;
}

static kvmi_argspec x86_64_spec(int64_t nr) {
    kvmi_argspec s = empty;
    switch (nr) {
    case 1: case 18:
        return written(1, 2);  // write pwrite64
    case 2: case 85: case 4: case 6: case 21: case 89: case 80: case 161: case 83: case 84:
    case 87: case 76: case 90: case 92: case 94: case 133: case 166: case 137:
        return spec(0, NONE);  // open creat stat lstat access readlink chdir chroot mkdir rmdir unlink truncate chmod chown lchown mknod umount2 statfs
    case 257: case 262: case 332: case 269: case 439: case 267: case 258: case 263: case 268:
    case 260: case 259: case 254:
        return spec(1, NONE);  // openat newfstatat statx faccessat(2) readlinkat mkdirat unlinkat fchmodat fchownat mknodat inotify_add_watch
    case 132:
        return timed(0, 1, 16);  // utime: struct utimbuf
    case 235:
        return timed(0, 1, 32);  // utimes: struct timeval[2]
    case 261:
        return timed(1, 2, 32);  // futimesat: struct timeval[2]
    case 280:
        return timed(1, 2, 32);  // utimensat: struct timespec[2]
    case 437:
        s = spec(1, NONE); s.open_how = 2; return s;  // openat2
    case 59:
        s = spec(0, NONE); s.argv = 1; return s;  // execve
    case 322:
        s = spec(1, NONE); s.argv = 2; return s;  // execveat
    case 82: case 86: case 88: case 165:
        return spec(0, 1);  // rename link symlink mount
    case 264: case 316: case 265:
        return spec(1, 3);  // renameat renameat2 linkat
    case 266:
        return spec(0, 2);  // symlinkat
    case 42: case 49:
        return sockaddr(1, 2);  // connect bind
    case 44:
        return sockaddr(4, 5);  // sendto
    case 46:
        s.msg = 1; return s;  // sendmsg
    case 22: case 293:
        s.fdpair = 0; return s;  // pipe pipe2
    case 53:
        s.fdpair = 3; return s;  // socketpair
    case 435:
        s.clone3 = 0; return s;  // clone3
    case 60: case 231: case 15:
        s.no_return = 1; return s;  // exit exit_group rt_sigreturn
    default:
        return s;
    }
}

static kvmi_argspec i386_spec(int64_t nr) {
    kvmi_argspec s = empty;
    switch (nr) {
    case 4: case 180:
        return written(1, 2);  // write pwrite64
    case 5: case 8: case 10: case 12: case 14: case 15: case 16: case 33: case 39: case 40:
    case 92: case 85: case 106: case 107: case 195: case 196: case 182: case 212: case 198:
    case 193: case 61: case 99: case 52:
        return spec(0, NONE);  // open creat unlink chdir mknod chmod lchown access mkdir rmdir truncate readlink stat lstat stat64 lstat64 chown chown32 lchown32 truncate64 chroot statfs umount2
    case 295: case 300: case 301: case 305: case 306: case 307: case 296: case 297: case 298:
    case 383: case 439:
        return spec(1, NONE);  // openat fstatat64 unlinkat readlinkat fchmodat faccessat mkdirat mknodat fchownat statx faccessat2
    case 30:
        return timed(0, 1, 8);  // utime: struct utimbuf (32-bit time_t)
    case 271:
        return timed(0, 1, 16);  // utimes: struct timeval[2] (32-bit)
    case 299:
        return timed(1, 2, 16);  // futimesat
    case 320:
        return timed(1, 2, 16);  // utimensat: struct timespec[2] (32-bit)
    case 437:
        s = spec(1, NONE); s.open_how = 2; return s;
    case 11:
        s = spec(0, NONE); s.argv = 1; return s;  // execve
    case 358:
        s = spec(1, NONE); s.argv = 2; return s;  // execveat
    case 9: case 38: case 83: case 21:
        return spec(0, 1);  // link rename symlink mount
    case 302: case 353: case 303:
        return spec(1, 3);  // renameat renameat2 linkat
    case 304:
        return spec(0, 2);  // symlinkat
    case 362: case 361:
        return sockaddr(1, 2);  // connect bind
    case 369:
        return sockaddr(4, 5);  // sendto
    case 370:
        s.msg = 1; return s;  // sendmsg
    case 42: case 331:
        s.fdpair = 0; return s;  // pipe pipe2
    case 360:
        s.fdpair = 3; return s;  // socketpair
    case 435:
        s.clone3 = 0; return s;
    case 1: case 252: case 119: case 173:
        s.no_return = 1; return s;  // exit exit_group sigreturn rt_sigreturn
    default:
        return s;
    }
}

kvmi_argspec kvmi_spec(int abi, int64_t nr) {
    return abi == KVMI_ABI_I386 ? i386_spec(nr) : x86_64_spec(nr);
}
