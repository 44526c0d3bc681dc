/* quant/nf4_ops.c - NF4 dequantization on a backend: the plain-C reference
 * and the dispatch to its CUDA twin (quant/nf4_cuda.cu). */
#include "nf4.h"

#include "backend/kernel.h"
#include "core/numeric.h"
#include "core/status.h"

const float NF4_CODE[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

/* Same order of fp32 operations as bitsandbytes: the nested absmax is
 * nested_map[q] * absmax2 first, then + offset; each weight is code * absmax,
 * then rounded to the 16-bit output type. */
void op_nf4_dequant(backend *be, void *out, const nf4_view *q)
{
    DS_DISPATCH_CUDA(be, nf4_dequant_cuda(be, out, &q, 1));
    float *o = out;
#pragma omp parallel for schedule(static) if (q->n > DS_OMP_MIN_WORK)
    for (int64_t b = 0; b < q->nblocks; b++) {
        float absmax = q->double_quant
                           ? q->nested_map[q->absmax_q[b]] * q->absmax2[b / NF4_NESTED_BLOCK] + q->offset
                           : q->absmax[b];
        int64_t end = (b + 1) * NF4_BLOCK < q->n ? (b + 1) * NF4_BLOCK : q->n;
        for (int64_t i = b * NF4_BLOCK; i < end; i++) {
            uint8_t byte = q->packed[i / 2];
            int nib = (i % 2 == 0) ? byte >> 4 : byte & 15;
            float w = q->code[nib] * absmax;
            if (q->dtype == NF4_OUT_BF16) w = ds_round_bf16(w);
            else if (q->dtype == NF4_OUT_F16) w = ds_f16_to_f32(ds_f32_to_f16(w));
            o[i] = w;
        }
    }
}

void op_nf4_dequant_batch(backend *be, void *out, const nf4_view *const *q, int count)
{
    if (count <= 0) return;
    for (int i = 1; i < count; i++)
        if (q[i]->n != q[0]->n) {
            be_fail(be, DS_EINTERNAL, "nf4 dequant batch: weight %d has %lld values, weight 0 %lld", i,
                    (long long)q[i]->n, (long long)q[0]->n);
            return;
        }
    DS_DISPATCH_CUDA(be, nf4_dequant_cuda(be, out, q, count));
    for (int i = 0; i < count; i++) op_nf4_dequant(be, (float *)out + (size_t)i * q[0]->n, q[i]);
}
