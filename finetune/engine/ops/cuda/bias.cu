/* finetune/engine/ops/cuda/bias.cu - CUDA twin of op_bias_add (bias.c): one
 * thread per element, the bias read from L1/L2 (it is small and every row
 * reads it). */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

typedef __nv_bfloat16 bf16;

/* y (N, n) += bias (n); grid-stride over the N * n elements. */
__global__ void bias_add_kernel(bf16 *y, const bf16 *bias, size_t total, int n)
{
    pdl_release();
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(__bfloat162float(y[i]) + __bfloat162float(bias[i % n]));
}

extern "C" void bias_add_cuda(backend *be, void *y, const void *bias, int N, int n)
{
    size_t total = (size_t)N * n;
    if (!total) return;
    size_t blocks = (total + 255) / 256, cap = (size_t)cuda_sm_count(be) * 32;
    launch_pdl(be, bias_add_kernel, dim3((unsigned)(blocks < cap ? blocks : cap)), dim3(256), 0, (bf16 *)y,
               (const bf16 *)bias, total, n);
    cuda_check_launch(be, "bias_add");
}
