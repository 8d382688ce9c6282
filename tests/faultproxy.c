/*
 * faultproxy - fault-injecting TCP proxy for the dbpool tests.
 *
 *   faultproxy --listen 127.0.0.1:PORT --target 127.0.0.1:PORT
 *              --control 127.0.0.1:PORT [--pidfile FILE]
 *
 * Port 0 for --listen/--control picks a free port.  Once both sockets are
 * bound, exactly one line "LISTEN <port> CONTROL <port>" is printed to
 * stdout, so a test can learn the ports without racing.
 *
 * Control protocol (one command per line, one reply line per command;
 * blank lines are ignored and get no reply):
 *   pass                      OK pass          (clears latency, blackhole,
 *                                               reset-after, refuse)
 *   latency MS                OK latency MS    (0 = off)
 *   reset-after N [up|down|both]
 *                             OK reset-after N DIR   (default down)
 *   reset-after off           OK reset-after off
 *   blackhole                 OK blackhole
 *   refuse                    OK refuse
 *   accept                    OK accept
 *   reset-all                 OK reset-all conns=<n reset>
 *   stats                     OK conns=C accepted=A up=U down=D resets=R
 *   quit                      OK quit          (then exit 0)
 *   anything else             ERR <message>
 *
 * Semantics worth knowing when writing a test:
 *  - latency delays each chunk from the moment it was read; changing the
 *    latency re-times data already held ("latency 0" releases it at once).
 *    FIN is delayed like data.  With 256 KiB per direction, throughput
 *    under latency L is capped at about 256 KiB per L.
 *  - reset-after: "both" counts the bytes of both directions against one
 *    shared budget.  N = 0 resets at the first byte that would have been
 *    forwarded.  Before the RST we wait (at most 1 s) until the kernel has
 *    delivered what we already forwarded, so the peer really receives
 *    exactly N bytes and then ECONNRESET.
 *  - blackhole forwards nothing in either direction and loses nothing: what
 *    the proxy holds, and what it reads meanwhile (up to its buffer, then
 *    the senders' windows fill), flows on when the blackhole ends, as TCP's
 *    retransmissions deliver it after a partition heals.  It never drops
 *    bytes and carries on: that would cut a hole in a byte stream, which no
 *    TCP connection can show, and the peer would read a later reply as the
 *    answer to the lost request (the soak once "lost" an acknowledged SET
 *    that way).  A side that fails meanwhile is closed silently; its
 *    partner is closed when the blackhole ends.  Connections accepted
 *    during the blackhole are connected to the target when it ends.
 *  - refuse closes the listener, so pending not-yet-accepted connections
 *    get RST; "pass"/"accept" re-bind the same port (ERR if that fails).
 *  - On quit/SIGTERM/SIGINT remaining connections get a plain close, the
 *    pidfile is removed, exit status 0.
 *
 * Single-threaded: one poll() loop over non-blocking sockets.  Linux only
 * (signalfd, SIOCOUTQ); that is all the test suite runs on.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Per direction; a slow reader then stalls the writer through TCP flow
 * control instead of growing our memory. */
#define DIR_BUF_CAP ((size_t)256 * 1024)
#define READ_CHUNK ((size_t)64 * 1024)
#define CTL_IN_CAP 1024u
#define CTL_OUT_CAP 4096u
/* A command is only executed when this much output space is free, so a
 * control client that never reads cannot make us buffer without bound. */
#define CTL_REPLY_MAX 256u
#define MAX_CTLS 32u
#define LISTEN_BACKLOG 128
/* Accepting is capped per loop turn so a connect storm cannot starve the
 * relaying of existing connections. */
#define ACCEPT_BATCH 64
#define NS_PER_MS INT64_C(1000000)
/* Before sending RST we wait for the kernel to hand over the bytes we
 * already forwarded: an abortive close discards unsent data, which would
 * make "reset after exactly N bytes" a lie.  Bounded, because a peer that
 * stopped reading would otherwise keep the connection alive forever. */
#define RESET_DRAIN_NS (1000 * NS_PER_MS)
#define RESET_POLL_MS 2
#define ACCEPT_PAUSE_NS (100 * NS_PER_MS)
#define MAX_LATENCY_MS 3600000u

enum { UP = 0, DOWN = 1 }; /* UP: client -> server, DOWN: server -> client */
/* Side indices coincide with the direction they read for: q[UP] is filled
 * from the client and drained to the server, q[DOWN] the other way round.
 * So direction d reads side d and writes side 1 - d. */
enum { CLI = 0, SRV = 1 };

struct chunk {
    struct chunk *next;
    int64_t arrived_ns; /* due time is computed from the current latency so
                           that "latency 0" releases held data at once */
    size_t len, off;
    unsigned char data[];
};

struct queue {
    struct chunk *head, *tail;
    size_t bytes;
};

struct conn {
    int fd[2];
    int connecting;
    int rd_eof[2];
    int64_t eof_ns[2];
    int wr_shut[2];
    int broken;        /* a side died while blackholed; close on leaving */
    int64_t budget;    /* reset-after bytes left, -1 = unlimited */
    int reset_pending;
    int64_t reset_deadline_ns;
    int dead;
    struct queue q[2];
};

