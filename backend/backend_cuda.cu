/* backend/backend_cuda.cu - the CUDA half of the backend (see backend_internal.h).
 *
 * One device, one stream per backend: every op is queued on that stream, so
 * the engine's sequence of ops runs in order and be_sync() only waits once per
 * step. Allocation goes straight to cudaMalloc (the engine allocates arenas once)
 * and is tracked so that bytes_in_use and peak_bytes are exact. Any CUDA failure
 * is recorded with be_fail(be, DS_ETRAIN, "device error: ...") and returned by
 * the next be_sync(); out of memory says "out of memory: ...".
 *
 * Matrix products go through cuBLASLt. A row-major product C = op(A) op(B) is the
 * column-major product Cᵀ = op(B)ᵀ op(A)ᵀ, so B is passed as cuBLASLt's first
 * operand and A as its second, with no data movement. The descriptors and the
 * algorithm chosen by the heuristic are cached per shape (a small hash table),
 * so a training step builds nothing. Shapes that cuBLASLt refuses (K = 0, odd
 * layouts with no algorithm) fall back to a plain tiled kernel.
 */
#include "backend.h"
#include "core/mem.h"
#include "core/status.h"
#include "backend_internal.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

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
    cudaStream_t stream;                    /* where launches go now: home, or a side stream between fork and join */
    cudaStream_t home;
    cublasLtHandle_t lt;
    void *lt_ws;
    void *cur_ws;                           /* the cuBLASLt workspace of the current stream */
    int n_side, forked;                     /* side streams made; in use since the last fork */
    cudaStream_t side[BE_MAX_STREAMS];
    cudaEvent_t fork_ev, join_ev[BE_MAX_STREAMS];
    void *side_ws[BE_MAX_STREAMS];
    alloc_rec *allocs;                      /* live allocations, for bytes_in_use */
    size_t nallocs, cap_allocs;
    gemm_plan plans[GEMM_PLANS];
} cuda_state;

static cuda_state *st(backend *be) { return (cuda_state *)be->impl; }

/* Record a CUDA failure; true when the call succeeded. */
static bool ok(backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return true;
    if (e == cudaErrorMemoryAllocation) be_fail(be, DS_ETRAIN, "out of memory: %s: %s", what, cudaGetErrorString(e));
    else be_fail(be, DS_ETRAIN, "device error: %s: %s", what, cudaGetErrorString(e));
    return false;
}

static bool lt_ok(backend *be, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    be_fail(be, DS_ETRAIN, "device error: %s: cuBLASLt status %d (%s)", what, (int)s, cublasGetStatusString(s));
    return false;
}

/* Helpers for the op files (their .cu files declare these): the backend's
 * stream, and a check of the last launch. */
extern "C" cudaStream_t cuda_stream(backend *be) { return st(be)->stream; }
extern "C" int cuda_sm_count(backend *be) { return st(be)->sm_count; }
extern "C" bool cuda_check_launch(backend *be, const char *what) { return ok(be, cudaGetLastError(), what); }

/* ------------------------------------------------------------------ device */

extern "C" int cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int cuda_devices(be_gpu *gpus, int max, int *driver_version, int *runtime_version)
{
    if (cudaDriverGetVersion(driver_version) != cudaSuccess) *driver_version = 0;
    if (cudaRuntimeGetVersion(runtime_version) != cudaSuccess) *runtime_version = 0;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
        be_gpu *g = &gpus[i];
        memset(g, 0, sizeof *g);
        cudaDeviceProp prop;
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            (void)cudaGetLastError();
            snprintf(g->name, sizeof g->name, "(device %d: properties unreadable)", i);
            continue;
        }
        snprintf(g->name, sizeof g->name, "%s", prop.name);
        g->major = prop.major;
        g->minor = prop.minor;
        g->total_bytes = prop.totalGlobalMem;
        g->sm_count = prop.multiProcessorCount;
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g->free_bytes = free_b;
        else (void)cudaGetLastError();
    }
    return n;
}

