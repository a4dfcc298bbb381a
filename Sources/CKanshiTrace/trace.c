#define _GNU_SOURCE
#include "CKanshiTrace.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/seccomp.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PTRACE_O_EXITKILL
#define PTRACE_O_EXITKILL (1 << 20)
#endif

int ckt_supported(void) {
#if defined(__x86_64__)
    return 1;
#else
    return 0;
#endif
}

int ckt_filter_insn_size(void) { return (int)sizeof(struct sock_filter); }

long ckt_trace_options(int exitkill) {
    long o = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
             PTRACE_O_TRACEEXEC | PTRACE_O_TRACESECCOMP;
    if (exitkill) o |= PTRACE_O_EXITKILL;
    return o;
}

int ckt_build_filter(const int *allow_first, int n_allow, const int *trace, int n_trace,
                     const int *deny, int n_deny, int mmap_files, void *out, int cap) {
    struct sock_filter *f = out;
    int n = 0;
#define EMIT(x) do { if (n >= cap) return -1; f[n++] = (struct sock_filter)x; } while (0)
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    // x32 calls (bit 30) are refused, fail closed.
    EMIT(BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
    for (int i = 0; i < n_allow; i++) {
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)allow_first[i], 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }
    for (int i = 0; i < n_deny; i++) {
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)deny[i], 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
    }
    for (int i = 0; i < n_trace; i++) {
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)trace[i], 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE));
    }
    if (mmap_files) {
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_mmap, 0, 4));
        EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[3])));
        EMIT(BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, MAP_ANONYMOUS, 0, 1));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE));
    }
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
#undef EMIT
    return n;
}

pid_t ckt_spawn(const char *path, char *const argv[], char *const envp[],
                const void *filter, unsigned short len, long options) {
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) != 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sync[0]); close(sync[1]);
        return -e;
    }
    if (pid == 0) {
        // Child: only async-signal-safe calls until execve.
        char b;
        close(sync[1]);
        while (read(sync[0], &b, 1) < 0 && errno == EINTR) {}
        close(sync[0]);
        // The tracer ignores SIGINT (the terminal sends it to the program too); the program gets defaults.
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGQUIT, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        struct sock_fprog prog = { .len = len, .filter = (struct sock_filter *)filter };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(126);
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) != 0 &&
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) _exit(126);
        execve(path, argv, envp);
        int e = errno;
        static const char msg[] = "kanshi trace: exec failed: ";
        write(2, msg, sizeof msg - 1);
        const char *s = strerror(e);
        write(2, s, strlen(s));
        write(2, "\n", 1);
        _exit(127);
    }
    close(sync[0]);
    long r = ptrace(PTRACE_SEIZE, pid, 0, (void *)options);
    int e = errno;
    if (r != 0) {
        kill(pid, SIGKILL);
        close(sync[1]);
        int st;
        waitpid(pid, &st, __WALL);
        return -e;
    }
    char go = 1;
    while (write(sync[1], &go, 1) < 0 && errno == EINTR) {}
    close(sync[1]);
    return pid;
}

static long ret(long r) { return r < 0 ? -errno : r; }

long ckt_ptrace_seize(pid_t pid, long options) { return ret(ptrace(PTRACE_SEIZE, pid, 0, (void *)options)); }
long ckt_ptrace_setoptions(pid_t pid, long options) { return ret(ptrace(PTRACE_SETOPTIONS, pid, 0, (void *)options)); }
long ckt_ptrace_cont(pid_t pid, int sig) { return ret(ptrace(PTRACE_CONT, pid, 0, (void *)(long)sig)); }
long ckt_ptrace_syscall(pid_t pid, int sig) { return ret(ptrace(PTRACE_SYSCALL, pid, 0, (void *)(long)sig)); }
long ckt_ptrace_listen(pid_t pid) { return ret(ptrace(PTRACE_LISTEN, pid, 0, 0)); }
long ckt_ptrace_interrupt(pid_t pid) { return ret(ptrace(PTRACE_INTERRUPT, pid, 0, 0)); }
long ckt_ptrace_detach(pid_t pid, int sig) { return ret(ptrace(PTRACE_DETACH, pid, 0, (void *)(long)sig)); }
long ckt_ptrace_geteventmsg(pid_t pid, unsigned long *msg) { return ret(ptrace(PTRACE_GETEVENTMSG, pid, 0, msg)); }

long ckt_ptrace_getregs(pid_t pid, ckt_regs *regs) {
    _Static_assert(sizeof(ckt_regs) == sizeof(struct user_regs_struct), "ckt_regs layout");
    return ret(ptrace(PTRACE_GETREGS, pid, 0, regs));
}
long ckt_ptrace_setregs(pid_t pid, const ckt_regs *regs) { return ret(ptrace(PTRACE_SETREGS, pid, 0, regs)); }

long ckt_ptrace_peek(pid_t pid, uint64_t addr, uint64_t *word) {
    errno = 0;
    long v = ptrace(PTRACE_PEEKDATA, pid, (void *)addr, 0);
    if (v == -1 && errno != 0) return -errno;
    *word = (uint64_t)v;
    return 0;
}
long ckt_ptrace_poke(pid_t pid, uint64_t addr, uint64_t word) {
    return ret(ptrace(PTRACE_POKEDATA, pid, (void *)addr, (void *)word));
}

pid_t ckt_wait(pid_t pid, int *status) {
    for (;;) {
        pid_t r = waitpid(pid, status, __WALL | __WNOTHREAD);
        if (r >= 0) return r;
        if (errno != EINTR) return -errno;
    }
}

