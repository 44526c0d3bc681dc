/* finetune/engine/ops/moe.c - the mixture of experts' router and token
 * grouping: the plain-C reference (fp32), as transformers' DeepseekV2Moe
 * (softmax; greedy or group_limited_greedy) and DeepseekV3MoE (sigmoid +
 * e_score_correction_bias for the choice, noaux_tc groups) compute them.
 * The token gather and the weighted scatter have CUDA twins (cuda/moe.cu);
 * the logits and the router's input gradient are fp32 products on the backend. */
#include "ops_moe.h"
#include "ops_moe_cuda.h"

#include "backend/kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The indices of the k largest of v[0..n), largest first (ties: the lower
 * index first), in one pass: out[0..m) is kept sorted and a value enters only
 * past those at least as large. */
static void top_k(const float *v, int n, int k, int *out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && !(v[i] > v[out[k - 1]])) continue;
        int j = m < k ? m++ : k - 1;   /* the slot it moves up from */
        for (; j > 0 && v[i] > v[out[j - 1]]; j--) out[j] = out[j - 1];
        out[j] = i;
    }
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* One token's choice from its scores s (E) (V3: plus the bias): idx (K) ascending. */
static void choose(const float *s, const float *bias, const moe_router *r, int *idx)
{
    const int E = r->E, G = r->n_group, per = E / G;
    float choice[MOE_MAX_EXPERTS], group[MOE_MAX_EXPERTS];
    for (int e = 0; e < E; e++) choice[e] = bias ? s[e] + bias[e] : s[e];
    if (r->method != TOPK_GREEDY) {
        /* a group's score: its best expert (V2), or the sum of its best two (V3) */
        for (int g = 0; g < G; g++) {
            int best[2];
            top_k(choice + g * per, per, r->method == TOPK_NOAUX_TC ? 2 : 1, best);
            group[g] = choice[g * per + best[0]];
            if (r->method == TOPK_NOAUX_TC) group[g] += choice[g * per + best[1]];
        }
        int keep[MOE_MAX_EXPERTS];
        top_k(group, G, r->topk_group, keep);
        for (int g = 0; g < G; g++) {
            bool kept = false;
            for (int j = 0; j < r->topk_group; j++) kept |= keep[j] == g;
            if (!kept)   /* transformers masks the other groups' scores to 0.0 */
                for (int e = g * per; e < (g + 1) * per; e++) choice[e] = 0.0f;
        }
    }
    top_k(choice, E, r->K, idx);
    qsort(idx, (size_t)r->K, sizeof *idx, cmp_int);
}

void op_moe_logits(backend *be, float *logits, float *xf, const void *x, const float *W, int N, int C, int E)
{
    be_act_to_f32(be, xf, x, (size_t)N * C);   /* transformers: F.linear(x.float(), W.float()) */
    be_gemm_args g = {.M = N, .N = E, .K = C, .A = xf, .lda = C, .B = W, .ldb = C, .trans_b = true, .C = logits,
                      .ldc = E, .c_f32 = true, .alpha = 1.0f, .beta = 0.0f, .all_f32 = true};
    be_gemm(be, &g);
}

void moe_route_select(float *scores, int32_t *idx, float *w, const float *logits, const float *bias, int N,
                      const moe_router *r)
{
    const int E = r->E, K = r->K;
    /* tokens are independent: on the GPU engine this runs on the host while the device waits */
#pragma omp parallel for schedule(static) if ((long)N * E > DS_OMP_MIN_WORK / 16)
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * E;
        float *s = scores + (size_t)n * E;
        if (r->sigmoid) {
            for (int e = 0; e < E; e++) s[e] = 1.0f / (1.0f + expf(-z[e]));
        } else {
            float m = z[0], sum = 0;
            for (int e = 1; e < E; e++) m = z[e] > m ? z[e] : m;
            for (int e = 0; e < E; e++) sum += s[e] = expf(z[e] - m);
            for (int e = 0; e < E; e++) s[e] /= sum;
        }
        int chosen[MOE_MAX_EXPERTS];
        choose(s, bias, r, chosen);
        float total = 0;
        for (int k = 0; k < K; k++) total += s[chosen[k]];
        for (int k = 0; k < K; k++) {
            idx[(size_t)n * K + k] = chosen[k];
            float wk = s[chosen[k]];
            if (r->norm) wk /= total + 1e-20f;
            w[(size_t)n * K + k] = wk * r->scaling;
        }
    }
}