extern "C" int cuda_open(backend *be)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return ds_fail(DS_EUSAGE, "device: cuda was asked for, but no CUDA device is usable (%s); use device: cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    }
    cuda_state *s = (cuda_state *)ds_calloc(1, sizeof *s, "the CUDA backend");
    if (!s) return DS_ENOMEM;
    be->impl = s;
    s->device = 0;
    cudaDeviceProp prop;
    if (!ok(be, cudaSetDevice(s->device), "cudaSetDevice") ||
        !ok(be, cudaGetDeviceProperties(&prop, s->device), "cudaGetDeviceProperties") ||
        !ok(be, cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate") ||
        !lt_ok(be, cublasLtCreate(&s->lt), "cublasLtCreate")) {
        int rc = ds_fail(DS_ETRAIN, "opening the CUDA device: %s", be->errmsg);
        if (s->stream) cudaStreamDestroy(s->stream);
        free(s);
        be->impl = NULL;
        return rc;
    }
    snprintf(s->name, sizeof s->name, "%s", prop.name);
    s->sm_count = prop.multiProcessorCount;
    s->lt_ws = s->cur_ws = cuda_alloc(be, LT_WORKSPACE, "cuBLASLt workspace");
    s->home = s->stream;
    if (!s->lt_ws) {
        int rc = ds_fail(DS_ETRAIN, "opening the CUDA device: %s", be->errmsg);
        cublasLtDestroy(s->lt);
        cudaStreamDestroy(s->stream);
        free(s->allocs);
        free(s);
        be->impl = NULL;
        return rc;
    }
    return DS_OK;
}

static void destroy_plan(gemm_plan *p)
{
    if (!p->used) return;
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->lay_a) cublasLtMatrixLayoutDestroy(p->lay_a);
    if (p->lay_b) cublasLtMatrixLayoutDestroy(p->lay_b);
    if (p->lay_c) cublasLtMatrixLayoutDestroy(p->lay_c);
    memset(p, 0, sizeof *p);
}

extern "C" void cuda_close(backend *be)
{
    cuda_state *s = st(be);
    if (!s) return;
    cudaStreamSynchronize(s->stream);
    for (int i = 0; i < GEMM_PLANS; i++) destroy_plan(&s->plans[i]);
    for (int i = 0; i < WS_NSLOTS; i++) cuda_free(be, s->ws.ws[i]);
    cuda_free(be, s->lt_ws);
    for (int i = 0; i < s->n_side; i++) {
        cudaStreamSynchronize(s->side[i]);
        cuda_free(be, s->side_ws[i]);
        cudaEventDestroy(s->join_ev[i]);
        cudaStreamDestroy(s->side[i]);
    }
    if (s->n_side) cudaEventDestroy(s->fork_ev);
    cublasLtDestroy(s->lt);
    cudaStreamDestroy(s->home);
    free(s->allocs);
    free(s);
    be->impl = NULL;
}

extern "C" const char *cuda_device_name(backend *be) { return st(be)->name; }

extern "C" int cuda_sync(backend *be)
{
    ok(be, cudaStreamSynchronize(st(be)->stream), "synchronize");
    ok(be, cudaGetLastError(), "after synchronize");
    return be->err;
}

/* ------------------------------------------------------------------ memory */

extern "C" void *cuda_alloc(backend *be, size_t bytes, const char *what)
{
    cuda_state *s = st(be);
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);   /* 256-byte aligned */
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        if (e == cudaErrorMemoryAllocation)
            be_fail(be, DS_ETRAIN, "out of memory: %zu bytes for %s (%.2f GiB free of %.2f GiB, %.2f GiB held by ds-ft)",
                    bytes, what, fr / 1073741824.0, tot / 1073741824.0, be->bytes_in_use / 1073741824.0);
        else
            be_fail(be, DS_ETRAIN, "device error: allocating %zu bytes for %s: %s", bytes, what, cudaGetErrorString(e));
        return NULL;
    }
    if (ds_grow(&s->allocs, &s->cap_allocs, s->nallocs + 1, sizeof *s->allocs)) {   /* cannot track it: give it back */
        cudaFree(p);
        be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
        return NULL;
    }
    s->allocs[s->nallocs++] = (alloc_rec){p, bytes};
    be->bytes_in_use += bytes;
    if (be->bytes_in_use > be->peak_bytes) be->peak_bytes = be->bytes_in_use;
    return p;
}

