// Test program for `kanshi trace`: odd and heavy behaviour. Usage: odd MODE [DIR] [N]
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void *opener(void *arg) {
    (void)arg;
    for (;;) { int fd = open("/etc/hostname", O_RDONLY); if (fd >= 0) close(fd); }
    return NULL;
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig) { (void)sig; got_usr1 = 1; }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    long n = argc > 3 ? atol(argv[3]) : 1000;
    if (!strcmp(mode, "badptr")) {
        printf("openat %ld\n", syscall(SYS_openat, AT_FDCWD, (char *)1, O_RDONLY));
        printf("open-null %ld\n", syscall(SYS_open, NULL, O_RDONLY));
        int s = socket(AF_INET, SOCK_STREAM, 0);
        printf("connect %ld\n", syscall(SYS_connect, s, (void *)8, 1 << 30));
        printf("sendmsg %ld\n", syscall(SYS_sendmsg, s, (void *)8, 0));
        printf("sendmmsg %ld\n", syscall(SYS_sendmmsg, s, (void *)8, 100000, 0));
        printf("execve %ld\n", syscall(SYS_execve, "/nonexistent", (void *)8, NULL));
        printf("rename %ld\n", syscall(SYS_rename, NULL, (void *)16));
        printf("pipe %ld\n", syscall(SYS_pipe, (void *)8));
        printf("nr999 %ld\n", syscall(999));
        printf("x32 %ld\n", syscall(0x40000000 | 2, "/etc/hostname", 0));
        printf("close %ld\n", syscall(SYS_close, -1));
        printf("dup2 %ld\n", syscall(SYS_dup2, 1, 1 << 30));
        printf("mmap %ld\n", (long)mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 12345, 0));
        printf("done\n");
    } else if (!strcmp(mode, "signals")) {  // handlers, a stop and continue, ptrace by the tracee itself
        signal(SIGUSR1, on_usr1);
        raise(SIGUSR1);
        pid_t parent = getpid();
        pid_t c = fork();
        if (c == 0) { usleep(100000); kill(parent, SIGCONT); _exit(0); }
        raise(SIGSTOP);
        waitpid(c, NULL, 0);
        printf("signals done usr1=%d\n", (int)got_usr1);
        printf("traceme %ld\n", syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
    } else if (!strcmp(mode, "exitmid")) {
        pthread_t t[3];
        for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, opener, NULL);
        usleep(50000);
        syscall(SYS_exit_group, 3);
    } else if (!strcmp(mode, "killself")) {
        pthread_t t;
        pthread_create(&t, NULL, opener, NULL);
        usleep(20000);
        kill(getpid(), SIGKILL);
    } else if (!strcmp(mode, "flood")) {
        char p[4200];
        snprintf(p, sizeof p, "%s/flood", dir);
        for (long i = 0; i < n; i++) { int fd = open(p, O_WRONLY | O_CREAT, 0600); close(fd); }
        printf("flood done %ld\n", n);
    } else if (!strcmp(mode, "forks")) {
        for (long i = 0; i < n; i++) {
            pid_t c = fork();
            if (c == 0) { int fd = open("/etc/hostname", O_RDONLY); close(fd); _exit(0); }
        }
        while (wait(NULL) > 0) {}
        pid_t v = vfork();
        if (v == 0) { execl("/bin/true", "true", (char *)NULL); _exit(127); }
        waitpid(v, NULL, 0);
        struct clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.exit_signal = SIGCHLD;
        long c3 = syscall(SYS_clone3, &ca, sizeof ca);
        if (c3 == 0) { int fd = open("/etc/hostname", O_RDONLY); close(fd); _exit(7); }
        int st = 0;
        waitpid((pid_t)c3, &st, 0);
        printf("forks done clone3=%d\n", WEXITSTATUS(st));
    } else if (!strcmp(mode, "paths")) {
        if (chdir(dir) != 0) return 2;
        mkdir("sub", 0700);
        int d = open("sub", O_RDONLY | O_DIRECTORY);
        int f = openat(d, "at-file", O_WRONLY | O_CREAT, 0600);
        close(f);
        f = open("./sub/../rel-file", O_WRONLY | O_CREAT, 0600);
        close(f);
        renameat(d, "at-file", AT_FDCWD, "moved-file");
        linkat(AT_FDCWD, "moved-file", d, "linked-file", 0);
        unlinkat(d, "linked-file", 0);
        truncate("rel-file", 10);
        int p[2];
        pipe(p);
        int dd = dup(p[1]);
        write(dd, "x", 1);
        printf("paths done\n");
    } else {
        fprintf(stderr, "unknown mode\n");
        return 2;
    }
    return 0;
}