struct ctl {
    int fd;
    int eof, closing, dead;
    size_t inlen, outlen;
    char in[CTL_IN_CAP];
    char out[CTL_OUT_CAP];
};

enum { REF_SIG, REF_LISTEN, REF_CTL_LISTEN, REF_CTL, REF_CONN };

struct pollref {
    int kind;
    int side;
    void *ptr;
};

struct proxy {
    struct sockaddr_in listen_addr, target_addr, control_addr;
    int listen_fd, control_fd, sig_fd;
    int refusing;
    int blackhole;
    int64_t latency_ns;
    int64_t reset_n; /* -1 = off */
    unsigned reset_dirs;
    int quit;
    struct conn **conns;
    size_t nconns, capconns, max_conns;
    struct ctl **ctls;
    size_t nctls, capctls;
    struct pollfd *pfds;
    struct pollref *refs;
    size_t cappfds;
    uint64_t accepted, bytes[2], resets;
    int64_t accept_pause_until_ns;
    const char *pidfile;
    int pidfile_written;
};

static void logmsg(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("faultproxy: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        /* Latency scheduling is meaningless without a clock; cannot happen
         * on Linux, so no attempt at a graceful path. */
        logmsg("clock_gettime: %s", strerror(errno));
        exit(1);
    }
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void xclose(int fd)
{
    /* On Linux the descriptor is released even when close() fails, so
     * retrying would risk closing someone else's fd; just report it. */
    if (fd >= 0 && close(fd) != 0)
        logmsg("close(%d): %s", fd, strerror(errno));
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0)
        return -1;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void set_nodelay(int fd)
{
    int one = 1;

    /* Nagle would add its own delays on top of the ones we inject and make
     * latency measurements in tests noisy; failure is harmless. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        logmsg("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

static int sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return errno;
    return err;
}

static void arm(int64_t *timeout_ns, int64_t due_ns, int64_t now)
{
    int64_t d = due_ns - now;

    if (d < 0)
        d = 0;
    if (*timeout_ns < 0 || d < *timeout_ns)
        *timeout_ns = d;
}

static int ns_to_poll_ms(int64_t ns)
{
    int64_t ms;

    if (ns < 0)
        return -1;
    /* Round up: waking early would just spin until the chunk is due. */
    ms = (ns + NS_PER_MS - 1) / NS_PER_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static int parse_addr(const char *s, int allow_port0, struct sockaddr_in *out)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(s, ':');
    char *end;
    long port;
    size_t hlen;

    if (colon == NULL)
        return -1;
    hlen = (size_t)(colon - s);
    if (hlen == 0 || hlen >= sizeof host)
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -1;
    /* Loopback only: this tool deliberately misbehaves on the network and
     * must never be reachable from outside the test machine. */
    if ((ntohl(out->sin_addr.s_addr) >> 24) != 127)
        return -1;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < (allow_port0 ? 0 : 1) ||
        port > 65535)
        return -1;
    out->sin_port = htons((uint16_t)port);
    return 0;
}

/* Binds addr (port 0 = any) and writes the chosen port back into addr so a
 * later re-open after "refuse" lands on the same port. */
static int open_listener(struct sockaddr_in *addr, char *err, size_t errcap)
{
    int one = 1;
    int fd;
    int saved;
    const char *what;
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errcap, "socket: %s", strerror(errno));
        return -1;
    }
    /* Needed to re-bind while accepted connections on this port live on. */
    what = "setsockopt(SO_REUSEADDR)";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    what = "fcntl(O_NONBLOCK)";
    if (set_nonblock(fd) != 0)
        goto fail;
    what = "bind";
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
        goto fail;
    what = "listen";
    if (listen(fd, LISTEN_BACKLOG) != 0)
        goto fail;
    what = "getsockname";
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0)
        goto fail;
    addr->sin_port = bound.sin_port;
    return fd;
fail:
    saved = errno;
    snprintf(err, errcap, "%s: %s", what, strerror(saved));
    xclose(fd);
    errno = saved;
    return -1;
}

/* ---- connections ------------------------------------------------------ */