extern "C" void cuda_free(backend *be, void *p)
{
    if (!p) return;
    cuda_state *s = st(be);
    for (size_t i = 0; i < s->nallocs; i++) {
        if (s->allocs[i].p != p) continue;
        be->bytes_in_use -= s->allocs[i].bytes;
        s->allocs[i] = s->allocs[--s->nallocs];
        break;
    }
    ok(be, cudaFree(p), "cudaFree");
}

/* Uploads wait for the copy, so the caller may reuse its host buffer at once. */
extern "C" void cuda_upload(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st(be)->stream), "upload"))
        ok(be, cudaStreamSynchronize(st(be)->stream), "upload");
}

extern "C" void cuda_download(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st(be)->stream), "download"))
        ok(be, cudaStreamSynchronize(st(be)->stream), "download");
}

extern "C" void cuda_copy(backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    ok(be, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st(be)->stream), "device copy");
}

extern "C" void cuda_zero(backend *be, void *p, size_t bytes)
{
    if (!bytes) return;
    ok(be, cudaMemsetAsync(p, 0, bytes, st(be)->stream), "memset");
}

extern "C" void cuda_mem_info(backend *be, size_t *free_bytes, size_t *total_bytes)
{
    *free_bytes = *total_bytes = 0;
    ok(be, cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

/* ------------------------------------------------------------- conversions */

/* dst[i] = bf16(src[i]) (round to nearest even), four per thread when aligned.
 * Grid-stride loop over n/4 groups; the scalar tail is done by the first threads. */
__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float4 f = ((const float4 *)src)[i];
        __nv_bfloat162 lo = __floats2bfloat162_rn(f.x, f.y), hi = __floats2bfloat162_rn(f.z, f.w);
        uint2 u = make_uint2(*(unsigned *)&lo, *(unsigned *)&hi);
        ((uint2 *)dst)[i] = u;
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) dst[i] = __float2bfloat16_rn(src[i]);
}

/* dst[i] = float(src[i]), four per thread when aligned. */
__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        uint2 u = ((const uint2 *)src)[i];
        __nv_bfloat162 lo = *(__nv_bfloat162 *)&u.x, hi = *(__nv_bfloat162 *)&u.y;
        ((float4 *)dst)[i] = make_float4(__low2float(lo), __high2float(lo), __low2float(hi), __high2float(hi));
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) dst[i] = __bfloat162float(src[i]);
}

/* y[i] = bf16(float(y[i]) + x[i]): an fp32 result added into a bf16 buffer,
 * rounded once. Four per thread when aligned. */
__global__ void add_f32_to_bf16_kernel(bf16 *y, const float *x, size_t n, bool vec)
{
    size_t stride = (size_t)gridDim.x * blockDim.x, t = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float4 f = ((const float4 *)x)[i];
        uint2 u = ((uint2 *)y)[i];
        __nv_bfloat162 lo = *(__nv_bfloat162 *)&u.x, hi = *(__nv_bfloat162 *)&u.y;
        lo = __floats2bfloat162_rn(__low2float(lo) + f.x, __high2float(lo) + f.y);
        hi = __floats2bfloat162_rn(__low2float(hi) + f.z, __high2float(hi) + f.w);
        ((uint2 *)y)[i] = make_uint2(*(unsigned *)&lo, *(unsigned *)&hi);
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + x[i]);
}

/* Enough 256-thread blocks to cover n/4 groups, capped at a few waves (grid-stride beyond). */
static unsigned conv_blocks(backend *be, size_t n)
{
    size_t want = (n / 4 + 255) / 256 + 1, cap = (size_t)st(be)->sm_count * 16;
    return (unsigned)(want < cap ? want : cap);
}