void moe_route_bwd(float *dlogits, const float *dw, const float *dprob, const float *scores, const int32_t *idx, int N,
                   const moe_router *r)
{
    const int E = r->E, K = r->K;
#pragma omp parallel for schedule(static) if ((long)N * E > DS_OMP_MIN_WORK / 16)
    for (int n = 0; n < N; n++) {
        const float *s = scores + (size_t)n * E, *g = dw + (size_t)n * K;
        const int32_t *id = idx + (size_t)n * K;
        float ds[MOE_MAX_EXPERTS];   /* d loss / d score */
        memset(ds, 0, sizeof(float) * (size_t)E);
        float total = 0, dot = 0;
        for (int k = 0; k < K; k++) total += s[id[k]], dot += g[k] * s[id[k]];
        for (int k = 0; k < K; k++) {
            if (r->norm)   /* w_k = c s_k / S, S = sum of the chosen + 1e-20 */
                ds[id[k]] += r->scaling * (g[k] / (total + 1e-20f) - dot / ((total + 1e-20f) * (total + 1e-20f)));
            else
                ds[id[k]] += r->scaling * g[k];
        }
        if (dprob) {
            const float *dp = dprob + (size_t)n * E;
            if (r->sigmoid) {   /* p_e = s_e / sum(s) */
                float sum = 0, pd = 0;
                for (int e = 0; e < E; e++) sum += s[e];
                for (int e = 0; e < E; e++) pd += dp[e] * s[e];
                for (int e = 0; e < E; e++) ds[e] += (dp[e] - pd / sum) / sum;
            } else {            /* p is the softmax itself */
                for (int e = 0; e < E; e++) ds[e] += dp[e];
            }
        }
        float *dz = dlogits + (size_t)n * E;
        if (r->sigmoid) {
            for (int e = 0; e < E; e++) dz[e] = ds[e] * s[e] * (1.0f - s[e]);
        } else {
            float sd = 0;
            for (int e = 0; e < E; e++) sd += s[e] * ds[e];
            for (int e = 0; e < E; e++) dz[e] = s[e] * (ds[e] - sd);
        }
    }
}

int moe_group(int32_t *start, int32_t *row_token, int32_t *row_k, int32_t *tok_row, const int32_t *idx, float *w,
              int N, int K, int E, int capacity)
{
    int32_t count[MOE_MAX_EXPERTS] = {0}, fill[MOE_MAX_EXPERTS];
    int dropped = 0;
    for (int i = 0; i < N * K; i++) {   /* token order: the first `capacity` slots of each expert stay */
        if (capacity > 0 && count[idx[i]] >= capacity) {
            w[i] = 0.0f;
            dropped++;
            continue;
        }
        count[idx[i]]++;
    }
    start[0] = 0;
    for (int e = 0; e < E; e++) start[e + 1] = start[e] + count[e];
    memcpy(fill, start, sizeof *start * (size_t)E);
    memset(count, 0, sizeof count);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            int e = idx[(size_t)n * K + k];
            tok_row[(size_t)n * K + k] = -1;
            if (capacity > 0 && count[e]++ >= capacity) continue;
            int r = fill[e]++;
            row_token[r] = n;
            row_k[r] = k;
            tok_row[(size_t)n * K + k] = r;
        }
    return dropped;
}

void op_moe_gather(backend *be, void *xe, const void *x, const int32_t *row_token, int R, int C)
{
    DS_DISPATCH_CUDA(be, moe_gather_cuda(be, xe, x, row_token, R, C));
    for (int r = 0; r < R; r++)
        memcpy((float *)xe + (size_t)r * C, (const float *)x + (size_t)row_token[r] * C, sizeof(float) * (size_t)C);
}

/* Token-major: each token sums its own choices' rows in k order, so that no
 * two writers meet and the sum's order is fixed (the CUDA twin's too). */
