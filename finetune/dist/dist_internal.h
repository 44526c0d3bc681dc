/* finetune/dist/dist_internal.h - the pieces of a dist_comm. Private to finetune/dist/. */
#ifndef DS_FINETUNE_DIST_INTERNAL_H
#define DS_FINETUNE_DIST_INTERNAL_H

#include "dist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The connections between the ranks: rank 0 holds one per other rank (peer[r],
 * -1 for itself), every other rank one to rank 0 (peer[0]). */
typedef struct {
    int rank, world;
    int *peer;
} dist_links;

/* dist_links_open() : rank 0 listens at the master port and accepts world-1
 * ranks; the others connect (retrying until the deadline). Rank 0 then sends
 * every rank `token` (token_bytes: the NCCL unique id, or nothing). */
int dist_links_open(const dist_env *e, void *token, size_t token_bytes, dist_links *out);
void dist_links_close(dist_links *l);
int dist_links_gather(dist_links *l, const void *mine, size_t bytes, void *all);
int dist_links_broadcast(dist_links *l, void *buf, size_t bytes);
/* Sum through rank 0, in rank order, the result sent back to every rank. */
int dist_links_sum_floats(dist_links *l, float *buf, size_t n);

/* Seconds to wait for the other ranks (DSFT_DIST_TIMEOUT, default 600). */
double dist_timeout_s(void);

/* NCCL (dist_nccl.c; DS_ENOINPUT naming the library where it is missing). */
typedef struct dist_nccl dist_nccl;
int dist_nccl_unique_id(void *id, size_t bytes);
int dist_nccl_open(const void *id, int rank, int world, dist_nccl **out);
int dist_nccl_sum_floats(dist_nccl *n, float *dev_buf, size_t count);
/* failed: abort (the peers may be gone) rather than destroy */
void dist_nccl_close(dist_nccl *n, bool failed);
/* The NCCL unique id's size (NCCL_UNIQUE_ID_BYTES). */
#define DIST_NCCL_ID_BYTES 128

struct dist_comm {
    dist_kind kind;
    dist_links links;
    dist_nccl *nccl;
    bool failed;     /* a gather or sum failed: a peer may be gone */
};

#endif
