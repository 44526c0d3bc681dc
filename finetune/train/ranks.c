/* finetune/train/ranks.c - what the ranks of a run agree on each step. */
#include "ranks.h"

#include "core/interrupt.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One rank's word on a step. Metric names travel as text: each process has
 * its own addresses. */
typedef struct {
    int32_t status, stop, nmetrics;
    double loss;
    char name[LOSS_MAX_METRICS][32];
    double sum[LOSS_MAX_METRICS], count[LOSS_MAX_METRICS];
    char msg[512];
} rank_word;

void ranks_init(trainer_ranks *k, dist_comm *comm)
{
    k->comm = comm;
    k->rank = comm ? dist_rank(comm) : 0;
    k->world = comm ? dist_world(comm) : 1;
    k->stop = false;
}

int ranks_check_device(const trainer_ranks *k, const backend *be)
{
    if (!k->comm) return DS_OK;
    dist_kind kind = dist_comm_kind(k->comm);
    if (kind == DIST_NCCL && be->kind != BE_CUDA)
        return ds_fail(DS_EUSAGE, "rank %d of %d: several ranks train on GPUs (NCCL), but the device is %s; set "
                                  "device: cuda or auto on a machine with GPUs", k->rank, k->world, be_name(be));
    if (kind == DIST_TEST_SUM && be->kind != BE_CPU)
        return ds_fail(DS_EUSAGE, "rank %d of %d: --cpu-ranks is a test on the CPU, but the device is %s (use --gpus "
                                  "N, or device: cpu)", k->rank, k->world, be_name(be));
    return DS_OK;
}

/* loss_metrics keeps its names by pointer: the names other ranks send get a
 * place for the life of the process (a handful of short names in all). */
static const char *metric_name(const char *name)
{
    static char names[4 * LOSS_MAX_METRICS][32];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return names[i];
    if (n == 4 * LOSS_MAX_METRICS) return NULL;
    snprintf(names[n], sizeof names[n], "%s", name);
    return names[n++];
}

int ranks_agree(trainer_ranks *k, int rc, const char *what, double *loss, loss_metrics *metrics)
{
    if (!k->comm) return rc;
    rank_word mine = {.status = rc, .stop = ds_interrupted(), .loss = loss ? *loss : 0};
    if (rc) snprintf(mine.msg, sizeof mine.msg, "%s", ds_errmsg());
    for (int i = 0; metrics && i < metrics->n; i++) {
        snprintf(mine.name[i], sizeof mine.name[i], "%s", metrics->name[i]);
        mine.sum[i] = metrics->sum[i];
        mine.count[i] = metrics->count[i];
    }
    mine.nmetrics = metrics ? metrics->n : 0;
    rank_word *all = ds_calloc((size_t)k->world, sizeof *all, "the ranks' summaries");
    if (!all) return DS_ENOMEM;
    int grc = dist_gather(k->comm, &mine, sizeof mine, all);
    if (grc) {
        free(all);
        /* a rank stopped without a word (killed): this rank's own failure, if any, says more */
        if (rc) return ds_fail(rc, "%s", mine.msg);
        return ds_fail_context(grc, "%s: ", what);
    }
    int failed = -1;
    for (int r = 0; r < k->world && failed < 0; r++)
        if (all[r].status) failed = r;
    if (failed >= 0) {
        rank_word *f = &all[failed];
        all[failed].msg[sizeof f->msg - 1] = '\0';
        int code = f->status;
        if (failed == k->rank) code = ds_fail(code, "%s", f->msg);   /* its own words (main names the rank) */
        else code = ds_fail(code, "rank %d of %d stopped %s: %s", failed, k->world, what, f->msg);
        free(all);   /* after the message is made from it */
        return code;
    }
    k->stop = false;
    double total = 0;
    loss_metrics m = {0};
    for (int r = 0; r < k->world; r++) {
        const rank_word *w = &all[r];
        k->stop |= w->stop != 0;
        total += w->loss;
        for (int i = 0; i < w->nmetrics && i < LOSS_MAX_METRICS; i++) {
            char name[32];
            memcpy(name, w->name[i], sizeof name);
            name[sizeof name - 1] = '\0';
            const char *stable = metric_name(name);
            if (stable) loss_metrics_add(&m, stable, w->sum[i], w->count[i]);
        }
    }
    free(all);
    if (loss) *loss = total;
    if (metrics) *metrics = m;
    return DS_OK;
}

int ranks_sum(trainer_ranks *k, float *buf, size_t n)
{
    return k->comm ? dist_sum_floats(k->comm, buf, n) : DS_OK;
}
