/* finetune/engine/ops/cuda/swiglu.cu - CUDA twins of op_swiglu_fwd / op_swiglu_bwd
 * (swiglu.c). Memory-bound: 8 bf16 values per thread (vec8.cuh), fp32 math as in
 * the reference. */
#include "backend/backend.h"
#include "backend/kernel.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_cuda.h"
#include "rows.cuh"
#include "vec8.cuh"

/* ------------------------------------------------------------------- SwiGLU */

/* out (n) = silu(gate) * up. */
__global__ void swiglu_fwd_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, bool vec)
{
    pdl_release();   /* a decode step's down projection may start fetching its weights */
    pdl_wait();   /* launched as a programmatic dependent (launch_pdl): the kernel before has finished */
    GRID_STRIDE_8(i, n)
    {
        float g[8], u[8], o[8];
        load8(g, gate, i, n, vec);
        load8(u, up, i, n, vec);
#pragma unroll
        for (int k = 0; k < 8; k++) o[k] = silu_mul(g[k], u[k]);
        store8(out, o, i, n, vec);
    }
}

/* dgate = dout * up * s (1 + g (1 - s)), dup = dout * silu(g), s = sigmoid(g); all (n). */
__global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up, size_t n,
                                  bool vec)
{
    GRID_STRIDE_8(i, n)
    {
        float d[8], g[8], u[8], dg[8], du[8];
        load8(d, dout, i, n, vec);
        load8(g, gate, i, n, vec);
        load8(u, up, i, n, vec);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float s = sigmoid_f(g[k]);
            dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
            du[k] = d[k] * g[k] * s;
        }
        store8(dgate, dg, i, n, vec);
        store8(dup, du, i, n, vec);
    }
}

extern "C" void swiglu_fwd_cuda(backend *be, void *out, const void *gate, const void *up, size_t n)
{
    if (!n) return;
    bool vec = aligned16(out) && aligned16(gate) && aligned16(up);
    launch_pdl(be, swiglu_fwd_kernel, dim3(blocks_for(be, n)), dim3(256), 0, (bf16 *)out, (const bf16 *)gate,
               (const bf16 *)up, n, vec);
    cuda_check_launch(be, "swiglu_fwd");
}

extern "C" void swiglu_bwd_cuda(backend *be, void *dgate, void *dup, const void *dout, const void *gate, const void *up,
                                size_t n)
{
    if (!n) return;
    bool vec = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
    swiglu_bwd_kernel<<<blocks_for(be, n), 256, 0, cuda_stream(be)>>>((bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout,
                                                                      (const bf16 *)gate, (const bf16 *)up, n, vec);
    cuda_check_launch(be, "swiglu_bwd");
}

/* ---------------------------------------------------------------------- add */
