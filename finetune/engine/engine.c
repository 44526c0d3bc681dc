/* finetune/engine/engine.c - engine set-up: arenas sized once, weights uploaded,
 * LoRA parameters and optimizer state. The passes are in engine_pass.c. */
#include "engine_deepseek.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *take(carve *c, size_t bytes)
{
    c->off = (c->off + 255) & ~(size_t)255;
    void *p = c->base ? c->base + c->off : NULL;
    c->off += bytes ? bytes : 1;
    return p;
}

backend *engine_backend(const engine *e) { return e->be; }
size_t engine_nparams(const engine *e) { return e->P; }
int engine_max_tokens(const engine *e) { return e->Nmax; }
int engine_max_T(const engine *e) { return e->opts.max_T; }

layer_acts *engine_acts(engine *e, int layer) { return &e->sets[e->nsets == 1 ? 0 : layer]; }

/* ------------------------------------------------------------------ weights */

/* A 16/32-bit tensor from the file into act values on the backend, in chunks. */
static void upload_tensor(backend *be, void *dst, const st_tensor *t)
{
    const size_t chunk = 1 << 20;
    float *tmp = ds_malloc(sizeof(float) * chunk, "a tensor's upload buffer");
    if (!tmp) {
        be_fail(be, DS_ENOMEM, "%s", ds_errmsg());
        return;
    }
    st_tensor part = *t;
    for (int64_t i = 0; i < t->numel && !be->err; i += (int64_t)chunk) {
        int64_t n = t->numel - i < (int64_t)chunk ? t->numel - i : (int64_t)chunk;
        part.numel = n;
        part.data = (const char *)t->data + (size_t)i * st_dtype_size(t->dtype);
        st_to_f32(&part, tmp);
        be_upload_f32_as_act(be, be_act_at(be, dst, (size_t)i), tmp, (size_t)n);
    }
    free(tmp);
}

/* The two above for the DeepSeek layer's memory (engine_deepseek.c). */
void *engine_take(carve *c, size_t bytes) { return take(c, bytes); }
void engine_upload_tensor(backend *be, void *dst, const st_tensor *t) { upload_tensor(be, dst, t); }

/* Bytes of an NF4 weight's packed codes and of its absmax values. */
static void nf4_bytes(const nf4_view *q, size_t *packed, size_t *absmax)
{
    *packed = (size_t)(q->n + 1) / 2;
    *absmax = q->double_quant ? (size_t)q->nblocks : (size_t)q->nblocks * sizeof(float);
}

/* Lay out (or, with c->base set, upload) the frozen weights. */
static void layout_weights(engine *e, carve *c)
{
    const llama_model *m = e->model;
    const model_config *cfg = &e->cfg;
    backend *be = e->be;
    size_t VC = (size_t)cfg->vocab_size * cfg->hidden_size;
    e->embed = take(c, VC * be->act_size);
    if (c->base) upload_tensor(be, e->embed, m->embed);
    if (m->lm_head == m->embed) {
        e->lm_head = e->embed;
    } else {
        e->lm_head = take(c, VC * be->act_size);
        if (c->base) upload_tensor(be, e->lm_head, m->lm_head);
    }
    e->final_norm = take(c, (size_t)cfg->hidden_size * be->act_size);
    if (c->base) upload_tensor(be, e->final_norm, m->final_norm);
    for (int l = 0; l < cfg->num_layers; l++) {
        const model_layer *ml = &m->layers[l];
        layer_weights *lw = &e->layers[l];
        lw->attn_norm = take(c, (size_t)cfg->hidden_size * be->act_size);
        lw->mlp_norm = take(c, (size_t)cfg->hidden_size * be->act_size);
        if (c->base) {
            upload_tensor(be, lw->attn_norm, ml->attn_norm);
            upload_tensor(be, lw->mlp_norm, ml->mlp_norm);
        }
        if (cfg->qk_norm) {
            lw->q_norm = take(c, (size_t)cfg->head_dim * be->act_size);
            lw->k_norm = take(c, (size_t)cfg->head_dim * be->act_size);
            if (c->base) {
                upload_tensor(be, lw->q_norm, ml->q_norm);
                upload_tensor(be, lw->k_norm, ml->k_norm);
            }
        }
        lw->attn = (attn_shape){.H = cfg->num_heads, .Hkv = cfg->num_kv_heads, .D = e->attn_D,
                                .window = model_layer_window(cfg, l)};
        for (int t = 0; t < LIN_COUNT && !cfg->ds.on; t++) {
            const model_linear *src = &ml->lin[t];
            frozen_linear *dst = &lw->lin[t];
            dst->bias = NULL;
            if (ml->bias[t]) {
                dst->bias = take(c, (size_t)src->out * be->act_size);
                if (c->base) upload_tensor(be, (void *)dst->bias, ml->bias[t]);
            }
            engine_layout_linear(e, c, dst, src);
        }
        if (cfg->ds.on) deepseek_layout_weights(e, c, l);
    }
}

