// Guest micro-benchmarks for scripts/bench-vm.sh (built static, put in the
// guest with `kanshi sandbox run --add`). Usage: vmbench MODE N
//   getppid    N getppid() calls
//   openclose  N x open + 64-byte read + close of a small file
//   write64    N 64-byte write() calls to a file on tmpfs
// Prints "vmbench MODE N NS_PER_ITERATION" (monotonic clock of the guest).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: vmbench getppid|openclose|write64 N\n"); return 2; }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    char buf[64];
    memset(buf, 'k', sizeof buf);
    int fd = -1;
    if (!strcmp(mode, "openclose")) {
        fd = open("/tmp/vmbench.dat", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, buf, sizeof buf) != sizeof buf) { perror("vmbench.dat"); return 1; }
        close(fd);
    } else if (!strcmp(mode, "write64")) {
        fd = open("/tmp/vmbench.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { perror("vmbench.out"); return 1; }
    } else if (strcmp(mode, "getppid") != 0) {
        fprintf(stderr, "vmbench: unknown mode %s\n", mode);
        return 2;
    }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        if (mode[0] == 'g') {
            syscall(SYS_getppid);
        } else if (mode[0] == 'o') {
            int f = open("/tmp/vmbench.dat", O_RDONLY);
            if (read(f, buf, sizeof buf) < 0) return 1;
            close(f);
        } else if (write(fd, buf, sizeof buf) != sizeof buf) {
            perror("write");
            return 1;
        }
    }
    double t1 = now();
    printf("vmbench %s %ld %.1f\n", mode, n, (t1 - t0) / n);
    return 0;
}
