/* finetune/engine/engine_pass.c - the Llama forward and backward (llama2.c's
 * order: RMSNorm, q/k/v, RoPE, grouped-query attention, o_proj, residual,
 * RMSNorm, SwiGLU MLP, residual), LoRA on any linear layer, and the chunked
 * lm_head + loss statistics. Written once against the backend ops. */
#include "engine_deepseek.h"

#include "core/status.h"
#include "losses/logits.h"

#include <string.h>

static const lora_view *adapter_of(const engine *e, int layer, llama_linear t)
{
    if (!e->views || !e->last.lora) return NULL;
    const lora_view *v = &e->views[layer * e->nslots + t];
    return v->A ? v : NULL;
}

/* The LoRA context of rows that start at row0 of the micro-batch. */
static lora_ctx lora_context(const engine *e, int row0)
{
    lora_ctx c = {.seed = e->opts.seed, .step = e->last.micro_step, .training = e->last.training, .row0 = row0};
    return c;
}

/* A slice of the micro-batch's tokens: rows [r0, r0 + n). Whole-batch ops
 * take {0, N}; the MLP takes slices of e->mlp_rows. */
typedef struct {
    int r0, n;
} rows;

static rows all_rows(const engine *e) { return (rows){0, e->N}; }

/* The LoRA intermediate u of linear t for rows rs: (n, r) fp32 inside a->lora_u[t]. */
static float *lora_u_of(layer_acts *a, llama_linear t, const lora_view *v, rows rs)
{
    return a->lora_u[t] + (size_t)rs.r0 * v->r;
}

/* y = x·Wᵀ (+ beta·y) + LoRA(x) for linear t of layer l over rows rs (y, x at those rows). */
static void linear_fwd(engine *e, int l, llama_linear t, void *y, const void *x, rows rs, float beta, layer_acts *a)
{
    op_linear_fwd(e->be, y, x, &e->layers[l].lin[t], rs.n, beta);
    const lora_view *v = adapter_of(e, l, t);
    if (v) {
        lora_ctx ctx = lora_context(e, rs.r0);
        op_lora_fwd(e->be, y, lora_u_of(a, t, v, rs), x, v, rs.n, &ctx);
    }
}

/* Only linear t's LoRA intermediate u = x·Aᵀ over rows rs, where a
 * recomputation needs it for the backward but not the linear's output. */
static void lora_u_only(engine *e, int l, llama_linear t, const void *x, rows rs, layer_acts *a)
{
    const lora_view *v = adapter_of(e, l, t);
    if (!v) return;
    lora_ctx ctx = lora_context(e, rs.r0);
    op_lora_u(e->be, lora_u_of(a, t, v, rs), x, v, rs.n, &ctx);
}

/* dx = dy·W (+ beta·dx) + LoRA backward (which also accumulates dA, dB), over rows rs. */
static void linear_bwd(engine *e, int l, llama_linear t, void *dx, const void *dy, const void *x, rows rs, float beta,
                       layer_acts *a)
{
    op_linear_bwd(e->be, dx, dy, &e->layers[l].lin[t], rs.n, beta);
    const lora_view *v = adapter_of(e, l, t);
    if (v) {
        lora_ctx ctx = lora_context(e, rs.r0);
        op_lora_bwd(e->be, dx, dy, x, lora_u_of(a, t, v, rs), v, rs.n, &ctx);
    }
}

/* Row r0 of an (N, C) act tensor. */
static void *at_row(const engine *e, const void *p, int r0)
{
    return be_act_at(e->be, p, (size_t)r0 * e->cfg.hidden_size);
}

/* The MLP over the slice rs: g, u, m (n, I) hold the slice. With out, out's
 * rows += down(m) (the forward); without, only down's LoRA intermediate (a
 * recomputation for the backward, which needs m but not the output). */