void engine_layout_linear(engine *e, carve *c, frozen_linear *dst, const model_linear *src)
{
    backend *be = e->be;
    dst->out = src->out;
    dst->in = src->in;
    if (!src->q_owner) {
        dst->dense = take(c, (size_t)src->out * src->in * be->act_size);
        if (c->base) upload_tensor(be, (void *)dst->dense, src->dense);
        return;
    }
    /* NF4: the same view with backend copies of its arrays. */
    const nf4_view *q = &src->q;
    size_t packed, absmax;
    nf4_bytes(q, &packed, &absmax);
    nf4_view v = *q;
    dst->dense = NULL;
    v.packed = take(c, packed);
    if (q->double_quant) {
        v.absmax_q = take(c, absmax);
        v.absmax2 = take(c, (size_t)q->nblocks2 * sizeof(float));
        v.nested_map = take(c, 256 * sizeof(float));
        v.absmax = NULL;
    } else {
        v.absmax = take(c, absmax);
    }
    v.code = take(c, 16 * sizeof(float));
    if (c->base) {
        be_upload(be, (void *)v.packed, q->packed, packed);
        if (q->double_quant) {
            be_upload(be, (void *)v.absmax_q, q->absmax_q, absmax);
            be_upload(be, (void *)v.absmax2, q->absmax2, (size_t)q->nblocks2 * sizeof(float));
            be_upload(be, (void *)v.nested_map, q->nested_map, 256 * sizeof(float));
        } else {
            be_upload(be, (void *)v.absmax, q->absmax, absmax);
        }
        be_upload(be, (void *)v.code, q->code, 16 * sizeof(float));
    }
    dst->q = v;
}

/* ------------------------------------------------------------ activations */

/* One set's Llama attention intermediates (DeepSeek's MLA: deepseek_layout_acts). */
static void layout_attention(engine *e, carve *c, layer_acts *a)
{
    const model_config *cfg = &e->cfg;
    size_t N = (size_t)e->Nmax, A = e->be->act_size;
    /* where every layer keeps its projections (keep_projections) they are
     * written into e->kept_proj; q and k are then taken here only where
     * Qwen3's norms follow */
    const bool home = e->opts.keep_projections < e->cfg.num_layers;
    if (home || cfg->qk_norm) {
        a->q = take(c, N * (size_t)e->QD * A);
        a->k = take(c, N * (size_t)e->KVD * A);
    }
    if (cfg->qk_norm) {
        if (home) {
            a->q_raw = take(c, N * (size_t)e->QD * A);
            a->k_raw = take(c, N * (size_t)e->KVD * A);
        }
        a->rstd_q = take(c, N * (size_t)cfg->num_heads * sizeof(float));
        a->rstd_k = take(c, N * (size_t)cfg->num_kv_heads * sizeof(float));
    }
    if (home) a->v = take(c, N * (size_t)e->KVD * A);
    if (!e->opts.keep_attention) {   /* else layer l's entry of e->kept_attn */
        a->att = take(c, N * (size_t)e->QD * A);
        a->lse = take(c, N * (size_t)cfg->num_heads * sizeof(float));
    }
    for (int t = 0; t < LIN_COUNT; t++)
        a->lora_u[t] = e->views && e->views[t].r ? take(c, N * (size_t)e->views[t].r * sizeof(float)) : NULL;
}

