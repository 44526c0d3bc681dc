/* finetune/dist/dist_links.c - the ranks' meeting point: rank 0 listens at
 * MASTER_ADDR:MASTER_PORT, every other rank connects to it once. The
 * connections carry the NCCL unique id, the per-step summaries and, in the
 * test mode, the gradients. A connection that closes means its rank stopped:
 * a read says so at once, instead of waiting forever. */
#include "dist_internal.h"

#include "core/clock.h"
#include "core/mem.h"
#include "core/status.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HELLO_MAGIC 0x64736674u   /* "dsft" */

typedef struct {
    uint32_t magic;
    int32_t rank, world;
} hello;

static int send_all(int fd, const void *p, size_t n, int to_rank)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return ds_fail(DS_ETRAIN, "rank %d stopped (its connection closed: %s)", to_rank, strerror(errno));
        c += k;
        n -= (size_t)k;
    }
    return DS_OK;
}

static int recv_all(int fd, void *p, size_t n, int from_rank)
{
    char *c = p;
    while (n > 0) {
        ssize_t k = recv(fd, c, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) return ds_fail(DS_ETRAIN, "rank %d stopped (its connection closed)", from_rank);
        if (k < 0) return ds_fail(DS_ETRAIN, "rank %d: connection failed: %s", from_rank, strerror(errno));
        c += k;
        n -= (size_t)k;
    }
    return DS_OK;
}

static void no_delay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int resolve(const dist_env *e, bool passive, struct addrinfo **ai)
{
    char port[16];
    snprintf(port, sizeof port, "%d", e->master_port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    int g = getaddrinfo(passive ? NULL : e->master_addr, port, &hints, ai);
    if (g) return ds_fail(DS_EUSAGE, "MASTER_ADDR=%s MASTER_PORT=%d: %s", e->master_addr, e->master_port, gai_strerror(g));
    return DS_OK;
}

/* Rank 0: accept the world-1 others, each saying its rank first. */
static int accept_ranks(const dist_env *e, dist_links *l, double deadline)
{
    struct addrinfo *ai;
    int rc = resolve(e, true, &ai), lfd = -1;
    for (struct addrinfo *a = rc ? NULL : ai; a && lfd < 0; a = a->ai_next) {
        lfd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        int one = 1;
        if (lfd >= 0) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd >= 0 && (bind(lfd, a->ai_addr, a->ai_addrlen) || listen(lfd, l->world))) {
            close(lfd);
            lfd = -1;
        }
    }
    if (!rc) freeaddrinfo(ai);
    if (!rc && lfd < 0)
        rc = ds_fail(DS_EUSAGE, "rank 0 cannot listen on port %d (MASTER_PORT): %s", e->master_port, strerror(errno));
    for (int joined = 1; !rc && joined < l->world;) {
        int left_ms = (int)((deadline - ds_now()) * 1000);
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int n = left_ms > 0 ? poll(&p, 1, left_ms) : 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            rc = ds_fail(DS_ETRAIN, "rank 0: only %d of %d ranks arrived at port %d within %.0f s (DSFT_DIST_TIMEOUT)",
                         joined, l->world, e->master_port, dist_timeout_s());
            break;
        }
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        hello h;
        struct timeval wait = {.tv_sec = 10}, forever = {0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
        bool ok = recv_all(fd, &h, sizeof h, -1) == DS_OK && h.magic == HELLO_MAGIC;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
        if (!ok) {
            close(fd);   /* not one of ours (a port scanner, a stale process): keep waiting */
            ds_clear_error();
            continue;
        }
        if (h.world != l->world || h.rank < 1 || h.rank >= l->world || l->peer[h.rank] >= 0) {
            close(fd);
            rc = ds_fail(DS_EUSAGE, "a rank arrived as RANK=%d of WORLD_SIZE=%d, but rank 0 has WORLD_SIZE=%d%s", h.rank,
                         h.world, l->world, h.rank >= 1 && h.rank < l->world && l->peer[h.rank] >= 0 ? " and that rank already" : "");
            break;
        }
        no_delay(fd);
        l->peer[h.rank] = fd;
        joined++;
    }
    if (lfd >= 0) close(lfd);
    return rc;
}

