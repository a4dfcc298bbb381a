// Test program for `kanshi trace`: tries to send a protected file's content
// off the machine by one route. Usage: leak ROUTE SECRET PORT [PORT6 UDPPORT [VICTIM-PID]]
// (`leak victim SECRET PORT` is the process outside the traced tree that the
// ptrace and procmem routes write into: it sends whatever appears in its mailbox.)
// Prints "ROUTE: <step> ok|<errno name>" lines; exit 0 unless the setup failed.
// Talks to 127.0.0.1 / ::1 only.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/user.h>
#include <linux/netlink.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *route;
static char secret[4096];
static ssize_t secret_len;

static void report(const char *step, long r) {
    if (r >= 0) printf("%s: %s ok\n", route, step);
    else printf("%s: %s %s\n", route, step, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    fflush(stdout);
}

static void read_secret(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror("open secret"); exit(2); }
    secret_len = read(fd, secret, sizeof secret);
    close(fd);
}

static int tcp4(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    report("connect", connect(s, (struct sockaddr *)&a, sizeof a));
    return s;
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int connected, have_secret, thread_port;

static void *sender(void *arg) {
    (void)arg;
    int s = tcp4(thread_port);
    pthread_mutex_lock(&mu);
    connected = 1;
    pthread_cond_broadcast(&cv);
    while (!have_secret) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    report("thread-send", send(s, secret, secret_len, 0));
    return NULL;
}

// Written by the ptrace and procmem routes into the victim (same binary, same offset).
static volatile char mailbox[4096];

static unsigned long image_base(const char *pid) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%s/maps", pid);
    unsigned long b = 0;
    FILE *f = fopen(p, "r");
    if (f) { if (fscanf(f, "%lx", &b) != 1) b = 0; fclose(f); }
    return b;
}