static void layout_acts(engine *e, carve *c)
{
    const model_config *cfg = &e->cfg;
    size_t N = (size_t)e->Nmax, C = (size_t)cfg->hidden_size, I = (size_t)cfg->intermediate_size;
    size_t A = e->be->act_size, V = (size_t)cfg->vocab_size;
    if (cfg->ds.on && (size_t)cfg->ds.n_shared * cfg->ds.moe_intermediate > I)   /* g, u, m: the shared experts' too */
        I = (size_t)cfg->ds.n_shared * cfg->ds.moe_intermediate;
    const size_t R = (size_t)e->mlp_rows;   /* tokens per MLP slice */
    stash_layout(&e->resid, c);
    stash_layout(&e->kept_attn, c);
    stash_layout(&e->kept_proj, c);
    for (int s = 0; s < e->nsets; s++) {
        layer_acts *a = &e->sets[s];
        a->h1 = take(c, N * C * A);
        a->rstd1 = take(c, N * sizeof(float));
        if (cfg->ds.on) deepseek_layout_acts(e, c, a);
        else layout_attention(e, c, a);
        if (e->opts.keep_projections < cfg->num_layers) a->x_mid = take(c, N * C * A);   /* else in e->kept_proj */
        a->h2 = take(c, N * C * A);
        a->rstd2 = take(c, N * sizeof(float));
        a->g = take(c, R * I * A);
        a->u = take(c, R * I * A);
        a->m = take(c, R * I * A);
    }
    const layer_acts *a0 = &e->sets[0];   /* where layers whose projections are not kept write them */
    e->proj_home.x_mid = a0->x_mid, e->proj_home.v = a0->v;
    e->proj_home.q = cfg->qk_norm ? a0->q_raw : a0->q;
    e->proj_home.k = cfg->qk_norm ? a0->k_raw : a0->k;
    /* with offload (long sequences) the final norm's output takes the place of
     * the one layer's h1: the backward recomputes h1 after the last use of xf */
    e->xf = e->opts.offload ? e->sets[0].h1 : take(c, N * C * A);
    e->rstdf = take(c, N * sizeof(float));
    if (e->opts.training) {
        e->dres = take(c, N * C * A);
        e->dh = take(c, N * C * A);
        e->dxf = e->dh;   /* dead once the final norm's backward has read it */
        if (cfg->ds.on) {
            deepseek_layout_grads(e, c);
        } else {
            /* dL/d att lives from o_proj's backward to the attention's, while dh
             * is free (its next value comes from q/k/v's backward) */
            e->datt = (size_t)e->QD <= C ? e->dh : take(c, N * (size_t)e->QD * A);
            e->dq = take(c, N * (size_t)e->QD * A);
            e->dk = take(c, N * (size_t)e->KVD * A);
            e->dv = take(c, N * (size_t)e->KVD * A);
        }
        if (cfg->qk_norm) {
            e->dq_raw = take(c, N * (size_t)e->QD * A);
            e->dk_raw = take(c, N * (size_t)e->KVD * A);
        }
        e->dm = take(c, R * I * A);
        e->dg = take(c, R * I * A);
        e->du = take(c, R * I * A);
    }
    e->ids = take(c, N * sizeof(int32_t));
    e->pos = take(c, N * sizeof(int32_t));
    e->seg = take(c, N * sizeof(int32_t));
    e->targets = take(c, N * sizeof(int32_t));
    e->lse = take(c, N * sizeof(float));
    e->logprob = take(c, N * sizeof(float));
    e->fmass = take(c, N * sizeof(float));
    e->ca = take(c, N * sizeof(float));
    e->cb = take(c, N * sizeof(float));
    e->cc = take(c, N * sizeof(float));
    e->forbidden = take(c, V);
    if (cfg->ds.on) deepseek_layout_routes(e, c);
}

/* ------------------------------------------------------------------ adapter */

/* The adapter's layout, without the device: its parameter count and a view
 * of each adapted layer (shapes, scale, dropout; pointers set by
 * upload_adapter). */
