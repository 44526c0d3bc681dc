/* finetune/engine/engine_mla.c - DeepSeek's multi-head latent attention,
 * forward and backward, as transformers' DeepseekV2Attention computes it:
 *   q   = q_proj(h)  or  q_b_proj(RMSNorm(q_a_proj(h)))       each head [nope | rope]
 *   kva = kv_a_proj_with_mqa(h) = [latent | k_pe]
 *   kvb = kv_b_proj(RMSNorm(latent))                         each head [k_nope | v]
 *   heads: Q = [q_nope | rope(q_pe)], K = [k_nope | rope(k_pe)], V = v (op_mla_heads)
 *   x_mid = x + o_proj(softmax(scale Q·Kᵀ) V)
 * The low-rank norms use transformers' default epsilon (1e-6), not
 * rms_norm_eps: DeepseekV2RMSNorm(q_lora_rank) and (kv_lora_rank). */
#include "engine_deepseek.h"

#include "ops/ops_decode.h"

#define LATENT_NORM_EPS 1e-6f

static mla_dims dims_of(const engine *e)
{
    const deepseek_config *d = &e->cfg.ds;
    mla_dims m = {.H = e->cfg.num_heads, .nope = d->qk_nope_dim, .rope = d->qk_rope_dim, .v = d->v_head_dim,
                  .kvr = d->kv_lora_rank, .D = e->attn_D, .interleave = d->rope_interleave};
    return m;
}

void mla_forward(engine *e, int l, layer_acts *a, const mla_cache *cache)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const deepseek_config *d = &c->ds;
    const layer_weights *w = &e->layers[l];
    deepseek_acts *s = a->ds;
    const int N = e->N, QR = d->q_lora_rank, KVR = d->kv_lora_rank;
    mla_dims dims = dims_of(e);
    attn_shape shape = w->attn;
    shape.B = e->B, shape.T = e->T;

    if (QR) {   /* the low-rank query */
        ds_linear_fwd(e, l, DSL_QA, s->qa, a->h1, N, 0.0f, s->lora_u[DSL_QA]);
        op_rmsnorm_fwd(be, s->qa_n, s->rstd_qa, s->qa, w->q_a_norm, N, QR, LATENT_NORM_EPS);
        ds_linear_fwd(e, l, DSL_QB, s->q, s->qa_n, N, 0.0f, s->lora_u[DSL_QB]);
    } else {
        ds_linear_fwd(e, l, DSL_Q, s->q, a->h1, N, 0.0f, s->lora_u[DSL_Q]);
    }
    ds_linear_fwd(e, l, DSL_KVA, s->kva, a->h1, N, 0.0f, s->lora_u[DSL_KVA]);
    op_columns(be, s->ckv_raw, s->kva, N, KVR + d->qk_rope_dim, 0, KVR, false);
    op_rmsnorm_fwd(be, s->ckv, s->rstd_kv, s->ckv_raw, w->kv_a_norm, N, KVR, LATENT_NORM_EPS);
    ds_linear_fwd(e, l, DSL_KVB, s->kvb, s->ckv, N, 0.0f, s->lora_u[DSL_KVB]);
    op_mla_heads(be, s->Q, s->K, s->V, s->q, s->kva, s->kvb, cache ? cache->pos : e->pos, N, &dims, &e->rope);
    if (cache) {   /* generation: the new keys and values into the cache, then attention against it */
        kv_shape ks = {.H = dims.H, .Hkv = dims.H, .D = dims.D, .scale = shape.scale, .ctx = cache->ctx};
        op_kv_store(be, cache->kc, cache->vc, s->K, s->V, cache->row, cache->pos, N, &ks);
        op_attention_cached(be, s->O, s->Q, cache->kc, cache->vc, cache->row, cache->pos, N, &ks);
    } else {
        op_attention_fwd(be, s->O, s->lse, s->Q, s->K, s->V, e->seg, &shape);
    }
    op_mla_out(be, s->o_in, s->O, N, &dims);
    ds_linear_fwd(e, l, DSL_O, a->x_mid, s->o_in, N, 1.0f, s->lora_u[DSL_O]);   /* x_mid = x + o_proj */
}

void mla_backward(engine *e, int l, layer_acts *a)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const deepseek_config *d = &c->ds;
    const layer_weights *w = &e->layers[l];
    deepseek_acts *s = a->ds;
    deepseek_grads *g = e->dsg;
    const int N = e->N, QR = d->q_lora_rank, KVR = d->kv_lora_rank, A = be->act_size;
    mla_dims dims = dims_of(e);
    attn_shape shape = w->attn;
    shape.B = e->B, shape.T = e->T;

    ds_linear_bwd(e, l, DSL_O, g->do_in, e->dres, s->o_in, N, 0.0f, s->lora_u[DSL_O]);
    op_mla_out_bwd(be, g->dO, g->do_in, N, &dims);
    op_attention_bwd(be, g->dQ, g->dK, g->dV, g->dO, s->O, s->lse, s->Q, s->K, s->V, e->seg, &shape);
    op_mla_heads_bwd(be, g->dq, g->dkva, g->dkvb, g->dQ, g->dK, g->dV, e->pos, N, &dims, &e->rope);
    /* the latent: kv_b_proj, then kv_a_layernorm, into dkva's latent columns */
    ds_linear_bwd(e, l, DSL_KVB, g->dckv, g->dkvb, s->ckv, N, 0.0f, s->lora_u[DSL_KVB]);
    be_zero(be, g->dckv_raw, (size_t)N * KVR * A);
    op_rmsnorm_bwd(be, g->dckv_raw, g->dckv, s->ckv_raw, w->kv_a_norm, s->rstd_kv, N, KVR);
    op_columns(be, g->dckv_raw, g->dkva, N, KVR + d->qk_rope_dim, 0, KVR, true);
    ds_linear_bwd(e, l, DSL_KVA, e->dh, g->dkva, a->h1, N, 0.0f, s->lora_u[DSL_KVA]);
    if (QR) {
        ds_linear_bwd(e, l, DSL_QB, g->dqa_n, g->dq, s->qa_n, N, 0.0f, s->lora_u[DSL_QB]);
        be_zero(be, g->dqa, (size_t)N * QR * A);
        op_rmsnorm_bwd(be, g->dqa, g->dqa_n, s->qa, w->q_a_norm, s->rstd_qa, N, QR);
        ds_linear_bwd(e, l, DSL_QA, e->dh, g->dqa, a->h1, N, 1.0f, s->lora_u[DSL_QA]);
    } else {
        ds_linear_bwd(e, l, DSL_Q, e->dh, g->dq, a->h1, N, 1.0f, s->lora_u[DSL_Q]);
    }
}
