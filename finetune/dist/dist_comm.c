/* finetune/dist/dist_comm.c - a rank's view of the others: open, gather, sum. */
#include "dist_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

int dist_open(const dist_env *e, dist_kind kind, dist_comm **out)
{
    *out = NULL;
    dist_comm *c = ds_calloc(1, sizeof *c, "the ranks' communicator");
    if (!c) return DS_ENOMEM;
    c->kind = kind;
    /* Rank 0 makes the NCCL id; the meeting hands it to the others. */
    unsigned char id[DIST_NCCL_ID_BYTES] = {0};
    size_t id_bytes = kind == DIST_NCCL ? sizeof id : 0;
    int rc = kind == DIST_NCCL && e->rank == 0 ? dist_nccl_unique_id(id, sizeof id) : DS_OK;
    if (!rc) rc = dist_links_open(e, id, id_bytes, &c->links);
    if (!rc && kind == DIST_NCCL) rc = dist_nccl_open(id, e->rank, e->world, &c->nccl);
    if (rc) {
        c->failed = true;
        dist_close(c);
        return ds_fail_context(rc, "rank %d of %d: ", e->rank, e->world);
    }
    *out = c;
    return DS_OK;
}

void dist_close(dist_comm *c)
{
    if (!c) return;
    dist_nccl_close(c->nccl, c->failed);
    dist_links_close(&c->links);
    free(c);
}

int dist_rank(const dist_comm *c) { return c->links.rank; }
int dist_world(const dist_comm *c) { return c->links.world; }
dist_kind dist_comm_kind(const dist_comm *c) { return c->kind; }
const char *dist_kind_name(const dist_comm *c) { return c->kind == DIST_NCCL ? "NCCL" : "test sum through rank 0"; }

int dist_gather(dist_comm *c, const void *mine, size_t bytes, void *all)
{
    int rc = dist_links_gather(&c->links, mine, bytes, all);
    if (rc) c->failed = true;
    return rc;
}

int dist_broadcast(dist_comm *c, void *buf, size_t bytes)
{
    int rc = dist_links_broadcast(&c->links, buf, bytes);
    if (rc) c->failed = true;
    return rc;
}

int dist_sum_floats(dist_comm *c, float *buf, size_t n)
{
    if (c->links.world == 1 && c->kind == DIST_TEST_SUM) return DS_OK;
    int rc = c->kind == DIST_NCCL ? dist_nccl_sum_floats(c->nccl, buf, n) : dist_links_sum_floats(&c->links, buf, n);
    if (rc) c->failed = true;
    return rc;
}