void op_moe_scatter(backend *be, void *y, const void *ye, const float *w, const int32_t *tok_row, int N, int K, int C)
{
    DS_DISPATCH_CUDA(be, moe_scatter_cuda(be, y, ye, w, tok_row, N, K, C));
    float *Y = y;
    for (int n = 0; n < N; n++) {
        float *dst = Y + (size_t)n * C;
        for (int k = 0; k < K; k++) {
            int r = tok_row[(size_t)n * K + k];
            if (r < 0) continue;
            const float *src = (const float *)ye + (size_t)r * C;
            float wr = w[(size_t)n * K + k];
            for (int c = 0; c < C; c++) dst[c] += wr * src[c];
        }
    }
    be_round_act(be, y, (size_t)N * C);   /* bf16 storage mode */
}

void op_moe_scatter_bwd(backend *be, void *dye, float *dw, const void *dy, const void *ye, const float *w,
                        const int32_t *row_token, const int32_t *row_k, int R, int K, int C)
{
    DS_DISPATCH_CUDA(be, moe_scatter_bwd_cuda(be, dye, dw, dy, ye, w, row_token, row_k, R, K, C));
    for (int r = 0; r < R; r++) {
        size_t wk = (size_t)row_token[r] * K + row_k[r];
        const float *g = (const float *)dy + (size_t)row_token[r] * C, *src = (const float *)ye + (size_t)r * C;
        float *out = (float *)dye + (size_t)r * C, dot = 0;
        for (int c = 0; c < C; c++) {
            out[c] = w[wk] * g[c];
            dot += g[c] * src[c];
        }
        dw[wk] = dot;
    }
    be_round_act(be, dye, (size_t)R * C);
}

void op_moe_gather_bwd(backend *be, void *dx, const void *dxe, const int32_t *tok_row, int N, int K, int C)
{
    DS_DISPATCH_CUDA(be, moe_gather_bwd_cuda(be, dx, dxe, tok_row, N, K, C));
    for (int n = 0; n < N; n++) {
        float *dst = (float *)dx + (size_t)n * C;
        for (int k = 0; k < K; k++) {
            int r = tok_row[(size_t)n * K + k];
            if (r < 0) continue;
            const float *src = (const float *)dxe + (size_t)r * C;
            for (int c = 0; c < C; c++) dst[c] += src[c];
        }
    }
    be_round_act(be, dx, (size_t)N * C);
}

float moe_seq_aux_loss(const float *scores, const int32_t *idx, int B, int T, const moe_router *r, float alpha,
                       float *dprob)
{
    const int E = r->E, K = r->K;
    double loss = 0;
    for (int b = 0; b < B; b++) {
        float f[MOE_MAX_EXPERTS] = {0}, P[MOE_MAX_EXPERTS] = {0};
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) f[idx[((size_t)b * T + t) * K + k]] += (float)E / ((float)T * K);
        for (int t = 0; t < T; t++) {
            const float *s = scores + ((size_t)b * T + t) * E;
            float sum = 0;
            for (int e = 0; e < E; e++) sum += s[e];
            for (int e = 0; e < E; e++) P[e] += (r->sigmoid ? s[e] / sum : s[e]) / (float)T;
        }
        for (int e = 0; e < E; e++) loss += (double)f[e] * P[e];
        if (dprob)
            for (int t = 0; t < T; t++)
                for (int e = 0; e < E; e++) dprob[((size_t)b * T + t) * E + e] = alpha * f[e] / ((float)T * B);
    }
    return (float)(loss / B);
}

void op_moe_route_dx(backend *be, void *dx, float *xf, const float *dlogits, const float *W, int N, int C, int E,
                     float beta)
{
    be_gemm_args g = {.M = N, .N = C, .K = E, .A = dlogits, .lda = E, .B = W, .ldb = C, .C = xf, .ldc = C,
                      .c_f32 = true, .alpha = 1.0f, .beta = 0.0f, .all_f32 = true};
    be_gemm(be, &g);
    if (beta != 0) be_add_f32_to_act(be, dx, xf, (size_t)N * C);
    else be_f32_to_act(be, dx, xf, (size_t)N * C);
}
