/* finetune/engine/engine_decode.c - generation with a key/value cache: the
 * decoder layer of engine_pass.c for a step of new tokens, each attending to
 * its row of the cache (engine_decode.h). Inference only: no dropout, nothing
 * kept for a backward. DeepSeek's layer (MLA + experts) runs as training runs
 * it, over the engine's own buffers, with its attention against the cache. */
#include "engine_decode.h"
#include "engine_deepseek.h"
#include "engine_internal.h"
#include "ops/ops_decode.h"

#include "core/mem.h"
#include "core/status.h"

#include <string.h>

struct engine_decoder {
    engine *e;
    decoder_opts o;
    int *len;                       /* host (max_B): positions cached per row */
    void *arena;
    size_t bytes;
    void **kc, **vc;                /* (L) x (max_B * ctx, Hkv, D) act */
    /* one step's buffers, for S = max_step tokens */
    void *x;                        /* (S, C) the residual stream */
    void *h;                        /* (S, C) a norm's output */
    void *q, *k, *v, *att;          /* (S, H*D), (S, Hkv*D), (S, Hkv*D), (S, H*D) */
    void *q_raw, *k_raw;            /* (S, H*D), (S, Hkv*D) before the q/k norms */
    void *g, *u, *m;                /* (S, I) */
    float *rstd;                    /* (S * H) */
    float *lora_u;                  /* (S, r) fp32 */
    int32_t *ids, *pos, *row;       /* (S) each, consecutive: one upload a step */
    int32_t *last;                  /* (max_B) the step's row of each row's last token (after row) */
    void *xl, *hl;                  /* (max_B, C) last tokens' residual and final norm */
    float *logits;                  /* (max_B, V) fp32 */
    int32_t *h_in;                  /* host (3 S + max_B): ids, pos, row, last as uploaded */
    float *h_logits;                /* host (max_B, V): the step's logits, in the order of its rows */
    /* recorded steps (be_record_begin): the work of a step of `rec_n` tokens
     * over `rec_rows` rows, recorded after one plain step of that shape (which
     * sized every workspace); `seen_*` is the shape of the last plain step */
    be_recording *rec;
    int rec_n, rec_rows, seen_n, seen_rows;
};

/* The arena is carved as the engine's are (engine_internal.h: carve). */
static void *take(carve *c, size_t bytes) { return engine_take(c, bytes); }

static int lora_rank(const engine *e)
{
    int r = 0;
    for (int i = 0; e->views && i < e->cfg.num_layers * e->nslots; i++)
        if (e->views[i].r > r) r = e->views[i].r;
    return r;
}

static void layout(engine_decoder *d, carve *c)
{
    const engine *e = d->e;
    const model_config *cfg = &e->cfg;
    const size_t A = e->be->act_size, S = (size_t)d->o.max_step, B = (size_t)d->o.max_B;
    const size_t C = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size;
    const size_t slots = B * (size_t)d->o.ctx;
    for (int l = 0; l < cfg->num_layers; l++) {
        d->kc[l] = take(c, slots * e->KVD * A);
        d->vc[l] = take(c, slots * e->KVD * A);
    }
    d->x = take(c, S * C * A);
    d->h = take(c, S * C * A);
    d->q = take(c, S * e->QD * A);
    d->k = take(c, S * e->KVD * A);
    d->v = take(c, S * e->KVD * A);
    d->att = take(c, S * e->QD * A);
    if (cfg->qk_norm) {
        d->q_raw = take(c, S * e->QD * A);
        d->k_raw = take(c, S * e->KVD * A);
    }
    d->g = take(c, S * I * A);
    d->u = take(c, S * I * A);
    d->m = take(c, S * I * A);
    d->rstd = take(c, (S * (size_t)cfg->num_heads > B ? S * (size_t)cfg->num_heads : B) * sizeof(float));
    d->lora_u = take(c, S * (size_t)lora_rank(e) * sizeof(float));
    d->ids = take(c, (3 * S + B) * sizeof(int32_t));
    d->pos = d->ids ? d->ids + S : NULL;
    d->row = d->ids ? d->ids + 2 * S : NULL;
    d->last = d->ids ? d->ids + 3 * S : NULL;
    d->xl = take(c, B * C * A);
    d->hl = take(c, B * C * A);
    d->logits = take(c, B * (size_t)cfg->vocab_size * sizeof(float));
}

