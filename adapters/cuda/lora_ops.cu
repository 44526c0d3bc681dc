/* adapters/cuda/lora_ops.cu - CUDA twin of op_dropout (adapters/lora_ops.c); the
 * LoRA products themselves run through be_gemm (bf16, fp32 accumulation).
 *
 * The keep decision is ds_dropout_keep(seed, step, id, i, p) from core/rng.h,
 * the same counter-based hash the CPU uses, so both backends drop the same
 * elements and nothing is stored between the forward and the backward.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "adapters/lora_ops.h"

#include "core/rng.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

/* out (n) bf16 (+)= x * keep(first + i) * keep_scale, x bf16, summed in fp32 and
 * rounded once; keep_scale = 1 / (1 - p) computed on the host as the reference
 * does; grid-stride loop. out may be x. */
__global__ void dropout_kernel(bf16 *out, const bf16 *x, size_t n, uint64_t first, float p, float keep_scale,
                               uint64_t seed, uint64_t step, uint64_t id, bool accumulate)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = ds_dropout_keep(seed, step, id, first + (uint64_t)i, p) ? __bfloat162float(x[i]) * keep_scale : 0.0f;
        out[i] = __float2bfloat16_rn(accumulate ? __bfloat162float(out[i]) + v : v);
    }
}

extern "C" void dropout_cuda(backend *be, void *out, const void *x, size_t n, uint64_t first, float p, uint64_t seed,
                             uint64_t step, uint64_t id, bool accumulate)
{
    if (!n) return;
    const float keep_scale = 1.0f / (1.0f - p);
    size_t want = (n + 255) / 256, cap = (size_t)cuda_sm_count(be) * 32;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    dropout_kernel<<<blocks, 256, 0, cuda_stream(be)>>>((bf16 *)out, (const bf16 *)x, n, first, p, keep_scale, seed,
                                                        step, id, accumulate);
    cuda_check_launch(be, "dropout");
}
