// A guest program for the memory sensor's tests: fills a buffer with a known
// pattern, prints the buffer's virtual address, keeps a file open, and after
// a while overwrites the buffer with a second pattern.
//
//   pattern TEXT SECONDS [FILE] [TEXT2 SECONDS2]
//
// Prints "PATTERN-AT 0x<address> <bytes> pid <pid>" once the buffer holds TEXT repeated,
// then sleeps SECONDS; with TEXT2, fills the buffer with it, prints
// "PATTERN-CHANGED", and sleeps SECONDS2.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { BUFFER_BYTES = 256 * 1024 };

static void fill(char *buffer, const char *text) {
    size_t n = strlen(text);
    for (size_t at = 0; at < BUFFER_BYTES; at += n) {
        size_t k = BUFFER_BYTES - at < n ? BUFFER_BYTES - at : n;
        memcpy(buffer + at, text, k);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: pattern TEXT SECONDS [FILE] [TEXT2 SECONDS2]\n");
        return 2;
    }
    char *buffer = mmap(NULL, BUFFER_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buffer == MAP_FAILED) { perror("mmap"); return 1; }
    int fd = -1;
    if (argc > 3 && (fd = open(argv[3], O_RDONLY)) < 0) { perror(argv[3]); return 1; }
    fill(buffer, argv[1]);
    printf("PATTERN-AT %p %d pid %d\n", (void *)buffer, BUFFER_BYTES, (int)getpid());
    fflush(stdout);
    sleep((unsigned)atoi(argv[2]));
    if (argc > 5) {
        fill(buffer, argv[4]);
        printf("PATTERN-CHANGED %p\n", (void *)buffer);
        fflush(stdout);
        sleep((unsigned)atoi(argv[5]));
    }
    if (fd >= 0) close(fd);
    return 0;
}