static void mlp_forward(engine *e, int l, layer_acts *a, rows rs, void *out)
{
    const void *h2 = at_row(e, a->h2, rs.r0);
    linear_fwd(e, l, LIN_GATE, a->g, h2, rs, 0.0f, a);
    linear_fwd(e, l, LIN_UP, a->u, h2, rs, 0.0f, a);
    op_swiglu_fwd(e->be, a->m, a->g, a->u, (size_t)rs.n * e->cfg.intermediate_size);
    if (out) {
        linear_fwd(e, l, LIN_DOWN, at_row(e, out, rs.r0), a->m, rs, 1.0f, a);   /* out = x_mid + down(m) */
        return;
    }
    lora_u_only(e, l, LIN_DOWN, a->m, rs, a);
}

/* Its backward over the slice: e->dh's rows = dL/dh2 from dL/d out = e->dres's rows. */
static void mlp_backward(engine *e, int l, layer_acts *a, rows rs)
{
    void *dh = at_row(e, e->dh, rs.r0);
    const void *h2 = at_row(e, a->h2, rs.r0);
    linear_bwd(e, l, LIN_DOWN, e->dm, at_row(e, e->dres, rs.r0), a->m, rs, 0.0f, a);
    op_swiglu_bwd(e->be, e->dg, e->du, e->dm, a->g, a->u, (size_t)rs.n * e->cfg.intermediate_size);
    linear_bwd(e, l, LIN_GATE, dh, e->dg, h2, rs, 0.0f, a);
    linear_bwd(e, l, LIN_UP, dh, e->du, h2, rs, 1.0f, a);
}

/* The next MLP slice after `prev` ({0, 0} first): false past the batch's end. */
static bool next_slice(const engine *e, rows *rs)
{
    rs->r0 += rs->n;
    rs->n = e->N - rs->r0 < e->mlp_rows ? e->N - rs->r0 : e->mlp_rows;
    return rs->n > 0;
}

/* The next part of an entry: at *at, which then moves past its bytes (aligned). */
static size_t part(size_t *at, size_t bytes)
{
    size_t here = *at;
    *at = (here + bytes + 255) & ~(size_t)255;
    return here;
}

kept_layout attn_kept_layout(const engine *e, int N)
{
    const size_t A = e->be->act_size, n = (size_t)N;
    kept_layout k = {0};
    size_t at = 0;
    part(&at, n * e->QD * A);   /* att */
    k.lse = part(&at, n * e->cfg.num_heads * sizeof(float));
    k.attn_bytes = at;
    at = 0;
    part(&at, n * e->cfg.hidden_size * A);   /* x_mid */
    k.q = part(&at, n * e->QD * A);
    k.k = part(&at, n * e->KVD * A);
    k.v = part(&at, n * e->KVD * A);
    k.proj_bytes = at;
    return k;
}

/* The kept_proj entry of layer l's projections, NULL where they are not kept
 * (keep_projections > 0 only with keep_attention: stash_check_opts). */
static char *kept_projections(const engine *e, int l)
{
    const int first = e->cfg.num_layers - e->opts.keep_projections;
    return l >= first ? e->kept_proj.dev[l - first] : NULL;
}

/* With keep_attention, layer l's attention output and log-sum-exp are its
 * entry of e->kept_attn, and where its projections are kept q, k, v and x_mid
 * are its entry of e->kept_proj: point the layer's intermediates there. */
static void place_attention(engine *e, int l, layer_acts *a)
{
    if (!e->opts.keep_attention) return;
    const kept_layout k = attn_kept_layout(e, e->N);
    char *p = e->kept_attn.dev[l];
    a->att = p;
    a->lse = (float *)(p + k.lse);
    if (!e->opts.keep_projections) return;
    char *kp = kept_projections(e, l);
    void *q = kp ? kp + k.q : e->proj_home.q, *kk = kp ? kp + k.k : e->proj_home.k;
    a->x_mid = kp ? kp : e->proj_home.x_mid;
    *(e->cfg.qk_norm ? &a->q_raw : &a->q) = q;   /* as the attention read them (Qwen3: before its norms) */
    *(e->cfg.qk_norm ? &a->k_raw : &a->k) = kk;
    a->v = kp ? kp + k.v : e->proj_home.v;
}