static void queue_clear(struct queue *q)
{
    struct chunk *ch = q->head;

    while (ch != NULL) {
        struct chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    q->head = q->tail = NULL;
    q->bytes = 0;
}

static void conn_close(struct conn *c)
{
    int s;

    for (s = 0; s < 2; s++) {
        xclose(c->fd[s]);
        c->fd[s] = -1;
    }
    queue_clear(&c->q[UP]);
    queue_clear(&c->q[DOWN]);
    c->dead = 1;
}

/* RST instead of FIN: tests need the peer to see ECONNRESET, the way a
 * crashed server or a stateful firewall would present itself. */
static void conn_abort(struct proxy *p, struct conn *c)
{
    struct linger lg;
    int s;

    lg.l_onoff = 1;
    lg.l_linger = 0;
    for (s = 0; s < 2; s++) {
        if (c->fd[s] < 0)
            continue;
        if (setsockopt(c->fd[s], SOL_SOCKET, SO_LINGER, &lg, sizeof lg) != 0)
            logmsg("setsockopt(SO_LINGER): %s", strerror(errno));
    }
    conn_close(c);
    p->resets++;
}

static int outq_empty(int fd)
{
    int n = 0;

    if (fd < 0)
        return 1;
    /* If the kernel cannot tell us, waiting cannot help either. */
    if (ioctl(fd, SIOCOUTQ, &n) != 0)
        return 1;
    return n == 0;
}

static void begin_reset(struct conn *c, int64_t now)
{
    c->reset_pending = 1;
    c->reset_deadline_ns = now + RESET_DRAIN_NS;
}

/* A side failed (error or impossible write).  Normally that ends the whole
 * connection; while blackholed the other side must not learn anything, so
 * it stays open until the blackhole ends. */
static void side_failed(struct proxy *p, struct conn *c, int s)
{
    if (!p->blackhole) {
        conn_close(c);
        return;
    }
    xclose(c->fd[s]);
    c->fd[s] = -1;
    if (s == SRV)
        c->connecting = 0;
    c->broken = 1;
    if (c->fd[1 - s] < 0)
        conn_close(c);
}

static int can_forward(const struct proxy *p, const struct conn *c)
{
    return !p->blackhole && !c->dead && !c->reset_pending && c->fd[CLI] >= 0 &&
           c->fd[SRV] >= 0 && !c->connecting;
}

static int want_read(const struct proxy *p, const struct conn *c, int s)
{
    if (c->dead || c->fd[s] < 0 || c->rd_eof[s] || c->reset_pending)
        return 0;
    if (s == SRV && c->connecting)
        return 0;
    /* While blackholed too: what is read is held, never dropped. */
    (void)p;
    return c->q[s].bytes < DIR_BUF_CAP;
}

static void start_connect(struct proxy *p, struct conn *c)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        logmsg("socket: %s", strerror(errno));
        conn_close(c);
        return;
    }
    if (set_nonblock(fd) != 0) {
        logmsg("fcntl(O_NONBLOCK): %s", strerror(errno));
        xclose(fd);
        conn_close(c);
        return;
    }
    set_nodelay(fd);
    c->fd[SRV] = fd;
    if (connect(fd, (const struct sockaddr *)&p->target_addr, sizeof p->target_addr) == 0)
        return;
    /* EINTR on a non-blocking connect still leaves it running in the
     * background, exactly like EINPROGRESS. */
    if (errno == EINPROGRESS || errno == EINTR) {
        c->connecting = 1;
        return;
    }
    side_failed(p, c, SRV);
}

static void finish_connect(struct proxy *p, struct conn *c)
{
    if (sock_error(c->fd[SRV]) != 0) {
        side_failed(p, c, SRV);
        return;
    }
    c->connecting = 0;
}

static void conn_read(struct proxy *p, struct conn *c, int s, int64_t now)
{
    unsigned char buf[READ_CHUNK];
    size_t room = READ_CHUNK;
    ssize_t n;
    struct chunk *ch;
    struct queue *q = &c->q[s];

    if (DIR_BUF_CAP - q->bytes < room)
        room = DIR_BUF_CAP - q->bytes;
    n = recv(c->fd[s], buf, room, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        side_failed(p, c, s);
        return;
    }
    if (n == 0) {
        c->rd_eof[s] = 1;
        c->eof_ns[s] = now;
        return;
    }
    ch = malloc(sizeof *ch + (size_t)n);
    if (ch == NULL) {
        /* Dropping bytes silently would corrupt the stream; better to end
         * the connection visibly. */
        logmsg("out of memory, closing connection");
        conn_close(c);
        return;
    }
    ch->next = NULL;
    ch->arrived_ns = now;
    ch->len = (size_t)n;
    ch->off = 0;
    memcpy(ch->data, buf, (size_t)n);
    if (q->tail != NULL)
        q->tail->next = ch;
    else
        q->head = ch;
    q->tail = ch;
    q->bytes += (size_t)n;
}

/* Sends what is due in direction d.  Returns 0 when the connection stopped
 * being forwardable (closed, or a reset is now pending). */
static int forward(struct proxy *p, struct conn *c, int d, int64_t now)
{
    struct queue *q = &c->q[d];
    int dst = 1 - d;
    int limited = c->budget >= 0 && (p->reset_dirs & (1u << d)) != 0;

    while (q->head != NULL) {
        struct chunk *ch = q->head;
        size_t len = ch->len - ch->off;
        ssize_t n;

        if (ch->arrived_ns + p->latency_ns > now)
            break;
        if (limited) {
            /* Only reachable with N = 0: the reset happens where the first
             * byte would have gone out. */
            if (c->budget == 0) {
                begin_reset(c, now);
                return 0;
            }
            if ((uint64_t)c->budget < len)
                len = (size_t)c->budget;
        }
        n = send(c->fd[dst], ch->data + ch->off, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            side_failed(p, c, dst);
            return 0;
        }
        ch->off += (size_t)n;
        q->bytes -= (size_t)n;
        p->bytes[d] += (uint64_t)n;
        if (limited) {
            c->budget -= n;
            if (c->budget == 0) {
                begin_reset(c, now);
                return 0;
            }
        }
        if (ch->off == ch->len) {
            q->head = ch->next;
            if (q->head == NULL)
                q->tail = NULL;
            free(ch);
        }
    }
    return 1;
}

