/* tests/gpu/gpu_ops.h - the table-driven GPU op tests (test_gpu_ops.c).
 *
 * Each op's cases live in tests/gpu/ops/NAME.c, next to nothing but its runner:
 * for every case the runner draws fresh random inputs (seed from the clock, or
 * $DSFT_TEST_SEED; printed on failure), rounds them to bf16 so that both
 * backends see identical values, runs the op on the CPU reference and on the
 * CUDA twin, and compares ||gpu - cpu|| / ||cpu|| (NaN never passes). GPU
 * outputs are poisoned with NaN bytes before the run, so an element the kernel
 * forgets to write fails. Outputs that an op accumulates into start from the
 * same random values.
 */
#ifndef DS_TESTS_GPU_OPS_H
#define DS_TESTS_GPU_OPS_H

#include "tests/testutil.h"

#include "backend/backend.h"
#include "core/status.h"
#include "core/numeric.h"
#include "finetune/engine/ops/ops.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    OP_CONVERT, OP_EMBEDDING, OP_RMSNORM_FWD, OP_RMSNORM_BWD, OP_ROPE, OP_ATTN_FWD, OP_ATTN_BWD,
    OP_SWIGLU_FWD, OP_SWIGLU_BWD, OP_ADD, OP_SUMSQ, OP_ADAMW, OP_GEMM, OP_NF4, OP_LORA_FWD, OP_LORA_BWD,
    OP_DROPOUT, OP_LOGITS_STATS, OP_LOGITS_GRAD, OP_BIAS, OP_KV_STORE, OP_ATTN_CACHED, OP_NF4_GEMV,
    OP_MLA_HEADS, OP_MLA_HEADS_BWD, OP_MLA_OUT, OP_MOE_LOGITS, OP_MOE_ROUTE_DX, OP_MOE_GATHER, OP_MOE_SCATTER,
    OP_MOE_SCATTER_BWD, OP_MOE_GATHER_BWD, OP_ROPE_KV_STORE,
} op_id;

extern const char *const OP_NAMES[];

/* One case. Shapes by op: N rows x C (embedding: V rows in the table; rope: H
 * heads of D); attention B, T, H, Hkv, D; elementwise n = N; gemm M, N, K;
 * nf4 N x C; lora N tokens, C = in, V = out, K = r; logits N rows of V.
 * flag: attention segments (kind, see rand_segments), rope inverse, dropout/accumulate, forbidden mask,
 * nf4 double quant, gemm padded leading dimensions, adamw step; p: dropout
 * probability, rope factor, adamw weight decay. */
typedef struct tctx tctx;
typedef struct op_case op_case;
struct op_case {
    void (*run)(tctx *t, const op_case *c);
    op_id op;
    int B, T, N, C, V, H, Hkv, D, M, K;
    int flag;
    float p;
    double tol;
    bool heavy;
};

#define BF 1e-2   /* bf16-stored outputs */
#define F32 1e-5  /* fp32 outputs of fp32 ops (and fp32 statistics) */


/* The state of one case: both backends, the seed, what to free. */
struct tctx {
    backend *cpu, *gpu;
    uint64_t seed, draws;
    char desc[160];
    void *host[512];         /* host buffers to free */
    void *dev[512];          /* device buffers to free */
    int nhost, ndev;
    double worst;            /* largest relative error seen */
};


/* Helpers (gpu_ops_util.c). Every buffer is freed at the end of the case. */
void describe(const op_case *c, char *buf, size_t n);
bool selected(const op_case *c);
void *hmem(tctx *t, size_t bytes);
float *rnd(tctx *t, size_t n, float scale, bool exact32);
void *dmem(tctx *t, size_t bytes);
void *dev_raw(tctx *t, const void *h, size_t bytes);
void *dev_act(tctx *t, const float *h, size_t n);
float *dev_f32(tctx *t, const float *h, size_t n);
void *dev_poison(tctx *t, size_t bytes);
float *get_act(tctx *t, const void *d, size_t n);
float *get_f32(tctx *t, const void *d, size_t n);
void gpu_ok(tctx *t);
void check(tctx *t, const char *what, const float *gpu, const float *ref, size_t n, double tol);
int32_t *rand_ints(tctx *t, size_t n, int lo, int hi);
int32_t *rand_segments(tctx *t, int B, int T, int kind);

/* Each tests/gpu/ops/NAME.c: its cases. */
#define GPU_OP_FAMILIES(X) X(CONVERT) X(EMBEDDING) X(RMSNORM) X(ROPE) X(ATTENTION) X(SWIGLU) X(ADD) X(OPTIM) \
    X(GEMM) X(NF4_DEQUANT) X(LORA) X(DROPOUT) X(LOGITS) X(BIAS) X(KV_CACHE) X(NF4_GEMV) X(MLA) X(MOE)
#define GPU_DECLARE_CASES(F) extern const op_case GPU_CASES_##F[]; extern const int GPU_NCASES_##F;
GPU_OP_FAMILIES(GPU_DECLARE_CASES)

#endif
