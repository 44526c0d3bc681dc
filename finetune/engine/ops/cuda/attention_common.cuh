/* finetune/engine/ops/cuda/attention_common.cuh - what attention_fwd.cu and attention_bwd.cu
 * share: tile sizes, the parameter block, and thin wrappers over the PTX
 * instructions the kernels are built from.
 *
 * Tensor-core tiles (mma.sync.m16n8k16, bf16 in, fp32 accumulate). With
 * g = lane / 4 and t = lane % 4, a warp holds
 *   A (16x16, row-major): reg0 = A[g][2t..2t+1], reg1 = A[g+8][2t..], reg2 = A[g][2t+8..], reg3 = A[g+8][2t+8..]
 *   B (16x8,  "col")    : reg0 = B[2t..2t+1][g], reg1 = B[2t+8..2t+9][g]
 *   C (16x8,  fp32)     : c0, c1 = C[g][2t..2t+1], c2, c3 = C[g+8][2t..2t+1]
 * so two neighbouring C tiles (columns 0-7 and 8-15) of one product are, once
 * packed to bf16, exactly the A operand of the next product: attention keeps
 * P in registers between S = Q Kᵀ and O = P V.
 *
 * ldmatrix.x4 loads four 8x8 bf16 matrices from shared memory; lanes 8i..8i+7
 * give the row addresses of matrix i, and register i receives matrix i in the
 * layout above (row = lane / 4, columns 2t, 2t+1), or transposed with .trans.
 *
 * Shared-memory tiles have rows of D + 8 elements: the 16-byte pad moves each
 * row by 4 banks, so the 8 rows one ldmatrix matrix reads hit different banks.
 */
#ifndef DS_ATTENTION_COMMON_CUH
#define DS_ATTENTION_COMMON_CUH

#include "backend/backend.h"
#include "core/status.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

#define ATTN_BQ 64          /* backward: query rows per tile (4 warps x 16) */
#define ATTN_BK 64          /* key rows per tile */
#define ATTN_WARPS 4
#define ATTN_THREADS (32 * ATTN_WARPS)
#define ATTN_PAD 8          /* bf16 elements added to each shared-memory row */
#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

typedef struct {
    const bf16 *q, *k, *v;      /* q (B*T, H, D), k, v (B*T, Hkv, D) */
    const bf16 *o, *dout;       /* (B*T, H, D): backward inputs */
    bf16 *out;                  /* forward output (B*T, H, D) */
    bf16 *dk, *dv;              /* backward outputs (B*T, Hkv, D) */
    float *lse;                 /* (B*T, H): written by the forward, read by the backward */
    const float *delta;         /* (B*T, H): rowsum(dout * out) */
    float *dq_acc;              /* (B*T, H, D) fp32 accumulator of dq */
    const int32_t *seg;         /* (B*T) or NULL */
    const int *seg_ranges;      /* (B, ceil(T / 64), 2): min and max segment id of each 64-row tile, or NULL */
    int B, T, H, Hkv, group;    /* group = H / Hkv */
    int window;                 /* a query sees at most this many keys, itself included; 0 = all earlier */
    float scale_log2;           /* log2(e) * scale: scores in base-2 exponent units */
    float scale;                /* the softmax scale (1 / sqrt(D) unless the model says otherwise) */
} attn_params;

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte global -> shared copy that bypasses L1; when !valid it writes zeros
 * (src-size 0) and reads nothing. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Wait until at most N of this thread's committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const bf16 *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p))
                 : "memory");
}

/* c (16x8 fp32) += a (16x16 bf16) * b (16x8 bf16). */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Tiles whose segment-id ranges do not overlap share no visible (query, key)
 * pair: with packed sequences most causal tiles are skipped this way. The test
 * is conservative, so it holds for any segment ids. */
__device__ __forceinline__ bool ranges_overlap(const int *r, int tile, int lo, int hi)
{
    return r[2 * tile + 1] >= lo && r[2 * tile] <= hi;
}

/* Two floats as a bf16 pair: lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* The device's opt-in shared memory per block in bytes (227 KB on an H100, 99
 * KB on an RTX 4090), asked once: a process drives one GPU. */
static inline int attn_smem_limit(void)
{
    static int limit = -1;
    if (limit < 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            limit = 48 * 1024;
    }
    return limit;
}

/* attn_smem_opt_in() : let `kernel` use `bytes` of dynamic shared memory
 * (past the default 48 KB), asked once per kernel: *done remembers it.
 * @return false, with the failure recorded on be, where the device refuses. */
template <typename Kernel>
static inline bool attn_smem_opt_in(backend *be, Kernel kernel, size_t bytes, const char *op, bool *done)
{
    if (*done) return true;
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e != cudaSuccess) {
        be_fail(be, DS_ETRAIN, "device error: %s: %zu bytes of shared memory: %s", op, bytes, cudaGetErrorString(e));
        return false;
    }
    *done = true;
    return true;
}

/* attention_fwd_sm90() : the forward of head size 128 on Hopper's wgmma kernel
 * (attention_fwd_sm90.cu), when this build's sm_90a code runs on the device
 * and the backend does not ask for the mma.sync kernels (be->attn_fwd_rows).
 * @return false (and launches nothing) otherwise: the caller then runs the
 * mma.sync kernel. Launch errors are recorded on the backend. */
bool attention_fwd_sm90(struct backend *be, const attn_params &p);
/* attention_bwd_sm90() : the same for the backward's main kernel (attention_bwd_sm90.cu). */
bool attention_bwd_sm90(struct backend *be, const attn_params &p);
/* attention_sm90() : whether these two run: the device runs this build's
 * sm_90a code and be->attn_fwd_rows does not ask for the mma.sync kernels. */
bool attention_sm90(struct backend *be);

/* Start copying rows [r0, r0 + ROWS) of a (T, D) head slice (row stride `stride`
 * elements) into a shared tile of rows D + ATTN_PAD; rows at or past T read as
 * zeros. Every thread of the block takes part. */
template <int D, int ROWS = 64>
__device__ __forceinline__ void load_tile_async(bf16 *tile, const bf16 *src, size_t stride, int r0, int T)
{
    constexpr int CHUNKS = D / 8;   /* 16-byte pieces per row */
    constexpr int LD = D + ATTN_PAD;
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += ATTN_THREADS) {
        int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        bool valid = r0 + r < T;
        const bf16 *g = valid ? src + (size_t)(r0 + r) * stride + col : src;
        cp_async16(tile + r * LD + col, g, valid);
    }
}

/* Start copying rows [r0, r0 + ROWS) of a (T, 128) head slice (row stride
 * `stride` elements) into a 128-byte-swizzled [2][ROWS][64] tile (wgmma.cuh); rows at or past T
 * read as zeros. Consecutive threads take consecutive 16-byte chunks of a row. */
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_sw128(unsigned char *tile, const bf16 *src, size_t stride, int r0, int T)
{
    for (int c = threadIdx.x; c < ROWS * 16; c += THREADS) {
        const int r = c / 16, chunk = c % 16, half = chunk / 8, j = chunk % 8;
        const bool valid = r0 + r < T;
        const bf16 *g = valid ? src + (size_t)(r0 + r) * stride + chunk * 8 : src;
        cp_async16(tile + half * ROWS * 128 + r * 128 + ((j ^ (r & 7)) << 4), g, valid);
    }
}

#endif