static int plan_adapter(engine *e)
{
    const lora_adapter *ad = e->opts.adapter;
    if (!ad) return DS_OK;
    if (ad->nlayers != e->cfg.num_layers) return ds_fail(DS_EDATA, "adapter has %d layers, the model %d",
                                                         ad->nlayers, e->cfg.num_layers);
    if (ad->nslots != e->nslots || ad->model.ds.on != e->cfg.ds.on)
        return ds_fail(DS_EDATA, "adapter does not fit the model: it was made for %s", ad->model.architecture);
    for (int l = 0; l < e->cfg.num_layers; l++)
        for (int t = 0; t < e->nslots; t++) {
            int out = 0, in = 0, aout, ain;
            if (e->cfg.ds.on) deepseek_linear(&e->cfg, l, t, NULL, 0, NULL, &out, &in);
            else llama_linear_shape(&e->cfg, (llama_linear)t, &out, &in);
            if (lora_slot_A(ad, l, t) && lora_slot_shape(ad, l, t, &aout, &ain) && (aout != out || ain != in)) {
                char key[192];
                lora_slot_key(ad, key, sizeof key, l, t, 'A');
                return ds_fail(DS_EDATA, "adapter does not fit the model: %s is [%d, %d] in the adapter, [%d, %d] in "
                                         "the model", key, aout, ain, out, in);
            }
        }
    e->P = ad->nparams;
    e->views = ds_calloc((size_t)e->cfg.num_layers * e->nslots, sizeof *e->views, "LoRA views");
    if (!e->views) return DS_ENOMEM;
    float scale = lora_scale(&ad->cfg);
    for (int l = 0; l < e->cfg.num_layers; l++)
        for (int t = 0; t < e->nslots; t++) {
            if (ad->offset[l * e->nslots + t] == SIZE_MAX) continue;
            lora_view *v = &e->views[l * e->nslots + t];
            lora_slot_shape(ad, l, t, &v->out, &v->in);
            v->r = ad->cfg.r;
            v->scale = scale;
            v->dropout = (float)ad->cfg.dropout;
            v->id = (uint64_t)(l * e->nslots + t);
        }
    return DS_OK;
}

/* The adapter's arena: parameters, and for training their gradients and AdamW's m and v. */
static size_t adapter_bytes(const engine *e) { return (e->opts.training ? 4 : 1) * e->P * sizeof(float) + 256; }

static int upload_adapter(engine *e)
{
    const lora_adapter *ad = e->opts.adapter;
    if (!ad) return DS_OK;
    backend *be = e->be;
    size_t copies = e->opts.training ? 4 : 1;
    e->a_arena = be_alloc(be, adapter_bytes(e), "LoRA parameters and optimizer state");
    if (!e->a_arena) return be_sync(be);
    e->params = e->a_arena;
    if (e->opts.training) {
        e->grads = e->params + e->P;
        e->adam_m = e->grads + e->P;
        e->adam_v = e->adam_m + e->P;
        be_zero(be, e->grads, 3 * e->P * sizeof(float));
    }
    e->sumsq = e->params + copies * e->P;
    be_upload(be, e->params, ad->data, e->P * sizeof(float));
    for (int i = 0; i < e->cfg.num_layers * e->nslots; i++) {
        lora_view *v = &e->views[i];
        if (!v->r) continue;
        size_t off = ad->offset[i];
        v->A = e->params + off;
        v->B = v->A + (size_t)v->r * v->in;
        if (e->grads) {
            v->dA = e->grads + off;
            v->dB = v->dA + (size_t)v->r * v->in;
        }
    }
    return be_sync(be);
}

/* Workspace slots, reserved now so that no step allocates (with `reserve`;
 * without, only e->ws_bytes and e->chunk_rows are worked out). */
