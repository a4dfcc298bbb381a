// Test program for the VM sensor: built 32-bit (gcc -m32 -static), so its
// calls enter through the 32-bit fast path (sysenter or the 32-bit syscall,
// by the CPU's vendor). Reads FILE and prints its pid and the bytes read.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char b[64];
    int fd = open(argc > 1 ? argv[1] : "/mnt/secret", O_RDONLY);
    int n = fd >= 0 ? (int)read(fd, b, sizeof b) : -1;
    close(fd);
    printf("read32 pid %d fd %d read %d\n", (int)getpid(), fd, n);
    return 0;
}
