/* finetune/engine/ops/cuda/optim.cu - CUDA twins of op_sumsq and op_adamw
 * (optim.c holds the references). Both work on fp32 buffers.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"

#include <cuda_runtime.h>
#include <math.h>

/* From backend/backend_cuda.cu. */

/* *out += sum x[i]^2 over x (n). Each thread accumulates a grid-stride slice in
 * fp32 (four values per load when x is 16-byte aligned), the block reduces
 * through warp shuffles and shared memory, and one atomicAdd per block adds
 * into *out. 256 threads per block, at most a few blocks per SM. */
__global__ void sumsq_kernel(float *out, const float *x, size_t n, bool vec)
{
    __shared__ float warp_part[8];
    size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    float s = 0;
    size_t nv = vec ? n / 4 : 0;
    for (size_t i = t; i < nv; i += stride) {
        float4 v = ((const float4 *)x)[i];
        s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    for (size_t i = nv * 4 + t; i < n; i += stride) s += x[i] * x[i];
#pragma unroll
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? warp_part[threadIdx.x] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) atomicAdd(out, s);
    }
}

extern "C" void sumsq_cuda(backend *be, float *out, const float *x, size_t n)
{
    if (!n) return;
    size_t want = (n + 4 * 256 - 1) / (4 * 256), cap = (size_t)cuda_sm_count(be) * 4;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    sumsq_kernel<<<blocks, 256, 0, cuda_stream(be)>>>(out, x, n, (uintptr_t)x % 16 == 0);
    cuda_check_launch(be, "sumsq");
}

/* AdamW on p, grad, m, v (n) fp32, exactly the reference's per-element
 * arithmetic; the bias corrections are computed once on the host. */
__global__ void adamw_kernel(float *p, const float *grad, float *m, float *v, size_t n, adamw_args a, float step_size,
                             float bc2_sqrt)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * a.grad_scale;
        float pi = p[i];
        pi -= a.lr * a.weight_decay * pi;
        float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        pi -= step_size * mi / (sqrtf(vi) / bc2_sqrt + a.eps);
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" void adamw_cuda(backend *be, float *p, const float *grad, float *m, float *v, size_t n, const adamw_args *a)
{
    if (!n) return;
    const float bc1 = 1.0f - powf(a->beta1, (float)a->step);
    const float bc2 = 1.0f - powf(a->beta2, (float)a->step);
    const float step_size = a->lr / bc1, bc2_sqrt = sqrtf(bc2);
    size_t want = (n + 255) / 256, cap = (size_t)cuda_sm_count(be) * 16;
    unsigned blocks = (unsigned)(want < cap ? want : cap);
    adamw_kernel<<<blocks, 256, 0, cuda_stream(be)>>>(p, grad, m, v, n, *a, step_size, bc2_sqrt);
    cuda_check_launch(be, "adamw");
}
