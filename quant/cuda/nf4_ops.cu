/* quant/cuda/nf4_ops.cu - CUDA twin of op_nf4_dequant (quant/nf4_ops.c).
 *
 * Memory-bound: it reads n/2 packed bytes and writes n bf16 values for every
 * quantized linear layer, three times a training step. Each thread expands 4
 * packed bytes (one 4-byte load) into 8 values (one 16-byte store), so a warp
 * reads 128 and writes 512 contiguous bytes per step; eight threads share a
 * 64-value NF4 block and look up its absmax (with double quantization:
 * nested_map[absmax_q[b]] * absmax2[b / 256] + offset, the two tables staged
 * in shared memory once per block of a grid-stride loop). The fp32 operations
 * are the reference's, unfused (__fmul_rn/__fadd_rn keep nvcc from contracting
 * them into an FMA), then the value is rounded to the weight's 16-bit dtype and
 * to bf16: the result is bit-identical to bf16(CPU reference).
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "quant/nf4.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <string.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

#define CHUNK 8   /* values per thread and step */

typedef struct {
    const uint8_t *packed;      /* (ceil(n / 2)) */
    const float *absmax;        /* (nblocks) when !dq */
    const uint8_t *absmax_q;    /* (nblocks) when dq */
    const float *absmax2;       /* (nblocks2) when dq */
    const float *code;          /* (16) */
    const float *nested_map;    /* (256) when dq */
    float offset;
    int64_t n;
    int dq, f16, vec;
} nf4_args;

/* The reference's value of element i: code * absmax, rounded like the weight's dtype, as bf16. */
__device__ __forceinline__ bf16 nf4_value(float code, float absmax, int f16)
{
    float w = __fmul_rn(code, absmax);
    if (f16) w = __half2float(__float2half_rn(w));
    return __float2bfloat16_rn(w);
}

/* Up to NF4_BATCH_MAX weights of n values each, by value (kernel parameters:
 * no upload, and a recording replays them as they are). */
typedef struct {
    nf4_args w[NF4_BATCH_MAX];
} nf4_batch;

/* out (count, n) bf16 from the packed codes: blockIdx.y is the weight, whose
 * values land at out + y * n. 256 threads per block, a grid-stride loop over
 * the weight: each step a thread expands values [i0, i0 + 8). */
__global__ void __launch_bounds__(256) nf4_dequant_kernel(bf16 *out, const __grid_constant__ nf4_batch b)
{
    const nf4_args &a = b.w[blockIdx.y];
    out += (int64_t)blockIdx.y * a.n;
    __shared__ float s_code[16], s_map[256];
    if (threadIdx.x < 16) s_code[threadIdx.x] = a.code[threadIdx.x];
    if (a.dq) s_map[threadIdx.x] = a.nested_map[threadIdx.x];
    __syncthreads();

    const int64_t stride = (int64_t)gridDim.x * blockDim.x * CHUNK;
    for (int64_t i0 = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * CHUNK; i0 < a.n; i0 += stride) {
        const int64_t blk = i0 / NF4_BLOCK;   /* a chunk never straddles two blocks */
        const float absmax = a.dq ? __fadd_rn(__fmul_rn(s_map[a.absmax_q[blk]], a.absmax2[blk / NF4_NESTED_BLOCK]), a.offset)
                                  : a.absmax[blk];
        if (a.vec && i0 + CHUNK <= a.n) {
            const uint32_t packed = *(const uint32_t *)(a.packed + i0 / 2);
            uint4 res;
            bf16 *o = (bf16 *)&res;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint32_t byte = (packed >> (8 * j)) & 0xffu;
                o[2 * j] = nf4_value(s_code[byte >> 4], absmax, a.f16);       /* even element: high nibble */
                o[2 * j + 1] = nf4_value(s_code[byte & 15], absmax, a.f16);
            }
            *(uint4 *)(out + i0) = res;
        } else {
            const int64_t end = i0 + CHUNK < a.n ? i0 + CHUNK : a.n;
            for (int64_t i = i0; i < end; i++) {
                const uint8_t byte = a.packed[i / 2];
                out[i] = nf4_value(s_code[i % 2 == 0 ? byte >> 4 : byte & 15], absmax, a.f16);
            }
        }
    }
}

extern "C" void nf4_dequant_cuda(backend *be, void *out, const nf4_view *const *q, int count)
{
    const int64_t n = q[0]->n;
    if (n <= 0) return;
    for (int first = 0; first < count; first += NF4_BATCH_MAX) {
        const int m = count - first < NF4_BATCH_MAX ? count - first : NF4_BATCH_MAX;
        bf16 *o = (bf16 *)out + (size_t)first * n;
        nf4_batch b;
        memset(&b, 0, sizeof b);
        for (int i = 0; i < m; i++) {
            const nf4_view *v = q[first + i];
            nf4_args &a = b.w[i];
            a.packed = v->packed, a.absmax = v->absmax, a.absmax_q = v->absmax_q, a.absmax2 = v->absmax2;
            a.code = v->code, a.nested_map = v->nested_map, a.offset = v->offset;
            a.n = n, a.dq = v->double_quant, a.f16 = v->dtype == NF4_OUT_F16;
            a.vec = (uintptr_t)v->packed % 4 == 0 && (uintptr_t)(o + (size_t)i * n) % 16 == 0;
        }
        /* enough blocks to fill the GPU a few times over, split among the weights; each loop covers the rest */
        const int64_t chunks = (n + CHUNK - 1) / CHUNK, want = (chunks + 255) / 256;
        int64_t cap = (int64_t)cuda_sm_count(be) * 8 / m;
        if (cap < 1) cap = 1;
        nf4_dequant_kernel<<<dim3((unsigned)(want < cap ? want : cap), (unsigned)m), 256, 0, cuda_stream(be)>>>(o, b);
        cuda_check_launch(be, "nf4_dequant");
    }
}