/* q and k from their projections: Qwen3's per-head norms, then RoPE (in place). */
static void finish_qk(engine *e, int l, layer_acts *a)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int N = e->N, H = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    if (c->qk_norm) {
        op_rmsnorm_fwd(be, a->q, a->rstd_q, a->q_raw, e->layers[l].q_norm, N * H, D, c->rms_norm_eps);
        op_rmsnorm_fwd(be, a->k, a->rstd_k, a->k_raw, e->layers[l].k_norm, N * Hkv, D, c->rms_norm_eps);
    }
    op_rope(be, a->q, e->pos, N, H, D, &e->rope, 0);
    op_rope(be, a->k, e->pos, N, Hkv, D, &e->rope, 0);
}

/* The recomputation of a layer whose attention block the forward kept (its
 * attention output and projections): no projection runs again, only what
 * the backward reads and the entries lack: the norms' outputs, Qwen3's normed
 * q and k, and the LoRA intermediates of q, k, v and o. */
static void restore_attention_block(engine *e, int l, layer_acts *a)
{
    const model_config *c = &e->cfg;
    const rows all = all_rows(e);
    if (c->qk_norm) finish_qk(e, l, a);   /* else the entry's q and k are after RoPE already */
    lora_u_only(e, l, LIN_Q, a->h1, all, a);
    lora_u_only(e, l, LIN_K, a->h1, all, a);
    lora_u_only(e, l, LIN_V, a->h1, all, a);
    lora_u_only(e, l, LIN_O, a->att, all, a);
    op_rmsnorm_fwd(e->be, a->h2, a->rstd2, a->x_mid, e->layers[l].mlp_norm, e->N, c->hidden_size, c->rms_norm_eps);
}

/* Decoder layer l: resid[l] (N, C) -> resid[l + 1], intermediates into a.
 * recompute: the layer is recomputed for its backward up to the MLP's input
 * h2, without what the forward kept (keep_attention: the attention itself;
 * with the layer's projections, keep_projections, the whole attention block);
 * the backward recomputes the MLP slice by slice (mlp_forward). */
static void layer_forward(engine *e, int l, layer_acts *a, bool recompute)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int N = e->N, C = c->hidden_size;
    const layer_weights *w = &e->layers[l];
    const void *x = e->resid.dev[l];
    void *x_out = e->resid.dev[l + 1];
    const rows all = all_rows(e);
    const bool kept = recompute && e->opts.keep_attention;   /* entry l holds what this layer's forward kept */

    attn_shape shape = w->attn;
    shape.B = e->B, shape.T = e->T;

    place_attention(e, l, a);
    op_rmsnorm_fwd(be, a->h1, a->rstd1, x, w->attn_norm, N, C, c->rms_norm_eps);
    if (kept && kept_projections(e, l)) {
        restore_attention_block(e, l, a);
        return;
    }
    if (!recompute) stash_before_write(e, &e->kept_attn, l);
    linear_fwd(e, l, LIN_Q, c->qk_norm ? a->q_raw : a->q, a->h1, all, 0.0f, a);
    linear_fwd(e, l, LIN_K, c->qk_norm ? a->k_raw : a->k, a->h1, all, 0.0f, a);
    linear_fwd(e, l, LIN_V, a->v, a->h1, all, 0.0f, a);
    finish_qk(e, l, a);
    if (!kept) op_attention_fwd(be, a->att, a->lse, a->q, a->k, a->v, e->seg, &shape);   /* a kept one is not again */
    be_copy(be, a->x_mid, x, (size_t)N * C * be->act_size);
    linear_fwd(e, l, LIN_O, a->x_mid, a->att, all, 1.0f, a);       /* x_mid = x + o_proj(att) */
    if (!recompute) stash_written(e, &e->kept_attn, l, attn_kept_layout(e, N).attn_bytes);

    op_rmsnorm_fwd(be, a->h2, a->rstd2, a->x_mid, w->mlp_norm, N, C, c->rms_norm_eps);
    if (recompute) return;
    be_copy(be, x_out, a->x_mid, (size_t)N * C * be->act_size);
    for (rows rs = {0, 0}; next_slice(e, &rs);) mlp_forward(e, l, a, rs, x_out);   /* x_out = x_mid + MLP(h2) */
}

