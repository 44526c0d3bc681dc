/* finetune/engine/ops/ops_moe.h - the operations of DeepSeek-V2/V3 layers:
 * multi-head latent attention's head assembly (mla.c) and the mixture of
 * experts' router and token grouping (moe.c).
 *
 * The op_ functions run on the backend (plain-C references here, CUDA twins
 * in cuda/mla.cu and cuda/moe.cu); the moe_ functions are the router's choice
 * and grouping, plain C on host memory on every backend (a few numbers per
 * token, and the engine's loop over the experts needs the groups on the host).
 * Layouts as in ops.h (N token rows, heads (N, H, D)).
 */
#ifndef DS_FINETUNE_OPS_MOE_H
#define DS_FINETUNE_OPS_MOE_H

#include "ops.h"

#include "data/model_config.h"

/* ---- MLA (mla.c) ---- */

typedef struct {
    int H;              /* heads */
    int nope, rope, v;  /* per head: the key/query part without rope, the rope part, the value */
    int kvr;            /* kv_lora_rank: the latent's width */
    int D;              /* the heads' stored width in Q, K, Vp, O: >= nope + rope and >= v; the columns past
                         * them are zero (the scores and outputs do not change), so that D can be one of
                         * the widths the CUDA attention kernels take */
    bool interleave;    /* the rope part rotates (even, odd) pairs (DeepSeek's complex form) */
} mla_dims;

/* The attention's heads from the projections, each head D wide (QK = nope + rope used):
 *   q (N, H*QK)          q_proj / q_b_proj, each head [nope | rope]
 *   kva (N, kvr + rope)  kv_a_proj_with_mqa: [latent | k_pe], k_pe shared by every head
 *   kvb (N, H*(nope+v))  kv_b_proj of the normalised latent, each head [k_nope | v]
 * Q = [q_nope | rot(q_pe) | 0], K = [k_nope | rot(k_pe) | 0], Vp = [v | 0] (N, H, D),
 * rot = the rotary embedding of rt at pos, on pairs (2i, 2i+1) when
 * interleaved, written as (i, i + rope/2): the same permutation of q and k,
 * so q·k is that of transformers' layout. */
void op_mla_heads(backend *be, void *Q, void *K, void *Vp, const void *q, const void *kva, const void *kvb,
                  const int32_t *pos, int N, const mla_dims *d, const rope_table *rt);
/* Its backward: dq (N, H*QK), dkvb (N, H*(nope+v)) and the rope part of
 * dkva (N, kvr + rope) overwritten (its latent part is left alone). */
void op_mla_heads_bwd(backend *be, void *dq, void *dkva, void *dkvb, const void *dQ, const void *dK, const void *dV,
                      const int32_t *pos, int N, const mla_dims *d, const rope_table *rt);
/* out (N, H*v) = the first v values of each head of O (N, H, D) (o_proj's input). */
void op_mla_out(backend *be, void *out, const void *O, int N, const mla_dims *d);
/* Its backward: dO (N, H, D) = [dout's head | 0]. */
void op_mla_out_bwd(backend *be, void *dO, const void *dout, int N, const mla_dims *d);
/* Columns [c0, c0 + w) of x (N, ld) into out (N, w); with `back`, out's rows
 * into those columns of x instead. */
void op_columns(backend *be, void *out, void *x, int N, int ld, int c0, int w, bool back);

/* ---- MoE (moe.c) ---- */

typedef struct {
    int E, K;                   /* routed experts; experts per token */
    moe_topk_method method;
    int n_group, topk_group;
    bool sigmoid, norm;         /* V3's scores; the chosen weights normalised */
    float scaling;              /* routed_scaling_factor */
} moe_router;

/* The router's logits (N, E) fp32 = x (N, C) act · Wᵀ (E, C) fp32, in full
 * fp32 as transformers' gate computes them; xf (N, C) fp32 is scratch, all on
 * the backend. */
void op_moe_logits(backend *be, float *logits, float *xf, const void *x, const float *W, int N, int C, int E);
/* The router's choice from its logits (N, E), on the host, as transformers'
 * DeepseekV2Moe / DeepseekV3MoE route: scores (N, E) softmax (V2) or sigmoid
 * (V3); the chosen experts idx (N, K), ascending, and their weights w (N, K).
 * bias (E) is V3's e_score_correction_bias (the choice only), or NULL. */
void moe_route_select(float *scores, int32_t *idx, float *w, const float *logits, const float *bias, int N,
                      const moe_router *r);
/* dlogits (N, E) overwritten, on the host, from dw (N, K) (the weights'
 * gradient) and dprob (N, E) or NULL: the gradient of the balance loss's
 * per-token probabilities (softmax, or V3's sigmoid scores over their sum). */
void moe_route_bwd(float *dlogits, const float *dw, const float *dprob, const float *scores, const int32_t *idx, int N,
                   const moe_router *r);
/* dx (N, C) act (+)= dlogits (N, E) · W (E, C) in fp32 (beta 0 or 1): the
 * router's input gradient; xf (N, C) fp32 is scratch, all on the backend. */
void op_moe_route_dx(backend *be, void *dx, float *xf, const float *dlogits, const float *W, int N, int C, int E,
                     float beta);
/* The routed rows grouped by expert, on the host: expert e's rows are
 * [start[e], start[e+1]) (start (E+1)), row r is token row_token[r] and its
 * choice row_k[r] (N*K each); tokens ascending within an expert; tok_row (N,
 * K) is the inverse: the row of each choice, -1 if dropped. capacity > 0: an
 * expert takes at most that many rows, in token order; the slots beyond are
 * dropped (their weight w set to 0, no row). Returns the number dropped. */
int moe_group(int32_t *start, int32_t *row_token, int32_t *row_k, int32_t *tok_row, const int32_t *idx, float *w,
              int N, int K, int E, int capacity);
/* xe (R, C) = x[row_token[r]] (act). */
void op_moe_gather(backend *be, void *xe, const void *x, const int32_t *row_token, int R, int C);
/* y[n] += sum over k of w[n, k] · ye[tok_row[n, k]] (y (N, C) act; choices
 * without a row skipped; k ascending, rounded once). */
void op_moe_scatter(backend *be, void *y, const void *ye, const float *w, const int32_t *tok_row, int N, int K, int C);
/* The scatter's backward: dye (R, C) = w · dy[token] and dw[token, k] = dy[token] · ye[r]
 * (dw's slots without a row are left alone). */
void op_moe_scatter_bwd(backend *be, void *dye, float *dw, const void *dy, const void *ye, const float *w,
                        const int32_t *row_token, const int32_t *row_k, int R, int K, int C);
/* dx[n] += sum over k of dxe[tok_row[n, k]] (dx (N, C) act; as the scatter). */
void op_moe_gather_bwd(backend *be, void *dx, const void *dxe, const int32_t *tok_row, int N, int K, int C);

/* DeepSeek's sequence-level balance loss of B rows of T tokens, without its
 * coefficient: mean over rows of sum_e f_e P_e, f_e = count_e / (T K / E) (the
 * row's choices), P_e = the row's mean probability of e (softmax, or V3's
 * sigmoid scores over their sum). Returns it; dprob (N, E), if not NULL, gets
 * alpha times its gradient with respect to each token's probabilities. */
float moe_seq_aux_loss(const float *scores, const int32_t *idx, int B, int T, const moe_router *r, float alpha,
                       float *dprob);

#endif