int decoder_create(engine *e, const decoder_opts *o, engine_decoder **out)
{
    *out = NULL;
    const model_config *cfg = &e->cfg;
    switch (cfg->family) {   /* any family not listed is refused by name */
    case FAMILY_LLAMA: case FAMILY_MISTRAL: case FAMILY_QWEN2: case FAMILY_QWEN3:
    case FAMILY_DEEPSEEK_V2: case FAMILY_DEEPSEEK_V3: break;
    default:
        return ds_fail(DS_EUSAGE, "%s: generation with a key/value cache does not run %s models yet "
                                  "(ds-ft generate --recompute does)", e->model->dir, cfg->architecture);
    }
    if (o->max_B < 1 || o->ctx < 1 || o->max_step < 0)
        return ds_fail(DS_EINTERNAL, "decoder: empty shape %d x %d", o->max_B, o->ctx);
    engine_decoder *d = ds_calloc(1, sizeof *d, "the decoder");
    if (!d) return DS_ENOMEM;
    d->e = e;
    d->o = *o;
    if (!d->o.max_step) d->o.max_step = 256;
    if (d->o.max_step > o->max_B * o->ctx) d->o.max_step = o->max_B * o->ctx;
    if (cfg->ds.on && d->o.max_step > e->Nmax) d->o.max_step = e->Nmax;   /* steps run in the engine's buffers */
    d->o.lora = o->lora && e->views;
    d->len = ds_calloc((size_t)o->max_B, sizeof *d->len, "the decoder's rows");
    d->kc = ds_calloc((size_t)cfg->num_layers, sizeof *d->kc, "the key cache");
    d->vc = ds_calloc((size_t)cfg->num_layers, sizeof *d->vc, "the value cache");
    d->h_in = ds_calloc(3 * (size_t)d->o.max_step + (size_t)o->max_B, sizeof *d->h_in, "the decoder's inputs");
    d->h_logits = ds_malloc(sizeof(float) * (size_t)o->max_B * cfg->vocab_size, "the decoder's logits");
    if (!d->len || !d->kc || !d->vc || !d->h_in || !d->h_logits) {
        decoder_free(d);
        return DS_ENOMEM;
    }
    carve c = {0};
    layout(d, &c);
    d->bytes = c.off;
    backend *be = e->be;
    d->arena = be_alloc(be, d->bytes, "the key/value cache");
    if (d->arena) {
        c = (carve){.base = d->arena};
        layout(d, &c);
        /* the workspaces a step of max_step tokens needs, reserved now */
        size_t lora = 0;
        for (int i = 0; e->views && i < cfg->num_layers * e->nslots; i++)
            if (e->views[i].r) {
                size_t need = lora_workspace_bytes(&e->views[i], d->o.max_step, be->act_size);
                if (need > lora) lora = need;
            }
        if (lora) be_reserve(be, WS_LORA, lora);
    }
    int rc = be_sync(be);
    if (rc) {
        decoder_free(d);
        return ds_fail_context(rc, "setting up a key/value cache of %d x %d positions on %s: ", o->max_B, o->ctx,
                               be_name(be));
    }
    *out = d;
    return DS_OK;
}

void decoder_free(engine_decoder *d)
{
    if (!d) return;
    be_recording_free(d->rec);
    be_free(d->e->be, d->arena);
    free(d->len);
    free(d->kc);
    free(d->vc);
    free(d->h_in);
    free(d->h_logits);
    free(d);
}

int decoder_len(const engine_decoder *d, int r) { return d->len[r]; }
size_t decoder_bytes(const engine_decoder *d) { return d->bytes; }

void decoder_truncate(engine_decoder *d, int r, int len)
{
    if (len >= 0 && len < d->len[r]) d->len[r] = len;
}

