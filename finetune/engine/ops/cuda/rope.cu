/* finetune/engine/ops/cuda/rope.cu - CUDA twin of op_rope (rope.c).
 *
 * The inverse frequencies are computed on the host with the reference's exact
 * fp32 expression and passed by value, so both backends rotate by the same
 * fp32 angle (float)pos * inv_freq[i]; only cos/sin may differ in the last ulp.
 */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "finetune/engine/ops/ops_cuda.h"

#include "core/status.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

typedef __nv_bfloat16 bf16;

/* From backend/backend_cuda.cu. */

/* x (N, nh, D) rotated in place: element i < D/2 pairs with i + D/2.
 * One thread per (token n, head h, frequency i), grid-stride over N * nh * D/2
 * (256-thread blocks): neighbouring threads touch neighbouring elements of a
 * head, and a decode step's few tokens still spread over many threads (a
 * thread looping over the heads made one token's rope a chain of dependent
 * memory accesses). Each thread computes its own cos/sin: cheap next to the
 * memory traffic. */
__global__ void rope_kernel(bf16 *x, const int32_t *pos, int N, int nh, int D, int inverse, rope_table f)
{
    pdl_release();
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    const int half = D / 2;
    const size_t total = (size_t)N * nh * half;
    for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(t % half);
        const size_t head = t / half;               /* n * nh + h */
        const int n = (int)(head / nh);
        float ang = (float)pos[n] * f.inv_freq[i];
        float s, c;
        sincosf(ang, &s, &c);
        c *= f.scale;
        s *= inverse ? -f.scale : f.scale;
        bf16 *v = x + head * D;
        float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
        v[i] = __float2bfloat16_rn(a * c - b * s);
        v[i + half] = __float2bfloat16_rn(b * c + a * s);
    }
}

extern "C" void rope_cuda(backend *be, void *x, const int32_t *pos, int N, int nh, int D, const rope_table *rt,
                          int inverse)
{
    if (N <= 0 || nh <= 0 || D <= 0) return;
    if (D % 2 || D / 2 > ROPE_MAX_HALF || rt->half != D / 2) {
        be_fail(be, DS_EINTERNAL, "rope: head_dim %d does not match the rope table (%d pairs, at most %d)", D,
                rt->half, ROPE_MAX_HALF);
        return;
    }
    rope_table f = *rt;   /* by value: the kernel reads it from its parameter space */
    size_t total = (size_t)N * nh * (D / 2);
    size_t blocks = (total + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    launch_pdl(be, rope_kernel, dim3((unsigned)blocks), dim3(256), 0, (bf16 *)x, pos, N, nh, D, inverse, f);
    cuda_check_launch(be, "rope");
}