static void plan_workspace(engine *e, bool reserve)
{
#define RESERVE(slot, bytes) do { if (reserve) be_reserve(be, slot, bytes); } while (0)
    backend *be = e->be;
    const model_config *cfg = &e->cfg;
    size_t N = (size_t)e->Nmax, V = (size_t)cfg->vocab_size, A = be->act_size;
    size_t biggest = 0, lora = 0;
    for (int t = 0; t < LIN_COUNT; t++) {
        int out, in;
        llama_linear_shape(cfg, (llama_linear)t, &out, &in);
        if ((size_t)out * in > biggest) biggest = (size_t)out * in;
        if (e->views && e->views[t].r) {
            size_t need = lora_workspace_bytes(&e->views[t], (int)N, A);
            if (need > lora) lora = need;
        }
    }
    size_t wide = (size_t)(cfg->intermediate_size > cfg->hidden_size ? cfg->intermediate_size : cfg->hidden_size);
    if (cfg->ds.on) deepseek_workspace(e, &biggest, &lora, &wide);
    if (e->model->quantized) RESERVE( WS_DEQUANT, biggest * A);
    if (lora) RESERVE( WS_LORA, lora);
    /* one logits chunk: 512 MiB on a GPU, 64 MiB on the CPU */
    size_t budget = be->kind == BE_CUDA ? (512u << 20) : (64u << 20);
    size_t rows = budget / (V * (sizeof(float) + A));
    if (rows < 1) rows = 1;
    if (rows > N) rows = N;
    e->chunk_rows = (int)rows;
    RESERVE( WS_LOGITS, rows * V * (sizeof(float) + A) + 256);
    if (be->kind == BE_CUDA) {
        /* the attention kernels' scratch: fp32 dQ accumulators, one value per
         * (token, head), and the segment range of every 64-token tile */
        size_t H = (size_t)cfg->num_heads, D = (size_t)e->attn_D;
        size_t tiles = N + 1;   /* B * ceil(T / 64) for any B x T that fits N tokens */
        size_t attn = N * H * (D + 1) * sizeof(float) + tiles * 2 * sizeof(int) + 1024;
        RESERVE( WS_ATTN, attn);
        e->ws_bytes += attn;
    }
    RESERVE( WS_MISC, (1u << 20) * sizeof(float));
    if (cfg->ds.on && cfg->ds.n_routed && be->kind == BE_CUDA) {
        /* routed experts' products run side by side (engine_moe.c) */
        if (reserve) be_reserve_streams(be, BE_MAX_STREAMS);
        e->ws_bytes += BE_MAX_STREAMS * be_stream_bytes(be);
    }
    if (be->kind == BE_CPU) {
        /* the CPU products' transposed operands: lm_head, or an (N, widest) LoRA operand */
        size_t gemm = (V * (size_t)cfg->hidden_size > N * wide ? V * (size_t)cfg->hidden_size : N * wide) * sizeof(float);
        RESERVE( WS_GEMM, gemm);
        e->ws_bytes += gemm;
    }
    e->ws_bytes += biggest * A * (e->model->quantized ? 1 : 0) + lora + rows * V * (sizeof(float) + A) + (4u << 20);
#undef RESERVE
}