/* y += LoRA(x) of linear t of layer l, when it has an adapter in use. */
static void add_lora(engine_decoder *d, int l, llama_linear t, void *y, const void *x, int N)
{
    const lora_view *v = d->o.lora ? &d->e->views[l * LIN_COUNT + t] : NULL;
    if (v && v->A) {
        lora_ctx ctx = {.seed = d->e->opts.seed, .training = false};
        op_lora_fwd(d->e->be, y, d->lora_u, x, v, N, &ctx);
    }
}

/* y = x·Wᵀ (+ beta·y) + LoRA(x) for linear t of layer l, over N tokens. */
static void linear(engine_decoder *d, int l, llama_linear t, void *y, const void *x, int N, float beta)
{
    engine *e = d->e;
    const frozen_linear *w = &e->layers[l].lin[t];
    if (!w->dense && N <= NF4_GEMV_MAX_ROWS) {   /* decoding a 4-bit layer: the fused kernel */
        op_nf4_gemv(e->be, y, x, &w->q, N, beta);
        if (w->bias) op_bias_add(e->be, y, w->bias, N, w->out);
    } else {
        op_linear_fwd(e->be, y, x, w, N, beta);
    }
    add_lora(d, l, t, y, x, N);
}

/* Whether the decode step's NF4 products can take linears ts of layer l
 * (every one 4-bit, N and count within the kernel's bounds): their views into q. */
static bool gemv_views(engine_decoder *d, int l, const llama_linear *ts, int count, int N, const nf4_view **q)
{
    if (N > NF4_GEMV_MAX_ROWS || count > NF4_GEMV_MAX_WEIGHTS) return false;
    for (int i = 0; i < count; i++) {
        const frozen_linear *w = &d->e->layers[l].lin[ts[i]];
        if (w->dense) return false;
        q[i] = &w->q;
    }
    return true;
}

/* After the products of linears ts on input x: each one's bias and LoRA. */
static void bias_lora(engine_decoder *d, int l, const llama_linear *ts, void *const *ys, int count, const void *x,
                      int N)
{
    for (int i = 0; i < count; i++) {
        const frozen_linear *w = &d->e->layers[l].lin[ts[i]];
        if (w->bias) op_bias_add(d->e->be, ys[i], w->bias, N, w->out);
        add_lora(d, l, ts[i], ys[i], x, N);
    }
}

/* linear() of `count` weights of layer l over the same input x: ys[i] =
 * x·W[ts[i]]ᵀ + LoRA, the 4-bit products in one launch when decoding. */
static void linears(engine_decoder *d, int l, const llama_linear *ts, void *const *ys, int count, const void *x,
                    int N)
{
    const nf4_view *q[NF4_GEMV_MAX_WEIGHTS];
    if (!gemv_views(d, l, ts, count, N, q)) {
        for (int i = 0; i < count; i++) linear(d, l, ts[i], ys[i], x, N, 0.0f);
        return;
    }
    op_nf4_gemv_multi(d->e->be, ys, x, q, count, N);
    bias_lora(d, l, ts, ys, count, x, N);
}

/* linear() or linears() of the input that `in` makes of x into h (RMSNorm
 * or SwiGLU): ys[i] = h·W[ts[i]]ᵀ (+ beta·ys[0], one weight) + LoRA(h). When
 * decoding 4-bit layers, op_nf4_gemv_in: on CUDA a step of one token makes
 * the input inside the products' launch. */
static void linears_in(engine_decoder *d, int l, const llama_linear *ts, void *const *ys, int count, void *h,
                       const void *x, const gemv_in *in, int N, float beta)
{
    engine *e = d->e;
    const nf4_view *q[NF4_GEMV_MAX_WEIGHTS];
    if (!gemv_views(d, l, ts, count, N, q)) {
        op_gemv_in_make(e->be, h, x, in, N, e->layers[l].lin[ts[0]].in);
        if (count == 1) linear(d, l, ts[0], ys[0], h, N, beta);
        else linears(d, l, ts, ys, count, h, N);
        return;
    }
    op_nf4_gemv_in(e->be, ys, h, x, in, q, count, N, beta);
    bias_lora(d, l, ts, ys, count, h, N);
}

/* Decoder layer l on the step's N tokens: d->x += attention + MLP, as
 * layer_forward computes them, with k and v stored in the cache first. */
