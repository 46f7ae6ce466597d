/*
 * epoll_relay: the floor a gateway is measured against. A minimal
 * single-threaded epoll TCP relay: each accepted client gets its own
 * upstream connection, and bytes are written on at once after every read
 * ("read, then write"), with TCP_NODELAY on both sides. No parsing, no
 * stamping, no routing: whatever a gateway adds on top of this is its cost.
 *
 *   epoll_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT [CONGESTION]
 *
 * CONGESTION, if given, is the TCP congestion control of every socket
 * (TCP_CONGESTION: cubic, reno, bbr, ...), as fepbench --tcp-congestion
 * gives the other processes; without it the system's applies.
 *
 * Prints "ready <host:port>" once listening (port 0 picks one), runs until
 * SIGINT/SIGTERM, exits 0. With FEP_LIFELINE=stdin it also stops when stdin
 * reaches end of file (its parent died). fepbench's baseline compiles and
 * runs it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_LEN (256 * 1024)
#define FDS_MAX 65536

/* One direction of a relayed pair: bytes read from `fd` go to `peer`. */
struct side {
    int fd;
    int peer;
    char *pending; /* bytes read but not yet written to `peer` */
    size_t pending_len;
};

static struct side *sides[FDS_MAX];
static volatile sig_atomic_t stop;
static int ep;

static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
    fprintf(stderr, "epoll_relay: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int parse(const char *text, struct sockaddr_in *addr) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, colon - text);
    host[colon - text] = 0;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((unsigned short)atoi(colon + 1));
    return inet_pton(AF_INET, host, &addr->sin_addr) == 1 ? 0 : -1;
}

/* The congestion control every socket gets, or NULL for the system's. */
static const char *congestion;

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (congestion &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, congestion, strlen(congestion)) < 0)
        die("TCP_CONGESTION");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void watch(int fd, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) die("epoll_ctl");
}

static void close_pair(int fd) {
    struct side *s = sides[fd];
    if (!s) return;
    int peer = s->peer;
    int fds[2] = {fd, peer};
    for (int i = 0; i < 2; i++) {
        struct side *x = sides[fds[i]];
        if (!x) continue;
        epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
        close(fds[i]);
        free(x->pending);
        free(x);
        sides[fds[i]] = NULL;
    }
}

/* Writes what `s` holds for its peer; returns -1 on a dead peer. */
static int flush(struct side *s) {
    while (s->pending_len > 0) {
        ssize_t n = write(s->peer, s->pending, s->pending_len);
        if (n < 0 && errno == EAGAIN) return 0;
        if (n <= 0) return -1;
        memmove(s->pending, s->pending + n, s->pending_len - (size_t)n);
        s->pending_len -= (size_t)n;
    }
    return 0;
}

/* Readable `fd`: read, then write on at once; backlog parks the reader. */
static void relay(int fd) {
    struct side *s = sides[fd];
    static char buf[BUF_LEN];
    for (;;) {
        if (s->pending_len > 0) return; /* wait for the peer to drain */
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { close_pair(fd); return; }
        ssize_t w = write(s->peer, buf, (size_t)n);
        if (w < 0 && errno != EAGAIN) { close_pair(fd); return; }
        if (w < 0) w = 0;
        if (w < n) {
            s->pending = realloc(s->pending, (size_t)(n - w));
            if (!s->pending) die("realloc");
            memcpy(s->pending, buf + w, (size_t)(n - w));
            s->pending_len = (size_t)(n - w);
            watch(s->peer, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
    }
}

/* Writable `fd`: flush what its peer's side parked for it. */
static void drain(int fd) {
    struct side *mine = sides[fd];
    struct side *other = sides[mine->peer];
    if (flush(other) < 0) { close_pair(fd); return; }
    if (other->pending_len == 0) {
        watch(fd, EPOLLIN, EPOLL_CTL_MOD);
        relay(other->fd);
    }
}

static void pair(int client, const struct sockaddr_in *upstream) {
    int up = socket(AF_INET, SOCK_STREAM, 0);
    if (up < 0 || up >= FDS_MAX || client >= FDS_MAX ||
        connect(up, (const struct sockaddr *)upstream, sizeof *upstream) < 0) {
        fprintf(stderr, "epoll_relay: upstream connect: %s\n", strerror(errno));
        if (up >= 0) close(up);
        close(client);
        return;
    }
    tune(client);
    tune(up);
    int fds[2] = {client, up};
    for (int i = 0; i < 2; i++) {
        struct side *s = calloc(1, sizeof *s);
        if (!s) die("calloc");
        s->fd = fds[i];
        s->peer = fds[1 - i];
        sides[fds[i]] = s;
        watch(fds[i], EPOLLIN, EPOLL_CTL_ADD);
    }
}

int main(int argc, char **argv) {
    struct sockaddr_in listen_addr, upstream;
    if (argc < 3 || argc > 4 || parse(argv[1], &listen_addr) || parse(argv[2], &upstream)) {
        fprintf(stderr, "usage: epoll_relay LISTEN_HOST:PORT UPSTREAM_HOST:PORT [CONGESTION]\n");
        return 2;
    }
    congestion = argc == 4 ? argv[3] : NULL;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (congestion &&
        setsockopt(lfd, IPPROTO_TCP, TCP_CONGESTION, congestion, strlen(congestion)) < 0)
        die("TCP_CONGESTION");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0) die("bind");
    if (listen(lfd, 1024) < 0) die("listen");
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    socklen_t len = sizeof listen_addr;
    getsockname(lfd, (struct sockaddr *)&listen_addr, &len);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &listen_addr.sin_addr, host, sizeof host);
    printf("ready %s:%d\n", host, ntohs(listen_addr.sin_port));
    fflush(stdout);
    if ((ep = epoll_create1(0)) < 0) die("epoll_create1");
    watch(lfd, EPOLLIN, EPOLL_CTL_ADD);
    const char *lifeline = getenv("FEP_LIFELINE");
    int life = lifeline && strcmp(lifeline, "stdin") == 0 ? STDIN_FILENO : -1;
    if (life >= 0) watch(life, EPOLLIN, EPOLL_CTL_ADD);
    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == life) {
                char sink[256];
                ssize_t r = read(life, sink, sizeof sink);
                if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) stop = 1;
                continue;
            }
            if (fd == lfd) {
                int c;
                while ((c = accept(lfd, NULL, NULL)) >= 0) pair(c, &upstream);
                continue;
            }
            if (!sides[fd]) continue;
            if (events[i].events & (EPOLLERR | EPOLLHUP)) { close_pair(fd); continue; }
            if (events[i].events & EPOLLOUT) drain(fd);
            if (sides[fd] && (events[i].events & EPOLLIN)) relay(fd);
        }
    }
    return 0;
}
