/* backend/cuda_state.h - Private to backend/: the CUDA backend's state, shared
 * by backend_cuda.cu (device, memory, streams, recordings) and cuda_gemm.cu
 * (matrix products through cuBLASLt and their cached plans). */
#ifndef DS_BACKEND_CUDA_STATE_H
#define DS_BACKEND_CUDA_STATE_H

#include "backend.h"
#include "backend_internal.h"
#include "core/status.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

#define GEMM_PLANS 1024                     /* cached cuBLASLt plans (distinct shapes) */
#define LT_WORKSPACE CUDA_LT_WORKSPACE

typedef struct {
    int M, N, K, lda, ldb, ldc;
    unsigned char ta, tb, cf32, abf32;
    unsigned char align_a, align_b, align_c;   /* pointer alignment in bytes, capped at 16 */
    unsigned char exact;                        /* M and K as given, not rounded to a size class */
} gemm_key;

typedef struct {
    bool used;
    bool fallback;                          /* no cuBLASLt algorithm: use gemm_fallback_kernel */
    gemm_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t lay_b, lay_a, lay_c;   /* cuBLASLt's A (our B), B (our A), C = D */
    cublasLtMatmulAlgo_t algo;
    int cur_M, cur_K;                       /* the M and K the layouts hold now (key's M, K rounded up) */
} gemm_plan;

typedef struct {
    void *p;
    size_t bytes;
} alloc_rec;

typedef struct {
    be_workspaces ws;   /* first member: be_workspace() in backend.c manages it */

    int device;
    char name[256];
    int sm_count;
    bool pdl;   /* launches may overlap the kernel before (cuda_pdl) */
    cudaStream_t stream;                    /* where launches go now: home, or a side stream between fork and join */
    cudaStream_t home;
    cublasLtHandle_t lt;
    void *lt_ws;
    void *cur_ws;                           /* the cuBLASLt workspace of the current stream */
    int n_side, forked;                     /* side streams made; in use since the last fork */
    cudaStream_t side[BE_MAX_STREAMS];
    cudaEvent_t fork_ev, join_ev[BE_MAX_STREAMS];
    void *side_ws[BE_MAX_STREAMS];
    cudaStream_t xfer;                      /* be_transfer's stream, made on first use */
    cudaEvent_t xfer_after;                 /* marks the work a transfer waits for */
    cudaEvent_t xfer_done[BE_TRANSFER_TICKETS];   /* by ticket mod BE_TRANSFER_TICKETS */
    alloc_rec *allocs;                      /* live allocations, for bytes_in_use */
    size_t nallocs, cap_allocs;
    gemm_plan plans[GEMM_PLANS];
} cuda_state;

static inline cuda_state *st(backend *be) { return (cuda_state *)be->impl; }

/* Record a CUDA failure; true when the call succeeded. */
static inline bool ok(backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return true;
    if (e == cudaErrorMemoryAllocation) be_fail(be, DS_ETRAIN, "out of memory: %s: %s", what, cudaGetErrorString(e));
    else be_fail(be, DS_ETRAIN, "device error: %s: %s", what, cudaGetErrorString(e));
    return false;
}

static inline bool lt_ok(backend *be, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    be_fail(be, DS_ETRAIN, "device error: %s: cuBLASLt status %d (%s)", what, (int)s, cublasGetStatusString(s));
    return false;
}

/* Release every cached product plan (cuda_gemm.cu). */
void cuda_gemm_plans_free(backend *be);

#endif