static void conn_service(struct proxy *p, struct conn *c, int64_t now)
{
    int d;

    if (c->dead)
        return;
    if (c->reset_pending) {
        if (now >= c->reset_deadline_ns || (outq_empty(c->fd[CLI]) && outq_empty(c->fd[SRV])))
            conn_abort(p, c);
        return;
    }
    if (!p->blackhole) {
        if (c->broken) {
            conn_close(c);
            return;
        }
        /* Accepted during a blackhole: the network "heals" now. */
        if (c->fd[SRV] < 0) {
            start_connect(p, c);
            if (c->dead)
                return;
        }
    }
    if (!can_forward(p, c))
        return;
    for (d = 0; d < 2; d++)
        if (!forward(p, c, d, now))
            return;
    for (d = 0; d < 2; d++) {
        int dst = 1 - d;

        /* FIN travels behind the data and suffers the same latency. */
        if (c->rd_eof[d] && c->q[d].head == NULL && !c->wr_shut[dst] &&
            now >= c->eof_ns[d] + p->latency_ns) {
            if (shutdown(c->fd[dst], SHUT_WR) != 0) {
                side_failed(p, c, dst);
                return;
            }
            c->wr_shut[dst] = 1;
        }
    }
    if (c->rd_eof[CLI] && c->rd_eof[SRV] && c->wr_shut[CLI] && c->wr_shut[SRV])
        conn_close(c);
}

static void conn_event(struct proxy *p, struct conn *c, int s, short re, int64_t now)
{
    if (c->dead || c->fd[s] < 0)
        return;
    if (s == SRV && c->connecting) {
        finish_connect(p, c);
        return;
    }
    if ((re & POLLERR) && sock_error(c->fd[s]) != 0) {
        side_failed(p, c, s);
        return;
    }
    /* Writes happen in conn_service, which runs for every connection after
     * each poll anyway. */
    if ((re & (POLLIN | POLLHUP | POLLERR)) && want_read(p, c, s))
        conn_read(p, c, s, now);
}

static int push_conn(struct proxy *p, struct conn *c)
{
    if (p->nconns == p->capconns) {
        size_t ncap = p->capconns ? p->capconns * 2 : 16;
        struct conn **nc = realloc(p->conns, ncap * sizeof *nc);

        if (nc == NULL)
            return -1;
        p->conns = nc;
        p->capconns = ncap;
    }
    p->conns[p->nconns++] = c;
    return 0;
}

static void do_accept(struct proxy *p, int64_t now)
{
    int i;

    for (i = 0; i < ACCEPT_BATCH && p->nconns < p->max_conns; i++) {
        struct conn *c;
        int fd = accept(p->listen_fd, NULL, NULL);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE and friends leave the listener readable; without a
             * pause poll() would return at once forever. */
            logmsg("accept: %s", strerror(errno));
            p->accept_pause_until_ns = now + ACCEPT_PAUSE_NS;
            return;
        }
        if (set_nonblock(fd) != 0) {
            logmsg("fcntl(O_NONBLOCK): %s", strerror(errno));
            xclose(fd);
            continue;
        }
        set_nodelay(fd);
        c = calloc(1, sizeof *c);
        if (c == NULL || push_conn(p, c) != 0) {
            logmsg("out of memory, dropping new connection");
            free(c);
            xclose(fd);
            p->accept_pause_until_ns = now + ACCEPT_PAUSE_NS;
            return;
        }
        c->fd[CLI] = fd;
        c->fd[SRV] = -1;
        c->budget = p->reset_n;
        p->accepted++;
        if (!p->blackhole)
            start_connect(p, c);
    }
}

/* ---- control ---------------------------------------------------------- */

static int ctl_want_read(const struct proxy *p, const struct ctl *c)
{
    return !p->quit && !c->dead && !c->eof && !c->closing && c->inlen < CTL_IN_CAP;
}

static void ctl_close(struct ctl *c)
{
    xclose(c->fd);
    c->fd = -1;
    c->dead = 1;
}

static void ctl_read(struct ctl *c)
{
    ssize_t n = recv(c->fd, c->in + c->inlen, CTL_IN_CAP - c->inlen, 0);

    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        ctl_close(c);
        return;
    }
    if (n == 0) {
        c->eof = 1;
        /* `printf quit | nc` style clients omit the final newline. */
        if (c->inlen > 0 && c->inlen < CTL_IN_CAP && c->in[c->inlen - 1] != '\n')
            c->in[c->inlen++] = '\n';
        return;
    }
    c->inlen += (size_t)n;
}