extern "C" void cuda_f32_to_act(backend *be, void *dst, const float *src, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)dst % 8 == 0) && ((uintptr_t)src % 16 == 0);
    f32_to_bf16_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>((bf16 *)dst, src, n, vec);
    cuda_check_launch(be, "f32_to_bf16");
}

extern "C" void cuda_add_f32_to_act(backend *be, void *y, const float *x, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)y % 8 == 0) && ((uintptr_t)x % 16 == 0);
    add_f32_to_bf16_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>((bf16 *)y, x, n, vec);
    cuda_check_launch(be, "add_f32_to_bf16");
}

extern "C" void cuda_act_to_f32(backend *be, float *dst, const void *src, size_t n)
{
    if (!n || be->err) return;
    bool vec = ((uintptr_t)dst % 16 == 0) && ((uintptr_t)src % 8 == 0);
    bf16_to_f32_kernel<<<conv_blocks(be, n), 256, 0, st(be)->stream>>>(dst, (const bf16 *)src, n, vec);
    cuda_check_launch(be, "bf16_to_f32");
}

/* -------------------------------------------------------------------- GEMM */

/* Fallback product for what cuBLASLt refuses: row-major C (M, N) = alpha op(A) op(B)
 * + beta C with the same conventions as be_gemm_args. One 16x16 output tile per
 * 256-thread block; op(A) and op(B) tiles of 16x16 staged in shared memory; fp32
 * accumulation. C is not read when beta == 0 (it may hold garbage). */
__global__ void gemm_fallback_kernel(be_gemm_args g)
{
    __shared__ float sa[16][17], sb[16][17];
    const bf16 *A = (const bf16 *)g.A, *B = (const bf16 *)g.B;
    const float *Af = (const float *)g.A, *Bf = (const float *)g.B;
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
    float acc = 0;
    for (int k0 = 0; k0 < g.K; k0 += 16) {
        int ar = blockIdx.y * 16 + ty, ak = k0 + tx;   /* op(A)[ar][ak] */
        float av = 0, bv = 0;
        if (ar < g.M && ak < g.K) {
            size_t ia = g.trans_a ? (size_t)ak * g.lda + ar : (size_t)ar * g.lda + ak;
            av = g.all_f32 ? Af[ia] : __bfloat162float(A[ia]);
        }
        int bk = k0 + ty, bc = blockIdx.x * 16 + tx;   /* op(B)[bk][bc] */
        if (bk < g.K && bc < g.N) {
            size_t ib = g.trans_b ? (size_t)bc * g.ldb + bk : (size_t)bk * g.ldb + bc;
            bv = g.all_f32 ? Bf[ib] : __bfloat162float(B[ib]);
        }
        sa[ty][tx] = av;
        sb[ty][tx] = bv;
        __syncthreads();
        for (int k = 0; k < 16; k++) acc += sa[ty][k] * sb[k][tx];
        __syncthreads();
    }
    if (row >= g.M || col >= g.N) return;
    size_t at = (size_t)row * g.ldc + col;
    if (g.c_f32 || g.all_f32) {
        float *C = (float *)g.C;
        C[at] = g.alpha * acc + (g.beta != 0 ? g.beta * C[at] : 0.0f);
    } else {
        bf16 *C = (bf16 *)g.C;
        C[at] = __float2bfloat16_rn(g.alpha * acc + (g.beta != 0 ? g.beta * __bfloat162float(C[at]) : 0.0f));
    }
}

static void gemm_fallback(backend *be, const be_gemm_args *g)
{
    dim3 grid((g->N + 15) / 16, (g->M + 15) / 16);
    gemm_fallback_kernel<<<grid, 256, 0, st(be)->stream>>>(*g);
    cuda_check_launch(be, "gemm_fallback");
}

static unsigned char align_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    unsigned char r = 16;
    while (r > 1 && a % r) r /= 2;
    return r;
}