/* Backward of layer l: e->dres holds dL/d resid[l+1] on entry, dL/d resid[l] on exit. */
static void layer_backward(engine *e, int l, layer_acts *a)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int N = e->N, C = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const layer_weights *w = &e->layers[l];

    /* MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2)), h2 = rmsnorm(x_mid);
     * slice by slice, each recomputed first where checkpointing dropped it */
    for (rows rs = {0, 0}; next_slice(e, &rs);) {
        if (e->opts.checkpointing) mlp_forward(e, l, a, rs, NULL);
        mlp_backward(e, l, a, rs);
    }
    op_rmsnorm_bwd(be, e->dres, e->dh, a->x_mid, w->mlp_norm, a->rstd2, N, C);   /* dres = dL/dx_mid */

    /* Attention: x_mid = x + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = rmsnorm(x) */
    attn_shape shape = w->attn;
    shape.B = e->B, shape.T = e->T;
    const rows all = all_rows(e);
    linear_bwd(e, l, LIN_O, e->datt, e->dres, a->att, all, 0.0f, a);
    op_attention_bwd(be, e->dq, e->dk, e->dv, e->datt, a->att, a->lse, a->q, a->k, a->v, e->seg, &shape);
    op_rope(be, e->dq, e->pos, N, H, D, &e->rope, 1);
    op_rope(be, e->dk, e->pos, N, Hkv, D, &e->rope, 1);
    void *dq = e->dq, *dk = e->dk;
    if (c->qk_norm) {   /* back through the per-head norms (their backward accumulates) */
        be_zero(be, e->dq_raw, (size_t)N * H * D * be->act_size);
        be_zero(be, e->dk_raw, (size_t)N * Hkv * D * be->act_size);
        op_rmsnorm_bwd(be, e->dq_raw, e->dq, a->q_raw, w->q_norm, a->rstd_q, N * H, D);
        op_rmsnorm_bwd(be, e->dk_raw, e->dk, a->k_raw, w->k_norm, a->rstd_k, N * Hkv, D);
        dq = e->dq_raw, dk = e->dk_raw;
    }
    linear_bwd(e, l, LIN_Q, e->dh, dq, a->h1, all, 0.0f, a);
    linear_bwd(e, l, LIN_K, e->dh, dk, a->h1, all, 1.0f, a);
    linear_bwd(e, l, LIN_V, e->dh, e->dv, a->h1, all, 1.0f, a);
    op_rmsnorm_bwd(be, e->dres, e->dh, e->resid.dev[l], w->attn_norm, a->rstd1, N, C);  /* dres = dL/dx */
}

/* logits of rows [r0, r0 + n) into the WS_LOGITS chunk: (n, V) fp32. */
static float *logits_chunk(engine *e, int r0, int n, void **dlogits)
{
    backend *be = e->be;
    const int C = e->cfg.hidden_size, V = e->cfg.vocab_size;
    char *ws = be_workspace(be, WS_LOGITS, (size_t)e->chunk_rows * V * (sizeof(float) + be->act_size) + 256);
    if (!ws) return NULL;
    float *z = (float *)ws;
    if (dlogits) *dlogits = ws + (((size_t)e->chunk_rows * V * sizeof(float) + 255) & ~(size_t)255);
    be_gemm_args g = {.M = n, .N = V, .K = C, .A = be_act_at(be, e->xf, (size_t)r0 * C), .lda = C,
                      .B = e->lm_head, .ldb = C, .trans_b = true, .C = z, .ldc = V, .c_f32 = true,
                      .alpha = 1.0f, .beta = 0.0f};
    be_gemm(be, &g);
    return z;
}

