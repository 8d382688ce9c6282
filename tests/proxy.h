/* proxy.h - starts tests/faultproxy in front of a server and drives it. */
#ifndef DBPOOL_TEST_PROXY_H
#define DBPOOL_TEST_PROXY_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

typedef struct proxy { pid_t pid; int listen_port, control_port, ctl; } proxy;

/* url with its port replaced by the proxy's, options appended when given. */
static void via(char *out, size_t n, const char *url, int port, int proxy_port, const char *opts) __attribute__((unused));
static void via(char *out, size_t n, const char *url, int port, int proxy_port, const char *opts)
{
    char from[16];
    const char *p;
    snprintf(from, sizeof from, ":%d/", port);
    p = strstr(url, from);
    snprintf(out, n, "%.*s:%d/%s%s%s", (int)(p - url), url, proxy_port, p + strlen(from), opts ? "?" : "", opts ? opts : "");
}

/* Starts the proxy (build/tests/faultproxy) in front of 127.0.0.1:target. */
static int proxy_start(proxy *px, int target)
{
    int out[2];
    char tgt[32], line[128];
    FILE *f;
    memset(px, 0, sizeof *px);
    px->ctl = -1;
    if (pipe(out) != 0) return -1;
    snprintf(tgt, sizeof tgt, "127.0.0.1:%d", target);
    px->pid = fork();
    if (px->pid < 0) return -1;
    if (px->pid == 0) {
        /* the proxy must not hold the test's own output open */
        int null = open("/dev/null", O_WRONLY), fd;
        dup2(out[1], 1);
        if (null >= 0) dup2(null, 2);
        for (fd = 3; fd < 1024; fd++) close(fd);
        execl("build/tests/faultproxy", "faultproxy", "--listen", "127.0.0.1:0", "--target", tgt,
              "--control", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    f = fdopen(out[0], "r");
    if (!f || !fgets(line, sizeof line, f) ||
        sscanf(line, "LISTEN %d CONTROL %d", &px->listen_port, &px->control_port) != 2) {
        if (f) fclose(f);
        return -1;
    }
    fclose(f);
    {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)px->control_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        px->ctl = socket(AF_INET, SOCK_STREAM, 0);
        if (px->ctl < 0 || connect(px->ctl, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    }
    return 0;
}

/* Sends one control command; returns 0 when the proxy said OK. */
static int proxy_cmd(proxy *px, const char *cmd)
{
    char buf[256];
    size_t n = 0;
    if (write(px->ctl, cmd, strlen(cmd)) < 0 || write(px->ctl, "\n", 1) < 0) return -1;
    while (n + 1 < sizeof buf) {
        ssize_t r = read(px->ctl, buf + n, 1);
        if (r <= 0) return -1;
        if (buf[n] == '\n') break;
        n++;
    }
    buf[n] = '\0';
    return strncmp(buf, "OK", 2) == 0 ? 0 : -1;
}

static void proxy_stop(proxy *px)
{
    int st;
    if (px->ctl >= 0) { proxy_cmd(px, "quit"); close(px->ctl); px->ctl = -1; }
    if (px->pid > 0) {
        int i;
        for (i = 0; i < 50 && waitpid(px->pid, &st, WNOHANG) == 0; i++) { struct timespec ts = { 0, 20000000 }; nanosleep(&ts, NULL); }
        if (i == 50) { kill(px->pid, SIGKILL); waitpid(px->pid, &st, 0); }
        px->pid = 0;
    }
}
#endif
