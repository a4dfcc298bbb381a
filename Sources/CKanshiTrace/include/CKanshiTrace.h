#ifndef CKANSHI_TRACE_H
#define CKANSHI_TRACE_H

// Private shims for the syscall sensor: ptrace (variadic in glibc), seccomp
// filters (macro-built BPF), and fork + exec with nothing but C between them.
// x86_64 Linux only.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// The x86_64 registers the tracer reads and writes (a copy of user_regs_struct).
typedef struct ckt_regs {
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax,
        rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs;
} ckt_regs;

/// 1 on x86_64 (the only architecture the sensor supports), else 0.
int ckt_supported(void);

/// Forks a child that waits until the parent has PTRACE_SEIZEd it (with
/// `options`), then sets no_new_privs, installs `filter` (BPF, `len`
/// instructions, as built by ckt_build_filter) and execs `path` with `argv`
/// and `envp`. If exec fails the child writes its errno to stderr and exits 127.
/// Returns the child's pid, or -errno.
pid_t ckt_spawn(const char *path, char *const argv[], char *const envp[],
                const void *filter, unsigned short len, long options);

/// Builds a seccomp BPF program into `out` (room for `cap` sock_filter
/// entries): non-x86_64 calls are killed; `allow_first` are allowed at once
/// (the hot calls); `trace` return SECCOMP_RET_TRACE; `deny` return
/// SECCOMP_RET_ERRNO(EPERM); if `mmap_files` is set, mmap without MAP_ANONYMOUS
/// is traced; everything else is allowed. Returns the instruction count or -1.
int ckt_build_filter(const int *allow_first, int n_allow, const int *trace, int n_trace,
                     const int *deny, int n_deny, int mmap_files, void *out, int cap);

/// Size in bytes of one BPF instruction (struct sock_filter).
int ckt_filter_insn_size(void);

long ckt_ptrace_seize(pid_t pid, long options);
long ckt_ptrace_setoptions(pid_t pid, long options);
long ckt_ptrace_cont(pid_t pid, int sig);
long ckt_ptrace_syscall(pid_t pid, int sig);
long ckt_ptrace_listen(pid_t pid);
long ckt_ptrace_interrupt(pid_t pid);
long ckt_ptrace_detach(pid_t pid, int sig);
long ckt_ptrace_geteventmsg(pid_t pid, unsigned long *msg);
long ckt_ptrace_getregs(pid_t pid, ckt_regs *regs);
long ckt_ptrace_setregs(pid_t pid, const ckt_regs *regs);
/// Reads one word of the tracee's memory; returns 0 or -errno.
long ckt_ptrace_peek(pid_t pid, uint64_t addr, uint64_t *word);
long ckt_ptrace_poke(pid_t pid, uint64_t addr, uint64_t word);

/// The option set the tracer uses (TRACESYSGOOD, TRACEFORK/VFORK/CLONE/EXEC, TRACESECCOMP, EXITKILL).
long ckt_trace_options(int exitkill);

/// waitpid(pid, __WALL | __WNOTHREAD); returns the pid, 0 or -errno (EINTR retried).
pid_t ckt_wait(pid_t pid, int *status);

/// Sets SIGCHLD to its default action with SA_NOCLDSTOP, so tracee stops do not
/// signal (and wake) the tracer's other threads; waitpid is unaffected.
void ckt_quiet_sigchld(void);

/// Like ckt_wait, but a signal that interrupts the wait returns -EINTR (see ckt_install_wake).
pid_t ckt_wait_interruptible(pid_t pid, int *status);
/// Installs a handler that does nothing for `sig`, without SA_RESTART, and unblocks `sig` in
/// the calling thread: sending `sig` to that thread blocked in ckt_wait_interruptible wakes it.
int ckt_install_wake(int sig);
/// Sends `sig` to the thread `thread` (a pthread_t) of this process.
int ckt_wake_thread(unsigned long thread, int sig);
/// This thread's pthread_t.
unsigned long ckt_self_thread(void);

/// Like ckt_wait with WNOHANG: 0 when nothing is ready yet.
pid_t ckt_wait_nohang(pid_t pid, int *status);

/// Copies `len` bytes of the tracee's memory at `addr`; returns bytes read or -errno.
long ckt_read_mem(pid_t pid, uint64_t addr, void *buf, size_t len);
/// Writes `len` bytes into the tracee's memory (process_vm_writev, then
/// PTRACE_POKEDATA as a fallback); returns 0 or -errno.
long ckt_write_mem(pid_t pid, uint64_t addr, const void *buf, size_t len);
/// Reads a NUL-terminated string (at most `cap - 1` bytes); returns its length or -errno.
long ckt_read_string(pid_t pid, uint64_t addr, char *buf, size_t cap);

/// Duplicates descriptor `fd` of process `pid` into this process (pidfd_getfd);
/// returns the new descriptor or -errno.
int ckt_steal_fd(pid_t pid, int fd);

/// Socket facts of a descriptor of this process: family, type, and the peer
/// (or the local address when unconnected) as sockaddr bytes. Returns 0 or -errno.
int ckt_socket_info(int fd, int *family, int *type, void *peer, unsigned *peer_len, int *connected);

/// Reads the peer inode of a Unix socket with inode `ino` through sock_diag;
/// returns the inode, 0 if it has none, or -errno.
long ckt_unix_peer_inode(uint64_t ino);

/// The errno's symbolic name ("ENOENT"), or NULL if unknown.
const char *ckt_errno_name(int e);

/// Status decoding (macros in C).
int ckt_wifexited(int s);
int ckt_wexitstatus(int s);
int ckt_wifsignaled(int s);
int ckt_wtermsig(int s);
int ckt_wifstopped(int s);
int ckt_wstopsig(int s);

#endif