static void layer_step(engine_decoder *d, int l, int N)
{
    engine *e = d->e;
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int H = c->num_heads, Hkv = c->num_kv_heads, D = c->head_dim;
    const layer_weights *w = &e->layers[l];
    kv_shape ks = {.H = H, .Hkv = Hkv, .D = D, .window = w->attn.window, .scale = w->attn.scale, .ctx = d->o.ctx};

    static const llama_linear qkv[3] = {LIN_Q, LIN_K, LIN_V};
    void *qkv_out[3] = {c->qk_norm ? d->q_raw : d->q, c->qk_norm ? d->k_raw : d->k, d->v};
    const gemv_in attn_in = {.kind = GEMV_IN_RMSNORM, .w = w->attn_norm, .eps = c->rms_norm_eps, .rstd = d->rstd};
    linears_in(d, l, qkv, qkv_out, 3, d->h, d->x, &attn_in, N, 0.0f);   /* h = norm(x); q, k, v of h */
    if (c->qk_norm) {   /* Qwen3: q and k normalised per head before RoPE */
        op_rmsnorm_fwd(be, d->q, d->rstd, d->q_raw, w->q_norm, N * H, D, c->rms_norm_eps);
        op_rmsnorm_fwd(be, d->k, d->rstd, d->k_raw, w->k_norm, N * Hkv, D, c->rms_norm_eps);
    }
    op_rope_kv_store(be, d->q, d->k, d->v, d->kc[l], d->vc[l], d->row, d->pos, N, &ks, &e->rope);
    op_attention_cached(be, d->att, d->q, d->kc[l], d->vc[l], d->row, d->pos, N, &ks);
    linear(d, l, LIN_O, d->x, d->att, N, 1.0f);                 /* x += o_proj(att) */

    static const llama_linear gate_up[2] = {LIN_GATE, LIN_UP}, down[1] = {LIN_DOWN};
    void *gate_up_out[2] = {d->g, d->u}, *down_out[1] = {d->x};
    const gemv_in mlp_in = {.kind = GEMV_IN_RMSNORM, .w = w->mlp_norm, .eps = c->rms_norm_eps, .rstd = d->rstd};
    linears_in(d, l, gate_up, gate_up_out, 2, d->h, d->x, &mlp_in, N, 0.0f);   /* h = norm(x); gate, up of h */
    const gemv_in act = {.kind = GEMV_IN_SWIGLU, .up = d->u};
    linears_in(d, l, down, down_out, 1, d->m, d->g, &act, N, 1.0f);           /* m = swiglu(g, u); x += down(m) */
}

/* DeepSeek's layers on the step's N <= e->Nmax tokens, resid[0] -> resid[L]:
 * the training forward's layer (engine_deepseek.c), each layer's attention
 * reading and extending its cache. The engine's buffers then hold this step,
 * not a forward a backward could follow. */
static void deepseek_steps(engine_decoder *d, int N)
{
    engine *e = d->e;
    e->N = N;
    e->have_fwd = false;
    e->last = (engine_fwd){.lora = d->o.lora};
    for (int l = 0; l < e->cfg.num_layers; l++) {
        mla_cache cache = {.kc = d->kc[l], .vc = d->vc[l], .row = d->row, .pos = d->pos, .ctx = d->o.ctx};
        deepseek_layer_forward(e, l, engine_acts(e, l), &cache);
    }
}

/* The device work of a step of N tokens whose `touched` rows' last tokens are
 * d->last: the layers, then those tokens' final norm and lm_head into d->logits.
 * Every shape and pointer here depends on (N, touched) only, so that a
 * recording of it serves every step of that shape. */