/* Any other rank: connect to rank 0, retrying while it is not listening yet. */
static int join_rank0(const dist_env *e, dist_links *l, double deadline)
{
    for (;;) {
        struct addrinfo *ai;
        int rc = resolve(e, false, &ai);
        if (rc) return rc;
        for (struct addrinfo *a = ai; a && l->peer[0] < 0; a = a->ai_next) {
            int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0) l->peer[0] = fd;
            else if (fd >= 0) close(fd);
        }
        freeaddrinfo(ai);
        if (l->peer[0] >= 0) break;
        if (ds_now() > deadline)
            return ds_fail(DS_ETRAIN, "rank %d: nobody listens at %s:%d (MASTER_ADDR:MASTER_PORT) after %.0f s "
                                      "(DSFT_DIST_TIMEOUT)", l->rank, e->master_addr, e->master_port, dist_timeout_s());
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    no_delay(l->peer[0]);
    hello h = {.magic = HELLO_MAGIC, .rank = l->rank, .world = l->world};
    return send_all(l->peer[0], &h, sizeof h, 0);
}

int dist_links_open(const dist_env *e, void *token, size_t token_bytes, dist_links *out)
{
    memset(out, 0, sizeof *out);
    out->rank = e->rank;
    out->world = e->world;
    out->peer = ds_calloc((size_t)e->world, sizeof *out->peer, "the ranks' connections");
    if (!out->peer) return DS_ENOMEM;
    for (int r = 0; r < e->world; r++) out->peer[r] = -1;
    double deadline = ds_now() + dist_timeout_s();
    int rc = e->rank == 0 ? accept_ranks(e, out, deadline) : join_rank0(e, out, deadline);
    for (int r = 1; !rc && e->rank == 0 && r < e->world; r++) rc = send_all(out->peer[r], token, token_bytes, r);
    if (!rc && e->rank != 0) rc = recv_all(out->peer[0], token, token_bytes, 0);
    if (rc) dist_links_close(out);
    return rc;
}

void dist_links_close(dist_links *l)
{
    for (int r = 0; l->peer && r < l->world; r++)
        if (l->peer[r] >= 0) close(l->peer[r]);
    free(l->peer);
    memset(l, 0, sizeof *l);
}

int dist_links_gather(dist_links *l, const void *mine, size_t bytes, void *all)
{
    char *out = all;
    if (l->rank != 0) {
        int rc = send_all(l->peer[0], mine, bytes, 0);
        return rc ? rc : recv_all(l->peer[0], all, bytes * (size_t)l->world, 0);
    }
    memcpy(out, mine, bytes);
    for (int r = 1; r < l->world; r++) {
        int rc = recv_all(l->peer[r], out + (size_t)r * bytes, bytes, r);
        if (rc) return rc;
    }
    for (int r = 1; r < l->world; r++) {
        int rc = send_all(l->peer[r], all, bytes * (size_t)l->world, r);
        if (rc) return rc;
    }
    return DS_OK;
}

int dist_links_broadcast(dist_links *l, void *buf, size_t bytes)
{
    if (l->rank != 0) return recv_all(l->peer[0], buf, bytes, 0);
    for (int r = 1; r < l->world; r++) {
        int rc = send_all(l->peer[r], buf, bytes, r);
        if (rc) return rc;
    }
    return DS_OK;
}

int dist_links_sum_floats(dist_links *l, float *buf, size_t n)
{
    if (l->rank != 0) {
        int rc = send_all(l->peer[0], buf, n * sizeof(float), 0);
        return rc ? rc : recv_all(l->peer[0], buf, n * sizeof(float), 0);
    }
    /* ((x0 + x1) + x2) + ...: the same order on every run */
    enum { CHUNK = 1 << 18 };
    float *part = ds_malloc(sizeof(float) * CHUNK, "a chunk of another rank's gradients");
    if (!part) return DS_ENOMEM;
    int rc = DS_OK;
    for (int r = 1; !rc && r < l->world; r++) {
        for (size_t i = 0; !rc && i < n; i += CHUNK) {
            size_t k = n - i < CHUNK ? n - i : CHUNK;
            rc = recv_all(l->peer[r], part, k * sizeof(float), r);
            for (size_t j = 0; !rc && j < k; j++) buf[i + j] += part[j];
        }
    }
    free(part);
    for (int r = 1; !rc && r < l->world; r++) rc = send_all(l->peer[r], buf, n * sizeof(float), r);
    return rc;
}