static void ctl_accept(struct proxy *p)
{
    struct ctl *c;
    int fd = accept(p->control_fd, NULL, NULL);

    if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
            logmsg("accept(control): %s", strerror(errno));
        return;
    }
    if (set_nonblock(fd) != 0) {
        logmsg("fcntl(O_NONBLOCK): %s", strerror(errno));
        xclose(fd);
        return;
    }
    if (p->nctls == p->capctls) {
        size_t ncap = p->capctls ? p->capctls * 2 : 4;
        struct ctl **nc = realloc(p->ctls, ncap * sizeof *nc);

        if (nc == NULL) {
            logmsg("out of memory, dropping control client");
            xclose(fd);
            return;
        }
        p->ctls = nc;
        p->capctls = ncap;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        logmsg("out of memory, dropping control client");
        xclose(fd);
        return;
    }
    c->fd = fd;
    p->ctls[p->nctls++] = c;
}

static size_t split_words(char *s, char **argv, size_t max)
{
    size_t n = 0;

    for (;;) {
        s += strspn(s, " \t");
        if (*s == '\0')
            return n;
        if (n == max)
            return max + 1;
        argv[n++] = s;
        s += strcspn(s, " \t");
        if (*s != '\0')
            *s++ = '\0';
    }
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    unsigned long long v;

    /* strtoull accepts signs and spaces; a typo must not turn into 2^64-1. */
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

static int reopen_listener(struct proxy *p, char *err, size_t errcap)
{
    if (p->listen_fd >= 0)
        return 0;
    p->listen_fd = open_listener(&p->listen_addr, err, errcap);
    if (p->listen_fd < 0)
        return -1;
    p->refusing = 0;
    return 0;
}

static void set_reset_after(struct proxy *p, int64_t n, unsigned dirs)
{
    size_t i;

    p->reset_n = n;
    p->reset_dirs = dirs;
    for (i = 0; i < p->nconns; i++)
        if (!p->conns[i]->dead)
            p->conns[i]->budget = n;
}

static void set_blackhole(struct proxy *p)
{
    /* What the proxy holds stays held (see the blackhole note at the top). */
    p->blackhole = 1;
}

static size_t live_conns(const struct proxy *p)
{
    size_t i, n = 0;

    for (i = 0; i < p->nconns; i++)
        if (!p->conns[i]->dead)
            n++;
    return n;
}

/* Returns 0 for a blank line (no reply), 1 when reply was filled in. */
static int ctl_exec(struct proxy *p, char *line, char *reply, size_t cap)
{
    char *argv[4];
    size_t argc = split_words(line, argv, 3);
    char err[160];
    uint64_t v;

    if (argc == 0)
        return 0;
    if (argc > 3) {
        snprintf(reply, cap, "ERR too many arguments");
        return 1;
    }
    if (strcmp(argv[0], "pass") == 0 && argc == 1) {
        p->latency_ns = 0;
        p->blackhole = 0;
        set_reset_after(p, -1, 0);
        if (reopen_listener(p, err, sizeof err) != 0)
            snprintf(reply, cap, "ERR cannot re-open listener: %s", err);
        else
            snprintf(reply, cap, "OK pass");
    } else if (strcmp(argv[0], "latency") == 0 && argc == 2) {
        if (parse_u64(argv[1], MAX_LATENCY_MS, &v) != 0) {
            snprintf(reply, cap, "ERR latency wants 0..%u milliseconds", MAX_LATENCY_MS);
        } else {
            p->latency_ns = (int64_t)v * NS_PER_MS;
            snprintf(reply, cap, "OK latency %" PRIu64, v);
        }
    } else if (strcmp(argv[0], "reset-after") == 0 && (argc == 2 || argc == 3)) {
        unsigned dirs = 1u << DOWN;
        const char *dname = "down";

        if (argc == 2 && strcmp(argv[1], "off") == 0) {
            set_reset_after(p, -1, 0);
            snprintf(reply, cap, "OK reset-after off");
            return 1;
        }
        if (parse_u64(argv[1], INT64_MAX, &v) != 0) {
            snprintf(reply, cap, "ERR reset-after wants a byte count or 'off'");
            return 1;
        }
        if (argc == 3) {
            dname = argv[2];
            if (strcmp(dname, "up") == 0) {
                dirs = 1u << UP;
            } else if (strcmp(dname, "both") == 0) {
                dirs = (1u << UP) | (1u << DOWN);
            } else if (strcmp(dname, "down") != 0) {
                snprintf(reply, cap, "ERR direction must be up, down or both");
                return 1;
            }
        }
        set_reset_after(p, (int64_t)v, dirs);
        snprintf(reply, cap, "OK reset-after %" PRIu64 " %s", v, dname);
    } else if (strcmp(argv[0], "blackhole") == 0 && argc == 1) {
        set_blackhole(p);
        snprintf(reply, cap, "OK blackhole");
    } else if (strcmp(argv[0], "refuse") == 0 && argc == 1) {
        /* Closing the listener is the only way to get a genuine
         * ECONNREFUSED on loopback; pending backlog entries get RST. */
        xclose(p->listen_fd);
        p->listen_fd = -1;
        p->refusing = 1;
        snprintf(reply, cap, "OK refuse");
    } else if (strcmp(argv[0], "accept") == 0 && argc == 1) {
        if (reopen_listener(p, err, sizeof err) != 0)
            snprintf(reply, cap, "ERR cannot re-open listener: %s", err);
        else
            snprintf(reply, cap, "OK accept");
    } else if (strcmp(argv[0], "reset-all") == 0 && argc == 1) {
        size_t i, n = 0;

        for (i = 0; i < p->nconns; i++) {
            if (!p->conns[i]->dead) {
                conn_abort(p, p->conns[i]);
                n++;
            }
        }
        snprintf(reply, cap, "OK reset-all conns=%zu", n);
    } else if (strcmp(argv[0], "stats") == 0 && argc == 1) {
        snprintf(reply, cap,
                 "OK conns=%zu accepted=%" PRIu64 " up=%" PRIu64 " down=%" PRIu64
                 " resets=%" PRIu64,
                 live_conns(p), p->accepted, p->bytes[UP], p->bytes[DOWN], p->resets);
    } else if (strcmp(argv[0], "quit") == 0 && argc == 1) {
        p->quit = 1;
        snprintf(reply, cap, "OK quit");
    } else {
        snprintf(reply, cap, "ERR unknown command or wrong arguments: %.40s", argv[0]);
    }
    return 1;
}

static int ctl_flush(struct ctl *c)
{
    while (c->outlen > 0) {
        ssize_t n = send(c->fd, c->out, c->outlen, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        memmove(c->out, c->out + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
    }
    return 0;
}

static void ctl_service(struct proxy *p, struct ctl *c)
{
    if (c->dead)
        return;
    while (!p->quit && !c->closing && c->outlen + CTL_REPLY_MAX <= CTL_OUT_CAP) {
        char reply[CTL_REPLY_MAX - 1];
        char *nl = memchr(c->in, '\n', c->inlen);
        size_t linelen;

        if (nl == NULL) {
            if (c->inlen == CTL_IN_CAP) {
                /* No way to find the next command boundary reliably. */
                memcpy(c->out + c->outlen, "ERR line too long\n", 18);
                c->outlen += 18;
                c->closing = 1;
            }
            break;
        }
        linelen = (size_t)(nl - c->in);
        *nl = '\0';
        if (linelen > 0 && c->in[linelen - 1] == '\r')
            c->in[linelen - 1] = '\0';
        if (ctl_exec(p, c->in, reply, sizeof reply)) {
            size_t rl = strlen(reply);

            memcpy(c->out + c->outlen, reply, rl);
            c->out[c->outlen + rl] = '\n';
            c->outlen += rl + 1;
        }
        c->inlen -= linelen + 1;
        memmove(c->in, nl + 1, c->inlen);
    }
    if (ctl_flush(c) != 0) {
        ctl_close(c);
        return;
    }
    if (c->outlen == 0 && (c->closing || (c->eof && memchr(c->in, '\n', c->inlen) == NULL)))
        ctl_close(c);
}

/* ---- main loop -------------------------------------------------------- */

static int ensure_pollcap(struct proxy *p)
{
    size_t need = 3 + p->nctls + 2 * p->nconns;
    struct pollfd *np;
    struct pollref *nr;

    if (need <= p->cappfds)
        return 0;
    np = realloc(p->pfds, need * sizeof *np);
    if (np == NULL)
        return -1;
    p->pfds = np;
    nr = realloc(p->refs, need * sizeof *nr);
    if (nr == NULL)
        return -1;
    p->refs = nr;
    p->cappfds = need;
    return 0;
}

static void add_pfd(struct proxy *p, size_t *n, int fd, short ev, int kind, void *ptr, int side)
{
    p->pfds[*n].fd = fd;
    p->pfds[*n].events = ev;
    p->pfds[*n].revents = 0;
    p->refs[*n].kind = kind;
    p->refs[*n].ptr = ptr;
    p->refs[*n].side = side;
    (*n)++;
}

static void conn_pollset(struct proxy *p, struct conn *c, int64_t now, int64_t *timeout,
                         size_t *n)
{
    int s;

    if (c->reset_pending) {
        arm(timeout, now + RESET_POLL_MS * NS_PER_MS, now);
        return;
    }
    for (s = 0; s < 2; s++) {
        short ev = 0;
        int d = 1 - s; /* the direction that writes to side s */

        if (c->fd[s] < 0)
            continue;
        if (s == SRV && c->connecting) {
            ev = POLLOUT;
        } else {
            if (want_read(p, c, s))
                ev |= POLLIN;
            if (can_forward(p, c)) {
                if (c->q[d].head != NULL) {
                    int64_t due = c->q[d].head->arrived_ns + p->latency_ns;

                    if (due <= now)
                        ev |= POLLOUT;
                    else
                        arm(timeout, due, now);
                } else if (c->rd_eof[d] && !c->wr_shut[s]) {
                    arm(timeout, c->eof_ns[d] + p->latency_ns, now);
                }
            }
        }
        /* An fd we want nothing from is left out entirely: POLLHUP cannot
         * be masked and would otherwise make poll() return in a loop. */
        if (ev != 0)
            add_pfd(p, n, c->fd[s], ev, REF_CONN, c, s);
    }
}

static void sweep(struct proxy *p)
{
    size_t i, j;

    for (i = j = 0; i < p->nconns; i++) {
        if (p->conns[i]->dead)
            free(p->conns[i]);
        else
            p->conns[j++] = p->conns[i];
    }
    p->nconns = j;
    for (i = j = 0; i < p->nctls; i++) {
        if (p->ctls[i]->dead)
            free(p->ctls[i]);
        else
            p->ctls[j++] = p->ctls[i];
    }
    p->nctls = j;
}

static void handle_signal(struct proxy *p)
{
    struct signalfd_siginfo si;
    ssize_t n = read(p->sig_fd, &si, sizeof si);

    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            logmsg("read(signalfd): %s", strerror(errno));
            p->quit = 1;
        }
        return;
    }
    p->quit = 1;
}

static int run(struct proxy *p)
{
    while (!p->quit) {
        int64_t now = now_ns();
        int64_t timeout = -1;
        size_t n = 0, i;
        int r;

        if (ensure_pollcap(p) != 0) {
            logmsg("out of memory");
            return 1;
        }
        add_pfd(p, &n, p->sig_fd, POLLIN, REF_SIG, NULL, 0);
        if (p->listen_fd >= 0 && p->nconns < p->max_conns) {
            if (now >= p->accept_pause_until_ns)
                add_pfd(p, &n, p->listen_fd, POLLIN, REF_LISTEN, NULL, 0);
            else
                arm(&timeout, p->accept_pause_until_ns, now);
        }
        if (p->nctls < MAX_CTLS)
            add_pfd(p, &n, p->control_fd, POLLIN, REF_CTL_LISTEN, NULL, 0);
        for (i = 0; i < p->nctls; i++) {
            struct ctl *c = p->ctls[i];
            short ev = 0;

            if (ctl_want_read(p, c))
                ev |= POLLIN;
            if (c->outlen > 0)
                ev |= POLLOUT;
            if (ev != 0)
                add_pfd(p, &n, c->fd, ev, REF_CTL, c, 0);
        }
        for (i = 0; i < p->nconns; i++)
            conn_pollset(p, p->conns[i], now, &timeout, &n);

        r = poll(p->pfds, (nfds_t)n, ns_to_poll_ms(timeout));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            logmsg("poll: %s", strerror(errno));
            return 1;
        }
        now = now_ns();
        /* The listener is handled before any control command runs, so a
         * "refuse" in this turn cannot leave us accepting on a stale fd. */
        for (i = 0; i < n; i++) {
            short re = p->pfds[i].revents;
            struct pollref *ref = &p->refs[i];

            if (re == 0)
                continue;
            switch (ref->kind) {
            case REF_SIG:
                handle_signal(p);
                break;
            case REF_LISTEN:
                do_accept(p, now);
                break;
            case REF_CTL_LISTEN:
                ctl_accept(p);
                break;
            case REF_CTL: {
                struct ctl *c = ref->ptr;

                if (!c->dead && (re & (POLLIN | POLLHUP | POLLERR)) && ctl_want_read(p, c))
                    ctl_read(c);
                break;
            }
            default:
                conn_event(p, ref->ptr, ref->side, re, now);
                break;
            }
        }
        for (i = 0; i < p->nctls; i++)
            ctl_service(p, p->ctls[i]);
        for (i = 0; i < p->nconns; i++)
            conn_service(p, p->conns[i], now);
        sweep(p);
    }
    return 0;
}