static uint64_t key_hash(const gemm_key *k)
{
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ULL;   /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Build the descriptors and pick the heuristic's best algorithm for one key. */
static void build_plan(backend *be, gemm_plan *p, const gemm_key *k)
{
    cuda_state *s = st(be);
    memset(p, 0, sizeof *p);
    p->used = true;
    p->key = *k;
    p->cur_M = k->M, p->cur_K = k->K;
    if (k->K == 0) {   /* C = beta C: nothing for cuBLASLt to multiply */
        p->fallback = true;
        return;
    }
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;   /* cuBLASLt's A is our B */
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t ct = k->cf32 || k->abf32 ? CUDA_R_32F : CUDA_R_16BF;
    cudaDataType_t abt = k->abf32 ? CUDA_R_32F : CUDA_R_16BF;
    /* Column-major views: our B (K, N) row-major is (N, K) col-major; transposed it is stored (K, N). */
    bool good = lt_ok(be, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul desc") &&
                lt_ok(be, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "transa") &&
                lt_ok(be, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "transb") &&
                lt_ok(be, cublasLtMatrixLayoutCreate(&p->lay_b, abt, k->tb ? k->K : k->N, k->tb ? k->N : k->K, k->ldb), "layout B") &&
                lt_ok(be, cublasLtMatrixLayoutCreate(&p->lay_a, abt, k->ta ? k->M : k->K, k->ta ? k->K : k->M, k->lda), "layout A") &&
                lt_ok(be, cublasLtMatrixLayoutCreate(&p->lay_c, ct, k->N, k->M, k->ldc), "layout C");
    if (!good) return;

    cublasLtMatmulPreference_t pref = NULL;
    uint64_t ws = LT_WORKSPACE;
    uint32_t al_first = k->align_b, al_second = k->align_a, al_c = k->align_c;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    if (lt_ok(be, cublasLtMatmulPreferenceCreate(&pref), "preference")) {
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_first, sizeof al_first);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_second, sizeof al_second);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
        cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(s->lt, p->op, p->lay_b, p->lay_a, p->lay_c, p->lay_c, pref, 1,
                                                           &res, &found);
        if (hs != CUBLAS_STATUS_SUCCESS) found = 0;
        cublasLtMatmulPreferenceDestroy(pref);
    }
    if (found > 0 && res.state == CUBLAS_STATUS_SUCCESS) p->algo = res.algo;
    else p->fallback = true;
}

/* A size class for a product's M or K: the rows routed to one expert change
 * every step, and a plan per distinct count would fill the cache and ask
 * cuBLASLt's heuristic again and again. Up to 64 exact, then multiples of 32
 * up to 1024, then of 128. A size is rounded only where it is not the leading
 * dimension's row count (a layout's rows may not pass its ld). */
static int size_class(int x, int ld_cap)
{
    int c = x <= 64 ? x : x <= 1024 ? (x + 31) / 32 * 32 : (x + 127) / 128 * 128;
    return c > ld_cap ? x : c;
}

/* The cached plan for this product (built on first use); exact: M and K as
 * given, for a shape the size class's algorithm refuses. */
static gemm_plan *get_plan(backend *be, const be_gemm_args *g, bool exact)
{
    cuda_state *s = st(be);
    gemm_key k;
    memset(&k, 0, sizeof k);   /* padding bytes take part in the hash */
    /* M is the row count of A's layout when A is transposed, K when it is not, and K of B's when B is */
    int m_cap = g->trans_a ? g->lda : INT_MAX, k_cap = g->trans_a ? INT_MAX : g->lda;
    if (g->trans_b && g->ldb < k_cap) k_cap = g->ldb;
    k.M = exact ? g->M : size_class(g->M, m_cap);
    k.K = exact ? g->K : size_class(g->K, k_cap);
    k.N = g->N, k.lda = g->lda, k.ldb = g->ldb, k.ldc = g->ldc, k.exact = exact;
    k.ta = g->trans_a, k.tb = g->trans_b, k.cf32 = g->c_f32, k.abf32 = g->all_f32;
    k.align_a = align_of(g->A), k.align_b = align_of(g->B), k.align_c = align_of(g->C);
    uint64_t h = key_hash(&k);
    for (int probe = 0; probe < GEMM_PLANS; probe++) {
        gemm_plan *p = &s->plans[(h + probe) % GEMM_PLANS];
        if (!p->used) {
            build_plan(be, p, &k);
            return p;
        }
        if (!memcmp(&p->key, &k, sizeof k)) return p;
    }
    gemm_plan *p = &s->plans[h % GEMM_PLANS];   /* table full: replace the home slot */
    destroy_plan(p);
    build_plan(be, p, &k);
    return p;
}

