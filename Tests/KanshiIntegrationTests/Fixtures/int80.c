// Test program for the VM sensor: a 64-bit program that opens a file through
// the 32-bit `int 0x80` entry (i386 open and close). Built static (its
// strings then lie below 4 GiB, as i386 pointers must).
#include <stdio.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/mnt/secret";
    static char copy[256];
    snprintf(copy, sizeof copy, "%s", path);
    long fd, r;
    __asm__ volatile("int $0x80" : "=a"(fd) : "a"(5L), "b"(copy), "c"(0L) : "memory");  // open(path, O_RDONLY)
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(6L), "b"(fd) : "memory");            // close(fd)
    printf("int80 open %ld close %ld\n", fd, r);
    return 0;
}
