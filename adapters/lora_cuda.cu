/* adapters/lora_cuda.cu - CUDA twin of op_dropout (adapters/lora_ops.c); the
 * LoRA products themselves run through be_gemm.
 *
 * The keep decision is ds_dropout_keep(seed, step, id, i, p) from core/rng.h,
 * the same counter-based hash the CPU uses, so both backends drop the same
 * elements and nothing is stored between the forward and the backward.
 */
#include "../backend/backend.h"
#include "../backend/backend_internal.h"
#include "lora_ops.h"

#include "../core/rng.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

/* out (n) (+)= x * keep(i) * keep_scale, keep_scale = 1 / (1 - p) computed on
 * the host as the reference does. Each thread handles 8 consecutive values
 * (16-byte accesses when both pointers are aligned); grid-stride loop. */
__global__ void dropout_kernel(bf16 *out, const bf16 *x, size_t n, float p, float keep_scale, uint64_t seed,
                               uint64_t step, uint64_t id, bool accumulate, bool vec)
{
    for (size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n; i += (size_t)gridDim.x * blockDim.x * 8) {
        float xv[8], ov[8];
        const bool full = vec && i + 8 <= n;
        if (full) {
            uint4 u = *(const uint4 *)(x + i);
            const bf16 *h = (const bf16 *)&u;
#pragma unroll
            for (int k = 0; k < 8; k++) xv[k] = __bfloat162float(h[k]);
            if (accumulate) {
                uint4 w = *(const uint4 *)(out + i);
                const bf16 *hw = (const bf16 *)&w;
#pragma unroll
                for (int k = 0; k < 8; k++) ov[k] = __bfloat162float(hw[k]);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                xv[k] = i + k < n ? __bfloat162float(x[i + k]) : 0.0f;
                ov[k] = accumulate && i + k < n ? __bfloat162float(out[i + k]) : 0.0f;
            }
        }
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float v = ds_dropout_keep(seed, step, id, (uint64_t)(i + k), p) ? xv[k] * keep_scale : 0.0f;
            ov[k] = accumulate ? ov[k] + v : v;
        }
        if (full) {
            uint4 u;
            bf16 *h = (bf16 *)&u;
#pragma unroll
            for (int k = 0; k < 8; k++) h[k] = __float2bfloat16_rn(ov[k]);
            *(uint4 *)(out + i) = u;
        } else {
            for (int k = 0; k < 8 && i + k < n; k++) out[i + k] = __float2bfloat16_rn(ov[k]);
        }
    }
}

extern "C" void dropout_cuda(backend *be, void *out, const void *x, size_t n, float p, uint64_t seed, uint64_t step,
                             uint64_t id, bool accumulate)
{
    if (!n) return;
    const float keep_scale = 1.0f / (1.0f - p);
    const bool vec = (uintptr_t)out % 16 == 0 && (uintptr_t)x % 16 == 0;
    size_t want = (n + 8 * 256 - 1) / (8 * 256), cap = (size_t)cuda_sm_count(be) * 32;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    dropout_kernel<<<blocks, 256, 0, cuda_stream(be)>>>((bf16 *)out, (const bf16 *)x, n, p, keep_scale, seed, step, id,
                                                        accumulate, vec);
    cuda_check_launch(be, "dropout");
}
