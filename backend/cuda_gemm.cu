/* backend/cuda_gemm.cu - matrix products of the CUDA backend through cuBLASLt.
 *
 * A row-major product C = op(A) op(B) is the column-major product
 * Cᵀ = op(B)ᵀ op(A)ᵀ, so B is passed as cuBLASLt's first operand and A as its
 * second, with no data movement. The descriptors and the algorithm chosen by
 * the heuristic are cached per shape (a hash table; row counts that change
 * every step share the plan of their size class), so a training step builds
 * nothing. Shapes that cuBLASLt refuses (K = 0, odd layouts with no algorithm)
 * fall back to a plain tiled kernel.
 */
#include "cuda_state.h"

#include <limits.h>
#include <string.h>

static void destroy_plan(gemm_plan *p)
{
    if (!p->used) return;
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->lay_a) cublasLtMatrixLayoutDestroy(p->lay_a);
    if (p->lay_b) cublasLtMatrixLayoutDestroy(p->lay_b);
    if (p->lay_c) cublasLtMatrixLayoutDestroy(p->lay_c);
    memset(p, 0, sizeof *p);
}

void cuda_gemm_plans_free(backend *be)
{
    for (int i = 0; i < GEMM_PLANS; i++) destroy_plan(&st(be)->plans[i]);
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
    if (!be->err && p->fallback && (p->key.M != g->M || p->key.K != g->K))
        p = get_plan(be, g, true);   /* no algorithm for the size class: perhaps one for this M and K */
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