static int check_batch(const engine *e, const batch *b)
{
    /* Any B x T within the token budget: evaluation packs many short rows. */
    if (b->B < 1 || b->T < 1 || b->T > e->opts.max_T || (long)b->B * b->T > e->Nmax)
        return ds_fail(DS_EINTERNAL, "batch %dx%d exceeds the engine's %d tokens of at most %d", b->B, b->T, e->Nmax,
                       e->opts.max_T);
    for (int i = 0; i < b->B * b->T; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= e->cfg.vocab_size)
            return ds_fail(DS_EDATA, "token id %d is outside the model's vocabulary (0..%d)", b->ids[i],
                           e->cfg.vocab_size - 1);
        if (b->targets[i] >= e->cfg.vocab_size)
            return ds_fail(DS_EDATA, "target id %d is outside the model's vocabulary", b->targets[i]);
        if (b->pos[i] < 0) return ds_fail(DS_EDATA, "negative position id");
    }
    return DS_OK;
}

/* With offloaded activations a backward leaves other values in the device
 * slots of the layers' inputs and in xf (the layer's h1): what the last
 * forward left there is gone until the next forward. */
static bool overwritten_by_backward(const engine *e) { return e->after_backward && e->opts.offload; }

int engine_forward(engine *e, const batch *b, const engine_fwd *f, float *logprob, float *fmass)
{
    int rc = check_batch(e, b);
    if (rc) return rc;
    if (f->for_backward && !e->opts.training) return ds_fail(DS_EINTERNAL, "engine was not set up for training");
    backend *be = e->be;
    const model_config *c = &e->cfg;
    e->B = b->B;
    e->T = b->T;
    e->N = b->B * b->T;
    e->last = *f;
    e->have_fwd = false;
    e->after_backward = false;
    const int N = e->N, C = c->hidden_size, V = c->vocab_size;
    be_upload(be, e->ids, b->ids, (size_t)N * sizeof(int32_t));
    be_upload(be, e->pos, b->pos, (size_t)N * sizeof(int32_t));
    be_upload(be, e->seg, b->seg, (size_t)N * sizeof(int32_t));
    be_upload(be, e->targets, b->targets, (size_t)N * sizeof(int32_t));

    op_embedding(be, e->resid.dev[0], e->ids, e->embed, N, C);
    stash_written(e, &e->resid, 0, (size_t)N * C * be->act_size);
    for (int l = 0; l < c->num_layers; l++) {
        stash_before_write(e, &e->resid, l + 1);
        if (c->ds.on) deepseek_layer_forward(e, l, engine_acts(e, l), NULL);   /* MLA + MoE: engine_deepseek.c */
        else layer_forward(e, l, engine_acts(e, l), false);
        stash_written(e, &e->resid, l + 1, (size_t)N * C * be->act_size);
    }
    op_rmsnorm_fwd(be, e->xf, e->rstdf, e->resid.dev[c->num_layers], e->final_norm, N, C, c->rms_norm_eps);

    const uint8_t *mask = fmass && e->has_forbidden ? e->forbidden : NULL;
    for (int r0 = 0; r0 < N; r0 += e->chunk_rows) {
        int n = N - r0 < e->chunk_rows ? N - r0 : e->chunk_rows;
        float *z = logits_chunk(e, r0, n, NULL);
        if (!z) break;
        op_logits_stats(be, e->lse + r0, e->logprob + r0, mask ? e->fmass + r0 : NULL, z, e->targets + r0, mask, n,
                        V);
    }
    be_download(be, logprob, e->logprob, (size_t)N * sizeof(float));
    if (fmass) {
        if (mask) be_download(be, fmass, e->fmass, (size_t)N * sizeof(float));
        else memset(fmass, 0, (size_t)N * sizeof(float));
    }
    rc = be_sync(be);
    e->have_fwd = rc == DS_OK;
    return rc;
}