/* What every engine starts from: the shapes, and no memory yet. */
static int engine_init(engine *e, backend *be, const llama_model *m, const engine_opts *o)
{
    e->be = be;
    if (o->max_B < 1 || o->max_T < 1) return ds_fail(DS_EINTERNAL, "engine: empty batch shape");
    int D = m->cfg.ds.on ? deepseek_head_width(&m->cfg, be->kind) : m->cfg.head_dim;
    int rotated = m->cfg.ds.on ? m->cfg.ds.qk_rope_dim : m->cfg.head_dim;   /* DeepSeek rotates its rope part only */
    if (rotated / 2 > ROPE_MAX_HALF)
        return ds_fail(DS_EDATA, "%s: a rotary part of %d is over %d", m->dir, rotated, 2 * ROPE_MAX_HALF);
    if (be->kind == BE_CUDA && D != 16 && D != 32 && D != 64 && D != 128 && D != 192)
        return ds_fail(DS_EDATA, "%s: head_dim %d: the CUDA attention kernels take 16, 32, 64, 128 or 192 (use device: "
                                 "cpu)", m->dir, D);
    e->model = m;
    e->cfg = m->cfg;
    e->opts = *o;
    e->Nmax = o->max_B * o->max_T;
    e->attn_D = D;
    e->QD = e->cfg.num_heads * D;
    e->KVD = e->cfg.num_kv_heads * D;
    e->rope.half = (e->cfg.ds.on ? e->cfg.ds.qk_rope_dim : e->cfg.head_dim) / 2;
    e->nslots = e->cfg.ds.on ? deepseek_slots(&e->cfg) : LIN_COUNT;
    model_rope_freqs(&e->cfg, e->rope.inv_freq, &e->rope.scale);
    e->layers = ds_calloc((size_t)e->cfg.num_layers, sizeof *e->layers, "engine layers");
    e->nsets = o->checkpointing ? 1 : e->cfg.num_layers;
    e->sets = ds_calloc((size_t)e->nsets, sizeof *e->sets, "engine layers");
    if (!e->layers || !e->sets) return DS_ENOMEM;
    int rc = stash_check_opts(&e->cfg, o);
    if (rc) return rc;
    const int L = e->cfg.num_layers;
    rc = stash_init(&e->resid, L + 1, (size_t)e->Nmax * e->cfg.hidden_size * be->act_size,
                        o->offload ? (e->cfg.ds.on ? 3 : 2) : 0);
    if (!rc && o->keep_attention)
        rc = stash_init(&e->kept_attn, L, attn_kept_layout(e, e->Nmax).attn_bytes, o->offload ? 2 : 0);
    if (!rc && o->keep_projections)
        rc = stash_init(&e->kept_proj, o->keep_projections, attn_kept_layout(e, e->Nmax).proj_bytes, 0);
    if (rc) return rc;
    if (o->mlp_rows < 0) return ds_fail(DS_EINTERNAL, "engine: negative MLP slice");
    /* the MLP in slices of tokens: its (tokens, intermediate) buffers are the
     * widest a Llama layer has. Sliced where memory is short (offload on) or
     * asked; whole where it is kept for the backward (no checkpointing) or
     * made by DeepSeek's expert layers. Slices cost a few percent at 2,048 x
     * 12 tokens (the weights dequantized once a slice, smaller products). */
    e->mlp_rows = e->Nmax;
    if (o->checkpointing && !e->cfg.ds.on) {
        int rows = o->mlp_rows ? o->mlp_rows : o->offload ? ENGINE_MLP_ROWS : e->Nmax;
        if (rows < e->Nmax) e->mlp_rows = rows;
    }
    return e->cfg.ds.on ? deepseek_init(e) : DS_OK;
}

int engine_create(backend *be, const llama_model *m, const engine_opts *o, engine **out)
{
    *out = NULL;
    engine *e = ds_calloc(1, sizeof *e, "the engine");
    if (!e) return DS_ENOMEM;
    int rc = engine_init(e, be, m, o);
    if (rc) {
        engine_free(e);
        return rc;
    }
    carve c = {0};
    layout_weights(e, &c);
    e->w_bytes = c.off;
    e->w_arena = be_alloc(be, e->w_bytes, "model weights");
    rc = be_sync(be);
    if (!rc) {
        c = (carve){.base = e->w_arena};
        layout_weights(e, &c);
        rc = be_sync(be);
    }
    if (!rc) rc = plan_adapter(e);
    if (!rc) rc = upload_adapter(e);
    if (!rc) {
        c = (carve){0};
        layout_acts(e, &c);
        e->act_bytes = c.off;
        e->act_arena = be_alloc(be, e->act_bytes, "activations");
        c = (carve){.base = e->act_arena};
        if (e->act_arena) layout_acts(e, &c);
        plan_workspace(e, true);
        rc = be_sync(be);
    }
    if (!rc) rc = stash_alloc_host(e, &e->resid, "offloaded activations (each layer's input)");
    if (!rc) rc = stash_alloc_host(e, &e->kept_attn, "offloaded activations (each layer's attention output)");
    if (rc) {
        engine_free(e);
        return ds_fail_context(rc, "setting up the model on %s: ", be_name(be));
    }
    *out = e;
    return DS_OK;
}