/* The "OK quit" reply must reach the client before we vanish, or tests
 * cannot tell a clean quit from a crash. */
static void final_flush(struct proxy *p)
{
    int64_t deadline = now_ns() + 500 * NS_PER_MS;
    size_t i;

    for (i = 0; i < p->nctls; i++) {
        struct ctl *c = p->ctls[i];

        while (!c->dead && c->outlen > 0) {
            struct pollfd pf;
            int64_t left = deadline - now_ns();
            int r;

            if (left <= 0)
                return;
            pf.fd = c->fd;
            pf.events = POLLOUT;
            pf.revents = 0;
            r = poll(&pf, 1, ns_to_poll_ms(left));
            if (r < 0 && errno != EINTR)
                break;
            if (r <= 0)
                continue;
            if (ctl_flush(c) != 0)
                break;
        }
    }
}

static void cleanup(struct proxy *p)
{
    size_t i;

    for (i = 0; i < p->nconns; i++) {
        if (!p->conns[i]->dead)
            conn_close(p->conns[i]);
        free(p->conns[i]);
    }
    for (i = 0; i < p->nctls; i++) {
        if (!p->ctls[i]->dead)
            ctl_close(p->ctls[i]);
        free(p->ctls[i]);
    }
    free(p->conns);
    free(p->ctls);
    free(p->pfds);
    free(p->refs);
    xclose(p->listen_fd);
    xclose(p->control_fd);
    xclose(p->sig_fd);
    if (p->pidfile_written && p->pidfile != NULL && unlink(p->pidfile) != 0)
        logmsg("unlink(%s): %s", p->pidfile, strerror(errno));
}

