// A guest workload for the memory sensor's benchmark: for SECONDS, rewrites
// MIBPS MiB of a BUFFER_MIB buffer every second (page by page, new values each
// pass) and spends the rest of its time on a fixed computation, whose rate it
// reports: "CHURN <iterations per second> <MiB written>". Run watched and not
// watched, the rates give the guest's slowdown.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PAGE = 4096, TICKS_PER_SECOND = 100 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: churn SECONDS MIBPS BUFFER_MIB\n");
        return 2;
    }
    double seconds = atof(argv[1]);
    size_t perTick = (size_t)(atof(argv[2]) * 1048576.0 / TICKS_PER_SECOND);
    size_t size = (size_t)atol(argv[3]) << 20;
    unsigned char *buffer = malloc(size);
    if (!buffer) return 1;
    memset(buffer, 1, size);
    size_t at = 0;
    uint64_t pass = 0, iterations = 0, written = 0, x = 88172645463325252ULL;
    double start = now(), tick = start;
    while (now() - start < seconds) {
        for (size_t done = 0; done < perTick; done += PAGE) {
            memset(buffer + at, (int)(pass + at / PAGE), PAGE);
            written += PAGE;
            at += PAGE;
            if (at >= size) { at = 0; pass++; }
        }
        tick += 1.0 / TICKS_PER_SECOND;
        while (now() < tick) {
            for (int i = 0; i < 1000; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; }
            iterations++;
        }
    }
    double elapsed = now() - start;
    printf("CHURN %.0f %.1f %llu\n", (double)iterations / elapsed, (double)written / 1048576.0, (unsigned long long)(x & 1));
    return 0;
}