int engine_backward(engine *e, const float *a, const float *b, const float *c)
{
    if (!e->have_fwd || !e->last.for_backward)
        return ds_fail(DS_EINTERNAL, "engine_backward without a forward kept for it");
    if (overwritten_by_backward(e))
        return ds_fail(DS_EINTERNAL, "a second backward of one forward with offloaded activations: forward again");
    backend *be = e->be;
    const model_config *cfg = &e->cfg;
    const int N = e->N, C = cfg->hidden_size, V = cfg->vocab_size, L = cfg->num_layers;
    be_upload(be, e->ca, a, (size_t)N * sizeof(float));
    be_upload(be, e->cb, b, (size_t)N * sizeof(float));
    if (c) be_upload(be, e->cc, c, (size_t)N * sizeof(float));
    const uint8_t *mask = c && e->has_forbidden ? e->forbidden : NULL;

    /* lm_head: recompute each chunk of logits, turn it into dlogits, and
     * accumulate dL/d xf = dlogits · lm_head. */
    for (int r0 = 0; r0 < N; r0 += e->chunk_rows) {
        int n = N - r0 < e->chunk_rows ? N - r0 : e->chunk_rows;
        void *dz = NULL;
        float *z = logits_chunk(e, r0, n, &dz);
        if (!z) break;
        op_logits_grad(be, dz, z, e->lse + r0, e->targets + r0, e->ca + r0, e->cb + r0, c ? e->cc + r0 : NULL, mask,
                       n, V);
        be_matmul_nn(be, be_act_at(be, e->dxf, (size_t)r0 * C), dz, e->lm_head, n, V, C, 0.0f);
    }
    be_zero(be, e->dres, (size_t)N * C * be->act_size);
    op_rmsnorm_bwd(be, e->dres, e->dxf, e->resid.dev[L], e->final_norm, e->rstdf, N, C);

    e->after_backward = true;
    for (int l = L - 1; l >= 0; l--) {
        stash_before_layer(e, &e->resid, l, (size_t)N * C * be->act_size);   /* resid[l] on the device (offload) */
        stash_before_layer(e, &e->kept_attn, l, attn_kept_layout(e, N).attn_bytes);   /* its attention output (kept, offload) */
        layer_acts *acts = engine_acts(e, l);
        if (cfg->ds.on) {   /* recomputed whole: the same routing, the same output */
            if (e->opts.checkpointing) deepseek_layer_forward(e, l, acts, NULL);
            deepseek_layer_backward(e, l, acts);
            continue;
        }
        if (e->opts.checkpointing) layer_forward(e, l, acts, true);   /* recompute this layer's intermediates */
        layer_backward(e, l, acts);
    }
    return be_sync(be);
}

int engine_read_hidden(engine *e, int which, float *host)
{
    if (!e->have_fwd) return ds_fail(DS_EINTERNAL, "no forward to read from");
    const int L = e->cfg.num_layers;
    if (which < -1 || which > L) return ds_fail(DS_EINTERNAL, "no hidden state %d", which);
    if (which < L) return resid_read(e, which + 1, host);
    if (overwritten_by_backward(e))
        return ds_fail(DS_EINTERNAL, "the final norm's output is not kept after a backward with offloaded activations");
    be_download_act_as_f32(e->be, host, e->xf, (size_t)e->N * e->cfg.hidden_size);
    return be_sync(e->be);
}

int engine_read_logits(engine *e, int row0, int n, float *host)
{
    if (!e->have_fwd) return ds_fail(DS_EINTERNAL, "no forward to read from");
    if (overwritten_by_backward(e))
        return ds_fail(DS_EINTERNAL, "the logits are not kept after a backward with offloaded activations");
    const int V = e->cfg.vocab_size;
    for (int r = row0; r < row0 + n; r += e->chunk_rows) {
        int k = row0 + n - r < e->chunk_rows ? row0 + n - r : e->chunk_rows;
        float *z = logits_chunk(e, r, k, NULL);
        if (!z) break;
        be_download(e->be, host + (size_t)(r - row0) * V, z, (size_t)k * V * sizeof(float));
    }
    return be_sync(e->be);
}
