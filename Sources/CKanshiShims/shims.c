#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mount.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <syslog.h>
#include <malloc.h>
#include "CKanshiShims.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static uint32_t crc32c_table[8][256];
static int crc32c_table_ready = 0;

static void crc32c_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
        crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = crc32c_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = crc32c_table[0][c & 0xff] ^ (c >> 8);
            crc32c_table[t][i] = c;
        }
    }
    __atomic_store_n(&crc32c_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_software(uint32_t crc, const uint8_t *p, size_t n) {
    if (!__atomic_load_n(&crc32c_table_ready, __ATOMIC_ACQUIRE)) crc32c_init_table();
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc32c_table[7][v & 0xff] ^ crc32c_table[6][(v >> 8) & 0xff] ^
              crc32c_table[5][(v >> 16) & 0xff] ^ crc32c_table[4][(v >> 24) & 0xff] ^
              crc32c_table[3][(v >> 32) & 0xff] ^ crc32c_table[2][(v >> 40) & 0xff] ^
              crc32c_table[1][(v >> 48) & 0xff] ^ crc32c_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hardware(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

uint32_t ckanshi_crc32c(uint32_t crc, const void *data, size_t length) {
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hardware(crc, p, length);
#endif
    return ~crc32c_software(crc, p, length);
}

void ckanshi_byte_histogram(const void *data, size_t length, uint32_t counts[256]) {
    // Four interleaved tables hide the store-to-load dependency on repeated bytes.
    uint32_t t[4][256];
    memset(t, 0, sizeof t);
    const uint8_t *p = (const uint8_t *)data;
    size_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        t[0][v & 0xff]++;
        t[1][(v >> 8) & 0xff]++;
        t[2][(v >> 16) & 0xff]++;
        t[3][(v >> 24) & 0xff]++;
        t[0][(v >> 32) & 0xff]++;
        t[1][(v >> 40) & 0xff]++;
        t[2][(v >> 48) & 0xff]++;
        t[3][v >> 56]++;
    }
    for (; i < length; i++) t[0][p[i]]++;
    for (int b = 0; b < 256; b++) counts[b] += t[0][b] + t[1][b] + t[2][b] + t[3][b];
}

int ckanshi_punch_hole(int fd, int64_t offset, int64_t length) {
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length) == 0) return 0;
    return errno;
}

int ckanshi_unmount(const char *path, int detach) {
    int r;
    do {
        r = umount2(path, detach ? MNT_DETACH : 0);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

int ckanshi_writeback_and_drop(int fd, int64_t offset, int64_t length) {
    if (sync_file_range(fd, (off_t)offset, (off_t)length,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) != 0)
        return errno;
    return posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_DONTNEED);
}

static volatile int stop_signal_fd = -1;

static void stop_signal_handler(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (stop_signal_fd >= 0) (void)!write(stop_signal_fd, &b, 1);
    errno = saved;
}

int ckanshi_install_stop_signals(int write_fd) {
    stop_signal_fd = write_fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = stop_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, NULL) != 0) return errno;
    if (sigaction(SIGTERM, &sa, NULL) != 0) return errno;
    return 0;
}

long ckanshi_copy_file_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t length) {
    loff_t in = off_in, out = off_out;
    return (long)copy_file_range(fd_in, &in, fd_out, &out, length, 0);
}

int ckanshi_syncfs(int fd) {
    return syncfs(fd) == 0 ? 0 : errno;
}

int ckanshi_o_direct(void) { return O_DIRECT; }

int ckanshi_preallocate(int fd, int64_t offset, int64_t length) {
    int r;
    do {
        r = fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
    } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : errno;
}

#include <sys/resource.h>
#include <sys/syscall.h>

int ckanshi_set_thread_nice(int nice) {
    pid_t tid = (pid_t)syscall(SYS_gettid);
    return setpriority(PRIO_PROCESS, (id_t)tid, nice) == 0 ? 0 : errno;
}

const void *ckanshi_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length) {
    return memmem(haystack, haystack_length, needle, needle_length);
}

void ckanshi_syslog(const char *ident, int priority, const char *message) {
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_USER);
    syslog(priority, "%s", message);
    closelog();
}

uint64_t ckanshi_atomic_or64(void *p, uint64_t mask) {
    return __atomic_fetch_or((uint64_t *)p, mask, __ATOMIC_SEQ_CST);
}

int ckanshi_malloc_tune(int mmap_threshold, int arenas) {
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 && mallopt(M_ARENA_MAX, arenas) == 1;
}