pid_t ckt_wait_interruptible(pid_t pid, int *status) {
    pid_t r = waitpid(pid, status, __WALL | __WNOTHREAD);
    return r >= 0 ? r : -errno;
}

static void ckt_wake_handler(int sig) { (void)sig; }

int ckt_install_wake(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ckt_wake_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  /* no SA_RESTART: the blocked waitpid returns EINTR */
    if (sigaction(sig, &sa, NULL) != 0) return -errno;
    /* Threads may start with most signals blocked (Foundation's do): let this one through here. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int ckt_wake_thread(unsigned long thread, int sig) {
    return -pthread_kill((pthread_t)thread, sig);
}

unsigned long ckt_self_thread(void) { return (unsigned long)pthread_self(); }

void ckt_quiet_sigchld(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
}

pid_t ckt_wait_nohang(pid_t pid, int *status) {
    for (;;) {
        pid_t r = waitpid(pid, status, __WALL | __WNOTHREAD | WNOHANG);
        if (r >= 0) return r;
        if (errno != EINTR) return -errno;
    }
}

long ckt_read_mem(pid_t pid, uint64_t addr, void *buf, size_t len) {
    struct iovec local = { buf, len }, remote = { (void *)addr, len };
    ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (r >= 0) return r;
    // Fallback word by word (pages process_vm_readv refuses).
    size_t done = 0;
    while (done < len) {
        uint64_t w;
        long e = ckt_ptrace_peek(pid, addr + done, &w);
        if (e < 0) return done ? (long)done : e;
        size_t k = len - done < 8 ? len - done : 8;
        memcpy((char *)buf + done, &w, k);
        done += k;
    }
    return (long)done;
}

long ckt_write_mem(pid_t pid, uint64_t addr, const void *buf, size_t len) {
    struct iovec local = { (void *)buf, len }, remote = { (void *)addr, len };
    if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len) return 0;
    size_t done = 0;
    while (done < len) {
        uint64_t w = 0;
        size_t k = len - done < 8 ? len - done : 8;
        if (k < 8) { long e = ckt_ptrace_peek(pid, addr + done, &w); if (e < 0) return e; }
        memcpy(&w, (const char *)buf + done, k);
        long e = ckt_ptrace_poke(pid, addr + done, w);
        if (e < 0) return e;
        done += k;
    }
    return 0;
}

long ckt_read_string(pid_t pid, uint64_t addr, char *buf, size_t cap) {
    if (cap == 0) return -EINVAL;
    size_t done = 0;
    while (done + 1 < cap) {
        // Read up to the end of the current page so an unmapped next page does not fail the read.
        size_t page_left = 4096 - ((addr + done) & 4095);
        size_t want = cap - 1 - done < page_left ? cap - 1 - done : page_left;
        long r = ckt_read_mem(pid, addr + done, buf + done, want);
        if (r <= 0) { buf[done] = 0; return done ? (long)done : (r < 0 ? r : -EFAULT); }
        void *z = memchr(buf + done, 0, (size_t)r);
        if (z) return (long)((char *)z - buf);
        done += (size_t)r;
    }
    buf[done] = 0;
    return (long)done;
}

int ckt_steal_fd(pid_t pid, int fd) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) return -errno;
    int r = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int e = errno;
    close(pidfd);
    return r < 0 ? -e : r;
}

int ckt_socket_info(int fd, int *family, int *type, void *peer, unsigned *peer_len, int *connected) {
    socklen_t l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, family, &l) != 0) return -errno;
    l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, type, &l) != 0) return -errno;
    socklen_t pl = *peer_len;
    if (getpeername(fd, peer, &pl) == 0) {
        *connected = 1;
    } else {
        *connected = 0;
        pl = *peer_len;
        if (getsockname(fd, peer, &pl) != 0) pl = 0;
    }
    *peer_len = pl;
    return 0;
}

long ckt_unix_peer_inode(uint64_t ino) {
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0) return -errno;
    struct {
        struct nlmsghdr nlh;
        struct unix_diag_req req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = AF_UNIX;
    msg.req.udiag_states = -1;
    msg.req.udiag_ino = (unsigned)ino;
    msg.req.udiag_show = UDIAG_SHOW_PEER;
    msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0U;
    if (send(s, &msg, sizeof msg, 0) < 0) { int e = errno; close(s); return -e; }
    char buf[8192];
    ssize_t n = recv(s, buf, sizeof buf, 0);
    int e = errno;
    close(s);
    if (n < 0) return -e;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (!NLMSG_OK(h, (unsigned)n)) return -EPROTO;
    if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *err = NLMSG_DATA(h);
        return err->error ? err->error : -ENOENT;
    }
    struct unix_diag_msg *m = NLMSG_DATA(h);
    int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
    struct rtattr *a = (struct rtattr *)(m + 1);
    while (RTA_OK(a, len)) {
        if (a->rta_type == UNIX_DIAG_PEER) return *(uint32_t *)RTA_DATA(a);
        a = RTA_NEXT(a, len);
    }
    return 0;
}

const char *ckt_errno_name(int e) { return strerrorname_np(e); }

int ckt_wifexited(int s) { return WIFEXITED(s); }
int ckt_wexitstatus(int s) { return WEXITSTATUS(s); }
int ckt_wifsignaled(int s) { return WIFSIGNALED(s); }
int ckt_wtermsig(int s) { return WTERMSIG(s); }
int ckt_wifstopped(int s) { return WIFSTOPPED(s); }
int ckt_wstopsig(int s) { return WSTOPSIG(s); }
