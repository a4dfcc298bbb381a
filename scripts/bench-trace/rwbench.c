// Read/write micro-benchmark for scripts/bench-trace.sh: N small write()s to a
// file, then N small read()s of it (64 bytes each). Prints the elapsed seconds.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: rwbench FILE N\n"); return 2; }
    long n = atol(argv[2]);
    char buf[64] = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(argv[1]); return 1; }
    for (long i = 0; i < n; i++) if (write(fd, buf, sizeof buf) != sizeof buf) { perror("write"); return 1; }
    lseek(fd, 0, SEEK_SET);
    for (long i = 0; i < n; i++) if (read(fd, buf, sizeof buf) != sizeof buf) { perror("read"); return 1; }
    close(fd);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.6f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