// The victim's mailbox address: its image is the same executable as ours.
static unsigned long mailbox_in(const char *pid) {
    return (unsigned long)mailbox - image_base("self") + image_base(pid);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: leak ROUTE SECRET PORT [PORT6 UDPPORT]\n"); return 2; }
    route = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const char *path = argv[2];
    int port = atoi(argv[3]);
    int port6 = argc > 4 ? atoi(argv[4]) : 0, uport = argc > 5 ? atoi(argv[5]) : 0;

    if (!strcmp(route, "unmanaged")) {  // control: no secret read, the send must go through
        int s = tcp4(port);
        report("send", send(s, "hello", 5, 0));
    } else if (!strcmp(route, "send")) {
        read_secret(path);
        int s = tcp4(port);
        report("send", send(s, secret, secret_len, 0));
    } else if (!strcmp(route, "write")) {
        read_secret(path);
        int s = tcp4(port);
        report("write", write(s, secret, secret_len));
    } else if (!strcmp(route, "udp")) {
        read_secret(path);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(uport) };
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        report("sendto", sendto(s, secret, secret_len, 0, (struct sockaddr *)&a, sizeof a));
        struct iovec iov = { secret, secret_len };
        struct msghdr m = { .msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov, .msg_iovlen = 1 };
        report("sendmsg", sendmsg(s, &m, 0));
        struct mmsghdr mm = { .msg_hdr = m };
        report("sendmmsg", sendmmsg(s, &mm, 1, 0));
        report("connect-udp", connect(s, (struct sockaddr *)&a, sizeof a));
        report("send-udp", send(s, secret, secret_len, 0));
    } else if (!strcmp(route, "ipv6")) {
        read_secret(path);
        int s = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port6) };
        inet_pton(AF_INET6, "::1", &a.sin6_addr);
        report("connect6", connect(s, (struct sockaddr *)&a, sizeof a));
        report("send6", send(s, secret, secret_len, 0));
        int s2 = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 m = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
        inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
        report("connect-mapped", connect(s2, (struct sockaddr *)&m, sizeof m));
    } else if (!strcmp(route, "early")) {  // socket connected before the process became managed
        int s = tcp4(port);
        read_secret(path);
        report("write", write(s, secret, secret_len));
        struct iovec iov[2] = { { secret, 4 }, { secret + 4, secret_len - 4 } };
        report("writev", writev(s, iov, 2));
        report("send", send(s, secret, secret_len, 0));
    } else if (!strcmp(route, "fork")) {
        read_secret(path);
        pid_t c = fork();
        if (c == 0) {
            route = "fork-child";
            int s = tcp4(port);
            report("send", send(s, secret, secret_len, 0));
            _exit(0);
        }
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "exec")) {  // an exec'd helper: python3, else curl, else ourselves
        read_secret(path);
        char code[512];
        snprintf(code, sizeof code,
                 "import socket,sys\ntry:\n s=socket.create_connection(('127.0.0.1',%d));s.sendall(sys.argv[1].encode());print('exec: python send ok')\n"
                 "except OSError as e:\n print('exec: python', type(e).__name__, e.errno)\n", port);
        secret[secret_len > 0 ? secret_len - 1 : 0] = 0;
        if (access("/usr/bin/python3", X_OK) == 0) {
            execl("/usr/bin/python3", "python3", "-c", code, secret, (char *)NULL);
        }
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
        execl("/usr/bin/curl", "curl", "-s", "--max-time", "3", "--data", secret, url, (char *)NULL);
        report("exec", -1);
    } else if (!strcmp(route, "pipe")) {  // a pipe to an unmanaged process that sends
        int p[2];
        pipe(p);
        pid_t c = fork();
        if (c == 0) {
            route = "pipe-reader";
            close(p[1]);
            int s = tcp4(port);  // connected while still unmanaged
            char buf[4096];
            ssize_t n = read(p[0], buf, sizeof buf);
            report("read", n);
            report("write", write(s, buf, n > 0 ? n : 1));
            report("send", send(s, buf, n > 0 ? n : 1, 0));
            _exit(0);
        }
        close(p[0]);
        usleep(100000);  // let the reader connect first
        read_secret(path);
        report("pipe-write", write(p[1], secret, secret_len));
        close(p[1]);
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "unix")) {  // a Unix socket to an unmanaged process that sends
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        pid_t c = fork();
        if (c == 0) {
            route = "unix-reader";
            close(sv[0]);
            int s = tcp4(port);
            char buf[4096];
            ssize_t n = read(sv[1], buf, sizeof buf);
            report("read", n);
            report("send", send(s, buf, n > 0 ? n : 1, 0));
            _exit(0);
        }
        close(sv[1]);
        usleep(100000);
        read_secret(path);
        report("unix-send", send(sv[0], secret, secret_len, 0));
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "shared")) {  // a file shared with an unmanaged process that has it open already
        char f[4200];
        snprintf(f, sizeof f, "%s.shared", path);
        int w = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        pid_t c = fork();
        if (c == 0) {
            route = "shared-reader";
            close(w);
            int r = open(f, O_RDONLY);
            int s = tcp4(port);
            usleep(300000);
            char buf[4096];
            ssize_t n = pread(r, buf, sizeof buf, 0);
            report("read", n);
            report("send", send(s, buf, n > 0 ? n : 1, 0));
            _exit(0);
        }
        usleep(100000);
        read_secret(path);
        report("shared-write", pwrite(w, secret, secret_len, 0));
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "sendfile")) {
        int s = tcp4(port);
        int fd = open(path, O_RDONLY);
        report("sendfile", sendfile(s, fd, NULL, 4096));
        int p[2];
        pipe(p);
        lseek(fd, 0, SEEK_SET);
        report("splice-in", splice(fd, NULL, p[1], NULL, 4096, 0));
        report("splice-out", splice(p[0], NULL, s, NULL, 4096, 0));
    } else if (!strcmp(route, "thread")) {  // one thread reads the secret, another (connected before) sends
        thread_port = port;
        pthread_t t;
        pthread_create(&t, NULL, sender, NULL);
        pthread_mutex_lock(&mu);
        while (!connected) pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        read_secret(path);
        pthread_mutex_lock(&mu);
        have_secret = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        pthread_join(t, NULL);
    } else if (!strcmp(route, "io_uring")) {
        read_secret(path);
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        report("io_uring_setup", syscall(SYS_io_uring_setup, 8, &params));
    } else if (!strcmp(route, "io_uring-early")) {  // a ring made before the process became managed
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        report("io_uring_setup", syscall(SYS_io_uring_setup, 8, &params));
        read_secret(path);
        report("after-secret", 0);
    } else if (!strcmp(route, "sendto-connected")) {  // TCP ignores the address: it goes to the peer
        int s = tcp4(port);
        read_secret(path);
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        strcpy(un.sun_path, "/nonexistent/kanshi-local");
        report("sendto-unix", sendto(s, secret, secret_len, 0, (struct sockaddr *)&un, sizeof un));
        struct iovec iov = { secret, secret_len };
        struct msghdr m = { .msg_name = &un, .msg_namelen = sizeof un, .msg_iov = &iov, .msg_iovlen = 1 };
        report("sendmsg-unix", sendmsg(s, &m, 0));
        struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
        report("sendto-netlink", sendto(s, secret, secret_len, 0, (struct sockaddr *)&nl, sizeof nl));
    } else if (!strcmp(route, "victim")) {  // outside the traced tree: sends what appears in its mailbox
        for (int i = 0; i < 200 && !mailbox[0]; i++) usleep(25000);
        if (mailbox[0]) {
            int s = tcp4(port);
            report("send", send(s, (const char *)mailbox, strlen((const char *)mailbox), 0));
        }
    } else if (!strcmp(route, "ptrace")) {  // writes the secret into the victim through ptrace
        if (argc < 7) { fprintf(stderr, "ptrace: victim pid missing\n"); return 2; }
        pid_t v = atoi(argv[6]);
        unsigned long addr = mailbox_in(argv[6]);
        report("attach-early", ptrace(PTRACE_ATTACH, v, 0, 0));  // attached while still unmanaged
        waitpid(v, NULL, __WALL);
        read_secret(path);
        long r = 0;
        for (ssize_t i = 0; i < secret_len && r >= 0; i += 8) {
            long w = 0;
            memcpy(&w, secret + i, secret_len - i < 8 ? (size_t)(secret_len - i) : 8);
            r = ptrace(PTRACE_POKEDATA, v, addr + i, w);
        }
        report("poke", r);
        struct user_regs_struct regs;
        report("getregs", ptrace(PTRACE_GETREGS, v, 0, &regs));
        report("setregs", ptrace(PTRACE_SETREGS, v, 0, &regs));
        report("detach", ptrace(PTRACE_DETACH, v, 0, 0));
        long a = ptrace(PTRACE_SEIZE, v, 0, 0);
        report("seize", a);
        if (a == 0) ptrace(PTRACE_DETACH, v, 0, 0);
        report("attach", ptrace(PTRACE_ATTACH, v, 0, 0));
        usleep(300000);  // the victim sends, if the secret got there
    } else if (!strcmp(route, "procmem")) {  // writes the secret into the victim through /proc/PID/mem
        if (argc < 7) { fprintf(stderr, "procmem: victim pid missing\n"); return 2; }
        unsigned long addr = mailbox_in(argv[6]);
        read_secret(path);
        char mem[64];
        snprintf(mem, sizeof mem, "/proc/%s/mem", argv[6]);
        int fd = open(mem, O_RDWR);
        report("open-mem", fd);
        if (fd >= 0) report("write-mem", pwrite(fd, secret, secret_len, addr));
        char link[4200];
        snprintf(link, sizeof link, "%s.memlink", path);
        symlink(mem, link);
        fd = open(link, O_WRONLY);
        report("open-mem-link", fd);
        if (fd >= 0) report("write-mem-link", pwrite(fd, secret, secret_len, addr));
        int dir = open("/proc", O_RDONLY | O_DIRECTORY);
        snprintf(mem, sizeof mem, "%s/task/%s/mem", argv[6], argv[6]);
        fd = openat(dir, mem, O_RDWR);
        report("openat-task-mem", fd);
        if (fd >= 0) report("write-task-mem", pwrite(fd, secret, secret_len, addr));
        snprintf(mem, sizeof mem, "/proc/%s/mem", argv[6]);
        report("open-mem-read", open(mem, O_RDONLY));  // reading another process is not refused
        int self = open("/proc/self/mem", O_RDWR);      // nor writing one's own memory
        report("open-self-mem", self);
        if (self >= 0) report("write-self-mem", pwrite(self, "x", 1, (unsigned long)mailbox));
        usleep(300000);
    } else if (!strcmp(route, "io_uring-mapped")) {  // rings mapped and the descriptor closed before becoming managed
        int s = tcp4(port);
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        params.flags = IORING_SETUP_SQPOLL;
        params.sq_thread_idle = 5000;
        int fd = syscall(SYS_io_uring_setup, 8, &params);
        int sqpoll = fd >= 0;
        if (!sqpoll) {
            memset(&params, 0, sizeof params);
            fd = syscall(SYS_io_uring_setup, 8, &params);
        }
        report(sqpoll ? "io_uring_setup-sqpoll" : "io_uring_setup", fd);
        if (fd < 0) return 2;
        size_t sqlen = params.sq_off.array + params.sq_entries * sizeof(unsigned);
        size_t cqlen = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
        char *sq = mmap(NULL, sqlen > cqlen ? sqlen : cqlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
        struct io_uring_sqe *sqes = mmap(NULL, params.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
        if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap ring"); return 2; }
        close(fd);
        read_secret(path);
        report("after-secret", 0);
        if (sqpoll) {  // the kernel's poller sends the secret: no system call at all
            memset(&sqes[0], 0, sizeof sqes[0]);
            sqes[0].opcode = IORING_OP_SEND;
            sqes[0].fd = s;
            sqes[0].addr = (unsigned long)secret;
            sqes[0].len = secret_len;
            unsigned *array = (unsigned *)(sq + params.sq_off.array);
            unsigned *tail = (unsigned *)(sq + params.sq_off.tail);
            unsigned mask = *(unsigned *)(sq + params.sq_off.ring_mask);
            array[*tail & mask] = 0;
            __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
            usleep(300000);
            report("sqpoll-send", 0);
        }
    } else if (!strcmp(route, "copy")) {  // managed files: copy, rename, link
        read_secret(path);
        char out[4200];
        snprintf(out, sizeof out, "%s.copy", path);
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        report("write-copy", write(fd, secret, secret_len));
        close(fd);
        char moved[4200];
        snprintf(moved, sizeof moved, "%s.moved", path);
        report("rename", rename(out, moved));
        char linked[4200];
        snprintf(linked, sizeof linked, "%s.linked", path);
        report("link", link(moved, linked));
    } else {
        fprintf(stderr, "unknown route %s\n", route);
        return 2;
    }
    return 0;
}