static int write_pidfile(const char *path)
{
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    size_t off = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0)
        return -1;
    while (off < (size_t)len) {
        ssize_t n = write(fd, buf + off, (size_t)len - off);

        if (n < 0) {
            int saved = errno;

            if (saved == EINTR)
                continue;
            xclose(fd);
            errno = saved;
            return -1;
        }
        off += (size_t)n;
    }
    return close(fd);
}

static size_t compute_max_conns(void)
{
    struct rlimit rl;
    rlim_t avail;

    /* Each connection costs two fds; hitting EMFILE mid-connect would turn
     * into spurious resets, so stop accepting before that. */
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    if (rl.rlim_cur < 16 + MAX_CTLS + 2)
        return 1;
    avail = (rl.rlim_cur - 16 - MAX_CTLS) / 2;
    return avail > 65536 ? 65536 : (size_t)avail;
}

static void usage(void)
{
    fputs("usage: faultproxy --listen 127.0.0.1:PORT --target 127.0.0.1:PORT\n"
          "                  --control 127.0.0.1:PORT [--pidfile FILE]\n",
          stderr);
}

static int setup_signals(struct proxy *p)
{
    struct sigaction sa;
    sigset_t set;

    /* Writes use MSG_NOSIGNAL, but stdout may be a pipe the test closed. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0) {
        logmsg("sigaction(SIGPIPE): %s", strerror(errno));
        return -1;
    }
    /* signalfd lets poll() see SIGTERM/SIGINT without a global flag
     * written from a signal handler. */
    if (sigemptyset(&set) != 0 || sigaddset(&set, SIGTERM) != 0 || sigaddset(&set, SIGINT) != 0) {
        logmsg("sigset: %s", strerror(errno));
        return -1;
    }
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        logmsg("sigprocmask: %s", strerror(errno));
        return -1;
    }
    p->sig_fd = signalfd(-1, &set, 0);
    if (p->sig_fd < 0) {
        logmsg("signalfd: %s", strerror(errno));
        return -1;
    }
    if (set_nonblock(p->sig_fd) != 0) {
        logmsg("fcntl(O_NONBLOCK): %s", strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct proxy p;
    const char *listen_s = NULL, *target_s = NULL, *control_s = NULL;
    char err[160];
    int i, rc;

    memset(&p, 0, sizeof p);
    p.listen_fd = p.control_fd = p.sig_fd = -1;
    p.reset_n = -1;

    for (i = 1; i < argc; i++) {
        const char **slot = NULL;

        if (strcmp(argv[i], "--listen") == 0)
            slot = &listen_s;
        else if (strcmp(argv[i], "--target") == 0)
            slot = &target_s;
        else if (strcmp(argv[i], "--control") == 0)
            slot = &control_s;
        else if (strcmp(argv[i], "--pidfile") == 0)
            slot = &p.pidfile;
        if (slot == NULL || i + 1 >= argc) {
            usage();
            return 2;
        }
        *slot = argv[++i];
    }
    if (listen_s == NULL || target_s == NULL || control_s == NULL) {
        usage();
        return 2;
    }
    if (parse_addr(listen_s, 1, &p.listen_addr) != 0 ||
        parse_addr(target_s, 0, &p.target_addr) != 0 ||
        parse_addr(control_s, 1, &p.control_addr) != 0) {
        logmsg("addresses must be 127.x.x.x:PORT (PORT 0 allowed for --listen/--control)");
        return 2;
    }

    rc = 1;
    if (setup_signals(&p) != 0)
        goto out;
    p.max_conns = compute_max_conns();
    p.listen_fd = open_listener(&p.listen_addr, err, sizeof err);
    if (p.listen_fd < 0) {
        logmsg("listen %s: %s", listen_s, err);
        goto out;
    }
    p.control_fd = open_listener(&p.control_addr, err, sizeof err);
    if (p.control_fd < 0) {
        logmsg("control %s: %s", control_s, err);
        goto out;
    }
    /* Written before the LISTEN line, so a test that has read the line can
     * rely on the pidfile being there. */
    if (p.pidfile != NULL) {
        if (write_pidfile(p.pidfile) != 0) {
            logmsg("pidfile %s: %s", p.pidfile, strerror(errno));
            goto out;
        }
        p.pidfile_written = 1;
    }
    if (printf("LISTEN %u CONTROL %u\n", (unsigned)ntohs(p.listen_addr.sin_port),
               (unsigned)ntohs(p.control_addr.sin_port)) < 0 ||
        fflush(stdout) != 0) {
        logmsg("stdout: %s", strerror(errno));
        goto out;
    }
    rc = run(&p);
    final_flush(&p);
out:
    cleanup(&p);
    return rc;
}