int engine_measure(engine *e, backend *be, const llama_model *m, const engine_opts *o, engine_memory *out)
{
    int rc = engine_init(e, be, m, o);
    if (!rc) rc = plan_adapter(e);
    if (rc) return rc;
    carve c = {0};
    layout_weights(e, &c);
    e->w_bytes = c.off;
    c = (carve){0};
    layout_acts(e, &c);
    e->act_bytes = c.off;
    plan_workspace(e, false);
    *out = engine_memory_use(e);
    return DS_OK;
}

void engine_free(engine *e)
{
    if (!e) return;
    be_free(e->be, e->w_arena);
    be_free(e->be, e->a_arena);
    be_free(e->be, e->act_arena);
    stash_free(e, &e->resid);
    stash_free(e, &e->kept_attn);
    stash_free(e, &e->kept_proj);
    if (e->cfg.ds.on) deepseek_free(e);
    free(e->layers);
    free(e->sets);
    free(e->views);
    free(e);
}

engine_memory engine_memory_use(const engine *e)
{
    engine_memory m = {e->w_bytes, e->P ? adapter_bytes(e) : 0, e->act_bytes, e->ws_bytes,
                        stash_host_bytes(e, &e->resid) + stash_host_bytes(e, &e->kept_attn)};
    return m;
}

size_t engine_memory_total(const engine_memory *m) { return m->weights + m->adapter + m->activations + m->workspace; }

int engine_set_forbidden(engine *e, const int32_t *ids, int n)
{
    int V = e->cfg.vocab_size;
    e->has_forbidden = n > 0;
    if (!n) return DS_OK;
    uint8_t *mask = ds_calloc((size_t)V, 1, "the forbidden tokens' mask");
    if (!mask) return DS_ENOMEM;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V) {
            free(mask);
            return ds_fail(DS_ECONFIG, "forbidden token id %d is outside the vocabulary (0..%d)", ids[i], V - 1);
        }
        mask[ids[i]] = 1;
    }
    be_upload(e->be, e->forbidden, mask, (size_t)V);
    free(mask);
    return be_sync(e->be);
}

/* ------------------------------------------------------- parameters, optimizer */

static int need_adapter(const engine *e, bool training)
{
    if (!e->P) return ds_fail(DS_EINTERNAL, "engine has no adapter");
    if (training && !e->grads) return ds_fail(DS_EINTERNAL, "engine was not set up for training");
    return DS_OK;
}

int engine_get_params(engine *e, float *host)
{
    int rc = need_adapter(e, false);
    if (rc) return rc;
    be_download(e->be, host, e->params, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_set_params(engine *e, const float *host)
{
    int rc = need_adapter(e, false);
    if (rc) return rc;
    be_upload(e->be, e->params, host, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_get_grads(engine *e, float *host)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    be_download(e->be, host, e->grads, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_grads_buffer(engine *e, float **grads, size_t *n)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    *grads = e->grads;
    *n = e->P;
    return be_sync(e->be);
}

int engine_get_adam(engine *e, float *m, float *v)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    be_download(e->be, m, e->adam_m, e->P * sizeof(float));
    be_download(e->be, v, e->adam_v, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_set_adam(engine *e, const float *m, const float *v)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    be_upload(e->be, e->adam_m, m, e->P * sizeof(float));
    be_upload(e->be, e->adam_v, v, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_zero_grads(engine *e)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    be_zero(e->be, e->grads, e->P * sizeof(float));
    return be_sync(e->be);
}

int engine_grad_norm(engine *e, double *norm)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    float s = 0;
    be_zero(e->be, e->sumsq, sizeof(float));
    op_sumsq(e->be, e->sumsq, e->grads, e->P);
    be_download(e->be, &s, e->sumsq, sizeof(float));
    rc = be_sync(e->be);
    *norm = rc ? 0 : sqrt((double)s);
    return rc;
}

int engine_adamw(engine *e, const adamw_args *a)
{
    int rc = need_adapter(e, true);
    if (rc) return rc;
    op_adamw(e->be, e->params, e->grads, e->adam_m, e->adam_v, e->P, a);
    return be_sync(e->be);
}
