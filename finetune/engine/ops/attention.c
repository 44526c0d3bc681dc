/* finetune/engine/ops/attention.c - causal grouped-query attention: the
 * plain-C references (fp32) and the dispatch to their CUDA twins. */
#include "ops.h"
#include "ops_cuda.h"

#include "backend/kernel.h"
#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>

static int visible(const int32_t *seg, size_t row0, int i, int j, int window)
{
    return j <= i && (!window || i - j < window) && (!seg || seg[row0 + j] == seg[row0 + i]);
}

float attn_scale(const attn_shape *s) { return s->scale > 0 ? s->scale : 1.0f / sqrtf((float)s->D); }

/* One softmax row at a time: scores for the visible keys into a scratch
 * row of length T, so memory stays O(T) per thread. */
float attn_row_output(float *p, int n, float m, const float *v0, size_t v_stride, int D, float *o)
{
    float sum = 0;
    for (int j = 0; j < n; j++) {
        p[j] = p[j] == -INFINITY ? 0.0f : expf(p[j] - m);
        sum += p[j];
    }
    for (int d = 0; d < D; d++) o[d] = 0;
    for (int j = 0; j < n; j++) {
        if (p[j] == 0) continue;
        const float *vj = v0 + (size_t)j * v_stride;
        float w = p[j] / sum;
        for (int d = 0; d < D; d++) o[d] += w * vj[d];
    }
    return sum;
}

void op_attention_fwd(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                      const int32_t *seg, const attn_shape *sh)
{
    DS_DISPATCH_CUDA(be, attention_fwd_cuda(be, out, lse, q, k, v, seg, sh));
    const float *Q = q, *K = k, *V = v;
    float *O = out;
    const int B = sh->B, T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D, W = sh->window;
    const float scale = attn_scale(sh);
    const int group = H / Hkv;
    bool oom = false;
#pragma omp parallel if ((long)B * H * T * T * D > DS_OMP_MIN_WORK)
    {
        float *p = ds_malloc(sizeof(float) * (size_t)T, "an attention row");   /* per thread */
        if (!p) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                if (!p) continue;
                int kh = h / group;
                size_t row0 = (size_t)b * T;
                for (int i = 0; i < T; i++) {
                    const float *qi = Q + ((row0 + i) * H + h) * D;
                    float m = -INFINITY;
                    for (int j = 0; j <= i; j++) {
                        if (!visible(seg, row0, i, j, W)) { p[j] = -INFINITY; continue; }
                        const float *kj = K + ((row0 + j) * Hkv + kh) * D;
                        float s = 0;
                        for (int d = 0; d < D; d++) s += qi[d] * kj[d];
                        p[j] = s * scale;
                        if (p[j] > m) m = p[j];
                    }
                    float sum = attn_row_output(p, i + 1, m, V + (row0 * Hkv + kh) * D, (size_t)Hkv * D, D,
                                                O + ((row0 + i) * H + h) * D);
                    lse[(row0 + i) * H + h] = m + logf(sum);
                }
            }
        free(p);
    }
    if (oom) be_fail(be, DS_ENOMEM, "out of memory allocating an attention row of %d scores", T);
    be_round_act(be, out, (size_t)B * T * H * D);
}

/* With P = softmax(S), S = scale q kᵀ:
 *   dv_j += P_ij dout_i;   dP_ij = dout_i · v_j;   dS_ij = P_ij (dP_ij - dout_i · out_i);
 *   dq_i += scale dS_ij k_j;   dk_j += scale dS_ij q_i.
 * Work is split by (batch row, kv head) so that each thread owns the dk, dv
 * rows it accumulates into. */
void op_attention_bwd(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                      const float *lse, const void *q, const void *k, const void *v, const int32_t *seg,
                      const attn_shape *sh)
{
    DS_DISPATCH_CUDA(be, attention_bwd_cuda(be, dq, dk, dv, dout, out, lse, q, k, v, seg, sh));
    const float *Q = q, *K = k, *V = v, *dO = dout, *O = out;
    float *dQ = dq, *dK = dk, *dV = dv;
    const int B = sh->B, T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D, W = sh->window;
    const float scale = attn_scale(sh);
    const int group = H / Hkv;
    for (size_t i = 0; i < (size_t)B * T * H * D; i++) dQ[i] = 0;
    for (size_t i = 0; i < (size_t)B * T * Hkv * D; i++) dK[i] = dV[i] = 0;
#pragma omp parallel for collapse(2) schedule(static) if ((long)B * H * T * T * D > DS_OMP_MIN_WORK)
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < Hkv; kh++) {
            size_t row0 = (size_t)b * T;
            for (int h = kh * group; h < (kh + 1) * group; h++)
                for (int i = 0; i < T; i++) {
                    const float *qi = Q + ((row0 + i) * H + h) * D;
                    const float *doi = dO + ((row0 + i) * H + h) * D;
                    const float *oi = O + ((row0 + i) * H + h) * D;
                    float *dqi = dQ + ((row0 + i) * H + h) * D;
                    float l = lse[(row0 + i) * H + h];
                    float delta = 0;
                    for (int d = 0; d < D; d++) delta += doi[d] * oi[d];
                    for (int j = 0; j <= i; j++) {
                        if (!visible(seg, row0, i, j, W)) continue;
                        const float *kj = K + ((row0 + j) * Hkv + kh) * D;
                        const float *vj = V + ((row0 + j) * Hkv + kh) * D;
                        float s = 0, dp = 0;
                        for (int d = 0; d < D; d++) {
                            s += qi[d] * kj[d];
                            dp += doi[d] * vj[d];
                        }
                        float p = expf(s * scale - l);
                        float ds = p * (dp - delta) * scale;
                        float *dkj = dK + ((row0 + j) * Hkv + kh) * D;
                        float *dvj = dV + ((row0 + j) * Hkv + kh) * D;
                        for (int d = 0; d < D; d++) {
                            dvj[d] += p * doi[d];
                            dqi[d] += ds * kj[d];
                            dkj[d] += ds * qi[d];
                        }
                    }
                }
        }
    be_round_act(be, dq, (size_t)B * T * H * D);
    be_round_act(be, dk, (size_t)B * T * Hkv * D);
    be_round_act(be, dv, (size_t)B * T * Hkv * D);
}