static void step_ops(engine_decoder *d, int N, int touched)
{
    engine *e = d->e;
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int C = c->hidden_size, V = c->vocab_size;
    void *x0 = c->ds.on ? e->resid.dev[0] : d->x, *xL = c->ds.on ? e->resid.dev[c->num_layers] : d->x;
    op_embedding(be, x0, d->ids, e->embed, N, C);
    if (c->ds.on) deepseek_steps(d, N);
    else
        for (int l = 0; l < c->num_layers; l++) layer_step(d, l, N);
    /* only each row's last token needs the final norm and the lm_head */
    op_embedding(be, d->xl, d->last, xL, touched, C);
    op_rmsnorm_fwd(be, d->hl, d->rstd, d->xl, e->final_norm, touched, C, c->rms_norm_eps);
    be_gemm_args g = {.M = touched, .N = V, .K = C, .A = d->hl, .lda = C, .B = e->lm_head, .ldb = C,
                      .trans_b = true, .C = d->logits, .ldc = V, .c_f32 = true, .alpha = 1.0f, .beta = 0.0f};
    be_gemm(be, &g);
}

/* One step of N <= max_step tokens; logits of the rows it touched. */
static int step(engine_decoder *d, int N, const int32_t *ids, const int32_t *rows, float *logits)
{
    engine *e = d->e;
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const int V = c->vocab_size, B = d->o.max_B;
    const int S = d->o.max_step;
    int32_t *h_ids = d->h_in, *h_pos = h_ids + S, *h_row = h_ids + 2 * S, *gather = h_ids + 3 * S;
    int32_t last[B], order[B];   /* each row's last token in the step; the rows touched, in order */
    int touched = 0;
    for (int r = 0; r < B; r++) last[r] = -1;
    for (int i = 0; i < N; i++) {
        int r = rows[i];
        if (last[r] < 0) order[touched++] = r;
        last[r] = i;
        h_ids[i] = ids[i], h_row[i] = r, h_pos[i] = d->len[r]++;
    }
    for (int k = 0; k < touched; k++) gather[k] = last[order[k]];   /* the step's row of each one's last token */
    be_upload(be, d->ids, d->h_in, (3 * (size_t)S + (size_t)touched) * sizeof(int32_t));
    int rc = DS_OK;
    /* DeepSeek's routing goes through the host: its steps always run plainly */
    if (d->o.plain || c->ds.on || !be_can_record(be)) step_ops(d, N, touched);
    else if (d->rec && d->rec_n == N && d->rec_rows == touched) be_replay(be, d->rec);
    else if (d->seen_n == N && d->seen_rows == touched) {   /* the second step of this shape: record it */
        be_recording_free(d->rec);
        d->rec = NULL;
        rc = be_record_begin(be);
        if (!rc) step_ops(d, N, touched);
        if (!rc) rc = be_record_end(be, &d->rec);
        if (rc) return ds_fail_context(rc, "recording a generation step: ");
        d->rec_n = N, d->rec_rows = touched;
        be_replay(be, d->rec);
    } else {
        step_ops(d, N, touched);
        d->seen_n = N, d->seen_rows = touched;
    }
    be_download(be, d->h_logits, d->logits, (size_t)touched * V * sizeof(float));
    rc = be_sync(be);
    for (int k = 0; !rc && k < touched; k++)
        memcpy(logits + (size_t)order[k] * V, d->h_logits + (size_t)k * V, (size_t)V * sizeof(float));
    return rc;
}

int decoder_feed(engine_decoder *d, int n, const int32_t *ids, const int32_t *rows, float *logits)
{
    const int V = d->e->cfg.vocab_size;
    int need[d->o.max_B];
    memset(need, 0, sizeof need);
    for (int i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= d->o.max_B)
            return ds_fail(DS_EINTERNAL, "decoder: row %d outside 0..%d", rows[i], d->o.max_B - 1);
        if (ids[i] < 0 || ids[i] >= V)
            return ds_fail(DS_EDATA, "token id %d is outside the model's vocabulary (0..%d)", ids[i], V - 1);
        if (d->len[rows[i]] + ++need[rows[i]] > d->o.ctx)
            return ds_fail(DS_EUSAGE, "generate: sequence %d passes the key/value cache's %d positions", rows[i],
                           d->o.ctx);
    }
    for (int i0 = 0; i0 < n; i0 += d->o.max_step) {
        int k = n - i0 < d->o.max_step ? n - i0 : d->o.max_step;
        int rc = step(d, k, ids + i0, rows + i0, logits);
        if (rc) return rc;
    }
    return DS_OK;
}
