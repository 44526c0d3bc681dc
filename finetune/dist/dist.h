/* finetune/dist/dist.h - several training processes as one: data parallelism.
 *
 * Each process (a rank) trains on its share of every step's micro-batches;
 * per step the ranks agree on a small summary (dist_gather: each rank's
 * status, loss and stop request) and then sum the LoRA gradients
 * (dist_sum_floats), so that every rank applies the same update.
 *
 * Where the ranks come from: torchrun's variables (RANK, WORLD_SIZE,
 * LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which `ds-ft train --gpus N` sets
 * for the N workers it starts (dist_launch). Rank 0 listens at
 * MASTER_ADDR:MASTER_PORT; the others connect there. That connection carries
 * the NCCL unique id and the per-step summaries (small, and a closed
 * connection tells at once that a rank stopped); the gradients go through
 * NCCL.
 *
 * DIST_TEST_SUM sums the gradients through that same connection instead (rank
 * 0 adds them in rank order and sends the sum back): a test mode for the CPU,
 * where NCCL cannot run, so that a run split over ranks can be checked
 * against one that is not.
 */
#ifndef DS_FINETUNE_DIST_H
#define DS_FINETUNE_DIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int rank, world, local_rank;
    char master_addr[256];
    int master_port;
} dist_env;

/* dist_env_read() : the torchrun variables. *present is false (and DS_OK)
 * when WORLD_SIZE is not set; a set but bad or missing variable is DS_EUSAGE
 * naming it. Where torchrun's agent holds MASTER_PORT for its own store
 * (TORCHELASTIC_USE_AGENT_STORE=True), ds-ft meets at MASTER_PORT + 1;
 * DSFT_MASTER_PORT, when set, is the port instead. */
int dist_env_read(dist_env *e, bool *present);

typedef enum {
    DIST_NCCL,       /* gradients in device memory, summed by NCCL */
    DIST_TEST_SUM,   /* gradients in host memory, summed by rank 0 (tests on the CPU) */
} dist_kind;

typedef struct dist_comm dist_comm;

/* dist_open() : meet the other ranks at MASTER_ADDR:MASTER_PORT (waiting up
 * to DSFT_DIST_TIMEOUT seconds, default 600, for them) and set up the sum. For
 * DIST_NCCL the CUDA device must be chosen first (dist_select_gpu). */
int dist_open(const dist_env *e, dist_kind kind, dist_comm **out);
void dist_close(dist_comm *c);
int dist_rank(const dist_comm *c);
int dist_world(const dist_comm *c);
dist_kind dist_comm_kind(const dist_comm *c);
const char *dist_kind_name(const dist_comm *c);

/* dist_gather() : every rank's `bytes` bytes, in rank order, into all
 * (world x bytes) on every rank. A rank that stopped is DS_ETRAIN naming it. */
int dist_gather(dist_comm *c, const void *mine, size_t bytes, void *all);
/* dist_broadcast() : rank 0's `bytes` bytes at buf into buf on every rank
 * (host memory). */
int dist_broadcast(dist_comm *c, void *buf, size_t bytes);
/* dist_sum_floats() : buf (n floats: device memory for DIST_NCCL, host memory
 * for DIST_TEST_SUM) becomes the sum over the ranks, the same on every rank. */
int dist_sum_floats(dist_comm *c, float *buf, size_t n);

/* dist_select_gpu() : make the LOCAL_RANK-th visible GPU this process's
 * device 0 (CUDA_VISIBLE_DEVICES, before CUDA starts), and keep NVLink
 * multicast off (NCCL_NVLS_ENABLE=0) unless the user set it. */
int dist_select_gpu(const dist_env *e);

/* dist_launch() : start `nproc` workers on this machine, each this program
 * (/proc/self/exe) with argv and RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
 * (127.0.0.1) and MASTER_PORT (a free port) set; forward SIGINT and SIGTERM
 * to them; when one fails, stop the others (SIGTERM, then SIGKILL after 30
 * s). Worker r's output passes through; ranks other than 0 print only their
 * errors. @return DS_OK, or the status of the first rank that failed. */
int dist_launch(int nproc, char **argv);

#endif