/* Point a size class's layouts at this product's M and K (host-side attributes only). */
static bool set_dims(backend *be, gemm_plan *p, int M, int K)
{
    if (p->cur_M == M && p->cur_K == K) return true;
    const gemm_key *k = &p->key;
    uint64_t a_rows = k->ta ? M : K, a_cols = k->ta ? K : M, b_rows = k->tb ? K : k->N, b_cols = k->tb ? k->N : K;
    uint64_t c_cols = M;
    cublasLtMatrixLayoutAttribute_t R = CUBLASLT_MATRIX_LAYOUT_ROWS, C = CUBLASLT_MATRIX_LAYOUT_COLS;
    bool good = lt_ok(be, cublasLtMatrixLayoutSetAttribute(p->lay_a, R, &a_rows, sizeof a_rows), "layout A rows") &&
                lt_ok(be, cublasLtMatrixLayoutSetAttribute(p->lay_a, C, &a_cols, sizeof a_cols), "layout A cols") &&
                lt_ok(be, cublasLtMatrixLayoutSetAttribute(p->lay_b, R, &b_rows, sizeof b_rows), "layout B rows") &&
                lt_ok(be, cublasLtMatrixLayoutSetAttribute(p->lay_b, C, &b_cols, sizeof b_cols), "layout B cols") &&
                lt_ok(be, cublasLtMatrixLayoutSetAttribute(p->lay_c, C, &c_cols, sizeof c_cols), "layout C cols");
    if (good) p->cur_M = M, p->cur_K = K;
    return good;
}

extern "C" void cuda_gemm(backend *be, const be_gemm_args *g)
{
    cuda_state *s = st(be);
    gemm_plan *p = get_plan(be, g, false);
    if (be->err || (!p->fallback && !set_dims(be, p, g->M, g->K))) return;
    if (p->fallback) {
        gemm_fallback(be, g);
        return;
    }
    cublasStatus_t r = cublasLtMatmul(s->lt, p->op, &g->alpha, g->B, p->lay_b, g->A, p->lay_a, &g->beta, g->C, p->lay_c,
                                      g->C, p->lay_c, &p->algo, s->cur_ws, LT_WORKSPACE, s->stream);
    if ((r == CUBLAS_STATUS_NOT_SUPPORTED || r == CUBLAS_STATUS_INVALID_VALUE) && !p->key.exact &&
        (p->key.M != g->M || p->key.K != g->K)) {
        /* the size class's algorithm refuses this M or K: a plan of its own for it */
        p = get_plan(be, g, true);
        if (be->err) return;
        if (!p->fallback)
            r = cublasLtMatmul(s->lt, p->op, &g->alpha, g->B, p->lay_b, g->A, p->lay_a, &g->beta, g->C, p->lay_c, g->C,
                               p->lay_c, &p->algo, s->cur_ws, LT_WORKSPACE, s->stream);
    }
    if (p->fallback || r == CUBLAS_STATUS_NOT_SUPPORTED || r == CUBLAS_STATUS_INVALID_VALUE) {
        /* a layout cuBLASLt refuses: remember, and use the plain kernel for this shape */
        p->fallback = true;
        gemm_fallback(be, g);
        return;
    }
    lt_ok(be, r, "cublasLtMatmul");
}

