#ifndef CKANSHI_SHIMS_H
#define CKANSHI_SHIMS_H

#include <stddef.h>
#include <stdint.h>

/// CRC-32C (Castagnoli) of `length` bytes at `data`, continuing from `crc`
/// (pass 0 to start). Uses the SSE4.2 instruction when the CPU has it.
uint32_t ckanshi_crc32c(uint32_t crc, const void *data, size_t length);

/// Adds the byte histogram of `length` bytes at `data` into `counts[256]`.
void ckanshi_byte_histogram(const void *data, size_t length, uint32_t counts[256]);

/// Deallocates a byte range of a file (it then reads as zeros).
/// Returns 0 or the errno.
int ckanshi_punch_hole(int fd, int64_t offset, int64_t length);

/// Unmounts the file system at `path` (umount2), lazily (MNT_DETACH) when
/// `detach` is non-zero, retrying EINTR. Returns 0 or the errno.
int ckanshi_unmount(const char *path, int detach);

/// Writes a file range back to storage, waits for it, then drops it from the
/// page cache (sync_file_range + posix_fadvise DONTNEED). Returns 0 or the errno.
int ckanshi_writeback_and_drop(int fd, int64_t offset, int64_t length);

/// Installs handlers for SIGINT and SIGTERM that write the signal number as
/// one byte to `write_fd` (a pipe), so no signal is lost between start-up and
/// the moment something waits for it. Returns 0 or the errno.
int ckanshi_install_stop_signals(int write_fd);

/// copy_file_range(2) at explicit offsets; returns bytes copied or -1 (errno set).
long ckanshi_copy_file_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t length);

/// memmem(3) (hidden behind _GNU_SOURCE in Swift's view of glibc): the first
/// occurrence of `needle` in `haystack`, or NULL.
const void *ckanshi_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length);

/// Atomically ORs `mask` into the 8 aligned bytes at `p` (a shared mapping another process also
/// writes); returns the value before.
uint64_t ckanshi_atomic_or64(void *p, uint64_t mask);

/// syncfs(2): writes back the whole file system that holds `fd`. Returns 0 or the errno.
int ckanshi_syncfs(int fd);

/// The O_DIRECT open flag (hidden behind _GNU_SOURCE in Swift's view of glibc).
int ckanshi_o_direct(void);

/// Reserves `length` bytes at `offset` of a file without changing its size
/// (fallocate FALLOC_FL_KEEP_SIZE). Returns 0 or the errno.
int ckanshi_preallocate(int fd, int64_t offset, int64_t length);

/// Sets the nice value of the calling thread only (Linux threads have their
/// own). Returns 0 or the errno.
int ckanshi_set_thread_nice(int nice);

/// Sends one message to the system log (syslog(3) is variadic): facility user,
/// `priority` a LOG_* level, the message as given (no format expansion), tagged `ident`.
void ckanshi_syslog(const char *ident, int priority, const char *message);

#endif

/// mallopt(M_MMAP_THRESHOLD, bytes) and mallopt(M_ARENA_MAX, arenas) (glibc's malloc.h; the
/// constants are macros Swift does not import). Returns 1 when both were accepted.
int ckanshi_malloc_tune(int mmap_threshold, int arenas);
