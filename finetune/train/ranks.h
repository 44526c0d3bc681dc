/* finetune/train/ranks.h - a run split over several processes (ranks), each
 * with its share of every step's micro-batches (finetune/dist/dist.h).
 *
 * A step is gradient_accumulation_steps micro-batches per rank: world x accum
 * micro-batches of the epoch plan, taken in the plan's order; rank r trains on
 * the r-th group of accum of them. Every rank builds all of them (host token
 * rows, cheap), so that it knows the step's global normaliser (the completion
 * tokens of the whole step) and the global data position without asking.
 * Dropout is keyed by the micro-batch's global index, so each rank draws other
 * masks and a run on N ranks draws those of a run on one.
 * Private to finetune/train/. */
#ifndef DS_FINETUNE_RANKS_H
#define DS_FINETUNE_RANKS_H

#include "backend/backend.h"
#include "finetune/dist/dist.h"
#include "losses/loss.h"

#include <stdbool.h>

typedef struct {
    dist_comm *comm;   /* NULL: one process, nothing to agree on */
    int rank, world;
    bool stop;         /* some rank was asked to stop (SIGINT/SIGTERM) by the last step */
} trainer_ranks;

void ranks_init(trainer_ranks *k, dist_comm *comm);
/* Only rank 0 writes the output folder, logs, evaluates and merges. */
static inline bool ranks_writes(const trainer_ranks *k) { return k->rank == 0; }

/* ranks_check_device() : NCCL sums device memory, so it needs the CUDA
 * backend; the test sum reads host memory, so it needs the CPU. No fallback. */
int ranks_check_device(const trainer_ranks *k, const backend *be);

/* ranks_agree() : every rank's status (rc, with ds_errmsg() when failed) and
 * stop request, and the loss and metrics of its micro-batches, in rank order.
 * A rank's failure becomes every rank's (DS_ETRAIN naming the rank and its
 * reason, at `what`); otherwise *loss and *metrics become the step's
 * (summed in rank order, the same on every rank) and k->stop is set. With no
 * comm: rc as it is. */
int ranks_agree(trainer_ranks *k, int rc, const char *what, double *loss, loss_metrics *metrics);
/* ranks_sum() : buf (n floats; device memory under NCCL) summed over the ranks. */
int ranks_sum(trainer_ranks *k, float *buf, size_t n);

#endif
