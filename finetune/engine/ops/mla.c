/* finetune/engine/ops/mla.c - multi-head latent attention's heads: the plain-C
 * reference (fp32). The query and key split into a part without position
 * (nope) and a rotated part (rope) whose key is one vector shared by every
 * head; the value is padded to the heads' width D so that the ordinary
 * attention op runs on them. CUDA twins: cuda/mla.cu. */
#include "ops_moe.h"
#include "ops_moe_cuda.h"

#include "backend/kernel.h"

#include <math.h>
#include <string.h>

/* Rotate one rope part: in (rope values, interleaved or halves) -> out as
 * halves (i, i + half), by the angles of position p; `inverse` is the
 * backward (the transposed rotation, out back in the input's layout). */
static void rotate(float *out, const float *in, int32_t p, int rope, bool interleave, const rope_table *rt,
                   bool inverse)
{
    const int half = rope / 2;
    for (int i = 0; i < half; i++) {
        float ang = (float)p * rt->inv_freq[i];   /* as op_rope: fp32 angle, cos/sin times the scale */
        float c = cosf(ang) * rt->scale, s = sinf(ang) * rt->scale;
        int ia = interleave ? 2 * i : i, ib = interleave ? 2 * i + 1 : i + half;
        if (!inverse) {
            float a = in[ia], b = in[ib];
            out[i] = a * c - b * s;
            out[i + half] = b * c + a * s;
        } else {
            float ya = in[i], yb = in[i + half];
            out[ia] = ya * c + yb * s;
            out[ib] = yb * c - ya * s;
        }
    }
}

void op_mla_heads(backend *be, void *Q, void *K, void *Vp, const void *q, const void *kva, const void *kvb,
                  const int32_t *pos, int N, const mla_dims *d, const rope_table *rt)
{
    DS_DISPATCH_CUDA(be, mla_heads_cuda(be, Q, K, Vp, q, kva, kvb, pos, N, d, rt));
    const int H = d->H, D = d->D, QK = d->nope + d->rope, KV = d->nope + d->v, A = d->kvr + d->rope;
    const float *qs = q, *kas = kva, *kbs = kvb;
    float *Qd = Q, *Kd = K, *Vd = Vp;
    for (int n = 0; n < N; n++) {
        float k_pe[ROPE_MAX_HALF * 2];
        rotate(k_pe, kas + (size_t)n * A + d->kvr, pos[n], d->rope, d->interleave, rt, false);
        for (int h = 0; h < H; h++) {
            size_t o = ((size_t)n * H + h) * D;
            const float *qh = qs + ((size_t)n * H + h) * QK, *kv = kbs + ((size_t)n * H + h) * KV;
            memcpy(Qd + o, qh, sizeof(float) * (size_t)d->nope);
            rotate(Qd + o + d->nope, qh + d->nope, pos[n], d->rope, d->interleave, rt, false);
            memset(Qd + o + QK, 0, sizeof(float) * (size_t)(D - QK));
            memcpy(Kd + o, kv, sizeof(float) * (size_t)d->nope);
            memcpy(Kd + o + d->nope, k_pe, sizeof(float) * (size_t)d->rope);
            memset(Kd + o + QK, 0, sizeof(float) * (size_t)(D - QK));
            memcpy(Vd + o, kv + d->nope, sizeof(float) * (size_t)d->v);
            memset(Vd + o + d->v, 0, sizeof(float) * (size_t)(D - d->v));
        }
    }
    size_t n = (size_t)N * H * D;
    be_round_act(be, Q, n);
    be_round_act(be, K, n);
}

void op_mla_heads_bwd(backend *be, void *dq, void *dkva, void *dkvb, const void *dQ, const void *dK, const void *dV,
                      const int32_t *pos, int N, const mla_dims *d, const rope_table *rt)
{
    DS_DISPATCH_CUDA(be, mla_heads_bwd_cuda(be, dq, dkva, dkvb, dQ, dK, dV, pos, N, d, rt));
    const int H = d->H, D = d->D, QK = d->nope + d->rope, KV = d->nope + d->v, A = d->kvr + d->rope;
    const float *gQ = dQ, *gK = dK, *gV = dV;
    float *gq = dq, *gka = dkva, *gkb = dkvb;
    for (int n = 0; n < N; n++) {
        float k_pe[ROPE_MAX_HALF * 2] = {0};   /* the shared key's gradient: the sum over heads */
        for (int h = 0; h < H; h++) {
            size_t o = ((size_t)n * H + h) * D;
            float *qh = gq + ((size_t)n * H + h) * QK, *kv = gkb + ((size_t)n * H + h) * KV;
            memcpy(qh, gQ + o, sizeof(float) * (size_t)d->nope);
            rotate(qh + d->nope, gQ + o + d->nope, pos[n], d->rope, d->interleave, rt, true);
            memcpy(kv, gK + o, sizeof(float) * (size_t)d->nope);
            memcpy(kv + d->nope, gV + o, sizeof(float) * (size_t)d->v);
            for (int i = 0; i < d->rope; i++) k_pe[i] += gK[o + d->nope + i];
        }
        rotate(gka + (size_t)n * A + d->kvr, k_pe, pos[n], d->rope, d->interleave, rt, true);
    }
    be_round_act(be, dq, (size_t)N * H * QK);
    be_round_act(be, dkvb, (size_t)N * H * KV);
    be_round_act(be, dkva, (size_t)N * A);
}

void op_mla_out(backend *be, void *out, const void *O, int N, const mla_dims *d)
{
    op_columns(be, out, (void *)O, N * d->H, d->D, 0, d->v, false);
}

void op_mla_out_bwd(backend *be, void *dO, const void *dout, int N, const mla_dims *d)
{
    be_zero(be, dO, (size_t)N * d->H * d->D * be->act_size);
    op_columns(be, (void *)dout, dO, N * d->H, d->D, 0, d->v, true);
}

void op_columns(backend *be, void *out, void *x, int N, int ld, int c0, int w, bool back)
{
    DS_DISPATCH_CUDA(be, columns_cuda(be, out, x, N, ld, c0, w, back));
    for (size_t n = 0; n < (size_t)N; n++) {
        float *xr = (float *)x + n * ld + c0, *o = (float *)out + n * w;
        if (back) memcpy(xr, o, sizeof(float) * (size_t)w);
        else memcpy(o, xr, sizeof(float) * (size_t)w);
    }
    (void)be;
}