/* ------------------------------------------------------------ side streams */

extern "C" int cuda_reserve_streams(backend *be, int n)
{
    cuda_state *s = st(be);
    if (n > BE_MAX_STREAMS) n = BE_MAX_STREAMS;
    if (!s->n_side && n > 0 && !ok(be, cudaEventCreateWithFlags(&s->fork_ev, cudaEventDisableTiming), "event"))
        return 0;
    while (s->n_side < n) {
        const int i = s->n_side;
        void *ws = cuda_alloc(be, LT_WORKSPACE, "cuBLASLt workspace of a side stream");
        if (!ws) break;
        if (!ok(be, cudaStreamCreateWithFlags(&s->side[i], cudaStreamNonBlocking), "cudaStreamCreate")) {
            cuda_free(be, ws);
            break;
        }
        if (!ok(be, cudaEventCreateWithFlags(&s->join_ev[i], cudaEventDisableTiming), "event")) {
            cudaStreamDestroy(s->side[i]);
            cuda_free(be, ws);
            break;
        }
        s->side_ws[i] = ws;
        s->n_side++;
    }
    return s->n_side;
}

extern "C" void cuda_fork(backend *be, int n)
{
    cuda_state *s = st(be);
    if (s->forked) cuda_join(be);
    if (n > s->n_side) n = s->n_side;
    if (n < 2 || !ok(be, cudaEventRecord(s->fork_ev, s->home), "fork")) return;
    for (int i = 0; i < n; i++)
        if (!ok(be, cudaStreamWaitEvent(s->side[i], s->fork_ev, 0), "fork")) return;
    s->forked = n;
}

extern "C" void cuda_use_stream(backend *be, int i)
{
    cuda_state *s = st(be);
    if (!s->forked) return;
    s->stream = s->side[i % s->forked];
    s->cur_ws = s->side_ws[i % s->forked];
}

extern "C" void cuda_join(backend *be)
{
    cuda_state *s = st(be);
    for (int i = 0; i < s->forked; i++)
        if (ok(be, cudaEventRecord(s->join_ev[i], s->side[i]), "join")) ok(be, cudaStreamWaitEvent(s->home, s->join_ev[i], 0), "join");
    s->forked = 0;
    s->stream = s->home;
    s->cur_ws = s->lt_ws;
}

/* ---------------------------------------------------------- recorded work */

/* A recording is an instantiated CUDA graph of the stream's captured work. */
struct be_recording {
    cudaGraphExec_t exec;
};

extern "C" int cuda_record_begin(backend *be)
{
    if (be->err) return be_sync(be);   /* an earlier failure: reported, nothing recorded */
    /* thread-local: other threads' CUDA calls are not drawn into the capture */
    if (!ok(be, cudaStreamBeginCapture(st(be)->stream, cudaStreamCaptureModeThreadLocal), "begin recording"))
        return be_sync(be);   /* with be->err set, be_sync only reports */
    return DS_OK;
}

extern "C" int cuda_record_end(backend *be, be_recording **out)
{
    *out = NULL;
    cudaGraph_t graph = NULL;
    /* always ended, even after a failed op, so the stream leaves capture mode */
    cudaError_t e = cudaStreamEndCapture(st(be)->stream, &graph);
    if (!be->err) ok(be, e, "end recording");
    be_recording *r = NULL;
    if (!be->err) {
        r = (be_recording *)ds_calloc(1, sizeof *r, "a recording");
        if (!r) be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
        else if (!ok(be, cudaGraphInstantiate(&r->exec, graph, 0), "making the recording")) free(r), r = NULL;
    }
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    if (be->err) return be_sync(be);
    *out = r;
    return DS_OK;
}

extern "C" void cuda_replay(backend *be, be_recording *r)
{
    ok(be, cudaGraphLaunch(r->exec, st(be)->stream), "replay");
}

extern "C" void cuda_recording_free(be_recording *r)
{
    cudaGraphExecDestroy(r->exec);
    free(r);
}
