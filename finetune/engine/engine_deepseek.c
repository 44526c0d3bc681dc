/* finetune/engine/engine_deepseek.c - the DeepSeek-V2/V3 decoder layer's
 * memory (weights, intermediates, backward scratch), its LoRA-aware linears
 * and the layer itself, llama2.c's order with MLA and the MoE MLP:
 *   h1 = RMSNorm(x);  x_mid = x + MLA(h1)
 *   h2 = RMSNorm(x_mid);  out = x_mid + (dense MLP or shared + routed experts)(h2) */
#include "engine_deepseek.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

moe_router deepseek_router(const model_config *c)
{
    const deepseek_config *d = &c->ds;
    moe_router r = {.E = d->n_routed, .K = d->top_k, .method = d->topk_method, .n_group = d->n_group,
                    .topk_group = d->topk_group, .sigmoid = d->sigmoid, .norm = d->norm_topk_prob,
                    .scaling = (float)d->routed_scaling_factor};
    return r;
}

int deepseek_head_width(const model_config *c, be_kind kind)
{
    const int QK = c->ds.qk_nope_dim + c->ds.qk_rope_dim, w = QK > c->ds.v_head_dim ? QK : c->ds.v_head_dim;
    static const int widths[] = {16, 32, 64, 128, 192};   /* the CUDA attention kernels' */
    if (kind != BE_CUDA) return w;
    for (int i = 0; i < (int)(sizeof widths / sizeof widths[0]); i++)
        if (w <= widths[i]) return widths[i];
    return w;   /* wider than any: engine_create names it */
}

/* n elements of `size` bytes on the host, zeroed; NULL (with the error set) if out of memory. */
static void *host_array(size_t n, size_t size) { return ds_calloc(n ? n : 1, size, "the MoE routing record"); }

int deepseek_init(engine *e)
{
    const deepseek_config *d = &e->cfg.ds;
    const int L = e->cfg.num_layers, S = e->nslots;
    const size_t N = (size_t)e->Nmax, NK = N * d->top_k, NE = N * d->n_routed;
    for (int l = 0; l < L; l++) {
        e->layers[l].dsl = ds_calloc((size_t)S, sizeof(frozen_linear), "engine layers");
        if (!e->layers[l].dsl) return DS_ENOMEM;
    }
    for (int s = 0; s < e->nsets; s++) {
        deepseek_acts *a = ds_calloc(1, sizeof *a, "engine layers");
        e->sets[s].ds = a;
        if (!a) return DS_ENOMEM;
        a->lora_u = ds_calloc((size_t)S, sizeof *a->lora_u, "engine layers");
        a->start = host_array((size_t)d->n_routed + 1, sizeof(int32_t));
        a->row_token = host_array(NK, sizeof(int32_t));
        a->row_k = host_array(NK, sizeof(int32_t));
        a->tok_row = host_array(NK, sizeof(int32_t));
        if (!a->lora_u || !a->start || !a->row_token || !a->row_k || !a->tok_row) return DS_ENOMEM;
    }
    e->route_idx = host_array((size_t)L * NK, sizeof(int32_t));
    e->route_w = host_array((size_t)L * NK, sizeof(float));
    e->route_logits = host_array((size_t)L * NE, sizeof(float));
    e->route_scores = host_array((size_t)L * NE, sizeof(float));
    e->route_dropped = host_array((size_t)L, sizeof(long long));
    e->dsg = ds_calloc(1, sizeof *e->dsg, "engine layers");
    if (!e->route_idx || !e->route_w || !e->route_logits || !e->route_scores || !e->route_dropped || !e->dsg)
        return DS_ENOMEM;
    if (e->opts.training) {
        deepseek_grads *g = e->dsg;
        g->h_dprob = host_array(NE, sizeof(float));
        if (e->be->kind != BE_CPU) {   /* on the CPU they are dw and dlogits themselves (deepseek_layout_grads) */
            g->h_dw = host_array(NK, sizeof(float));
            g->h_dlogits = host_array(NE, sizeof(float));
        }
        if (!g->h_dprob || (e->be->kind != BE_CPU && (!g->h_dw || !g->h_dlogits))) return DS_ENOMEM;
    }
    return DS_OK;
}

void deepseek_free(engine *e)
{
    for (int l = 0; e->layers && l < e->cfg.num_layers; l++) {
        free(e->layers[l].dsl);
        free(e->layers[l].router_bias_host);
    }
    for (int s = 0; e->sets && s < e->nsets; s++) {
        deepseek_acts *a = e->sets[s].ds;
        if (!a) continue;
        free(a->lora_u);
        free(a->start);
        free(a->row_token);
        free(a->row_k);
        free(a->tok_row);
        free(a);
    }
    free(e->route_idx);
    free(e->route_w);
    free(e->route_logits);
    free(e->route_scores);
    free(e->route_dropped);
    if (e->dsg) {
        free(e->dsg->h_dprob);
        if (e->be->kind != BE_CPU) {
            free(e->dsg->h_dw);
            free(e->dsg->h_dlogits);
        }
    }
    free(e->dsg);
}

void ds_to_backend(engine *e, void *dev, const void *host, size_t bytes)
{
    if (dev != host) be_upload(e->be, dev, host, bytes);
}

void ds_to_host(engine *e, void *host, const void *dev, size_t bytes)
{
    if (dev != host) be_download(e->be, host, dev, bytes);
}

/* A 16/32-bit vector of the file as fp32 on the backend (the router's). */
static float *take_f32(engine *e, carve *c, const st_tensor *t, size_t n)
{
    float *dst = engine_take(c, n * sizeof(float));
    if (!c->base) return dst;
    float *tmp = ds_malloc(n * sizeof(float), "the router weights");
    if (!tmp) {
        be_fail(e->be, DS_ENOMEM, "out of memory");
        return dst;
    }
    st_to_f32(t, tmp);
    be_upload(e->be, dst, tmp, n * sizeof(float));
    free(tmp);
    return dst;
}

void deepseek_layout_weights(engine *e, carve *c, int l)
{
    const model_config *cfg = &e->cfg;
    const deepseek_config *d = &cfg->ds;
    const model_layer *ml = &e->model->layers[l];
    layer_weights *lw = &e->layers[l];
    backend *be = e->be;
    lw->attn.Hkv = lw->attn.H;
    lw->attn.scale = d->softmax_scale;
    if (d->q_lora_rank) {
        lw->q_a_norm = engine_take(c, (size_t)d->q_lora_rank * be->act_size);
        if (c->base) engine_upload_tensor(be, lw->q_a_norm, ml->q_a_norm);
    }
    lw->kv_a_norm = engine_take(c, (size_t)d->kv_lora_rank * be->act_size);
    if (c->base) engine_upload_tensor(be, lw->kv_a_norm, ml->kv_a_norm);
    if (ml->router) lw->router = take_f32(e, c, ml->router, (size_t)d->n_routed * cfg->hidden_size);
    if (ml->router_bias) {
        lw->router_bias = take_f32(e, c, ml->router_bias, (size_t)d->n_routed);
        if (c->base && !lw->router_bias_host) {   /* the choice is made on the host */
            lw->router_bias_host = ds_malloc((size_t)d->n_routed * sizeof(float), "the router bias");
            if (lw->router_bias_host) st_to_f32(ml->router_bias, lw->router_bias_host);
            else be_fail(be, DS_ENOMEM, "out of memory");
        }
    }
    for (int s = 0; s < e->nslots; s++)
        if (ml->dsl[s].out) engine_layout_linear(e, c, &lw->dsl[s], &ml->dsl[s]);
}

/* The adapter's rank where module (any layer, slot s) is adapted, else 0. */
static int slot_rank(const engine *e, int s)
{
    for (int l = 0; e->views && l < e->cfg.num_layers; l++)
        if (e->views[l * e->nslots + s].r) return e->views[l * e->nslots + s].r;
    return 0;
}

void deepseek_layout_acts(engine *e, carve *c, layer_acts *a)
{
    const model_config *cfg = &e->cfg;
    const deepseek_config *d = &cfg->ds;
    deepseek_acts *s = a->ds;
    size_t N = (size_t)e->Nmax, A = e->be->act_size, H = (size_t)cfg->num_heads, QK = (size_t)cfg->head_dim;
    size_t R = N * d->top_k, C = (size_t)cfg->hidden_size, I = (size_t)d->moe_intermediate, D = (size_t)e->attn_D;
    const bool cpu = e->be->kind == BE_CPU;
    if (d->q_lora_rank) {
        s->qa = engine_take(c, N * d->q_lora_rank * A);
        s->qa_n = engine_take(c, N * d->q_lora_rank * A);
        s->rstd_qa = engine_take(c, N * sizeof(float));
    }
    s->q = engine_take(c, N * H * QK * A);
    s->kva = engine_take(c, N * (d->kv_lora_rank + d->qk_rope_dim) * A);
    s->ckv_raw = engine_take(c, N * d->kv_lora_rank * A);
    s->ckv = engine_take(c, N * d->kv_lora_rank * A);
    s->rstd_kv = engine_take(c, N * sizeof(float));
    s->kvb = engine_take(c, N * H * (d->qk_nope_dim + d->v_head_dim) * A);
    s->Q = engine_take(c, N * H * D * A);
    s->K = engine_take(c, N * H * D * A);
    s->V = engine_take(c, N * H * D * A);
    s->O = engine_take(c, N * H * D * A);
    s->lse = engine_take(c, N * H * sizeof(float));
    s->o_in = engine_take(c, N * H * d->v_head_dim * A);
    s->dev_row_token = cpu ? s->row_token : engine_take(c, R * sizeof(int32_t));
    s->dev_row_k = cpu ? s->row_k : engine_take(c, R * sizeof(int32_t));
    s->dev_tok_row = cpu ? s->tok_row : engine_take(c, R * sizeof(int32_t));
    s->dev_w = engine_take(c, R * sizeof(float));
    s->xe = engine_take(c, R * C * A);
    s->ye = engine_take(c, R * C * A);
    s->ge = engine_take(c, R * I * A);
    s->ue = engine_take(c, R * I * A);
    s->me = engine_take(c, R * I * A);
    for (int t = 0; t < e->nslots; t++) {
        int r = slot_rank(e, t);
        size_t rows = t >= DSL_EXPERTS + 3 ? 0 : t >= DSL_EXPERTS ? R : N;   /* experts share their kind's */
        s->lora_u[t] = r && rows ? engine_take(c, rows * r * sizeof(float)) : NULL;
    }
    for (int t = DSL_EXPERTS + 3; t < e->nslots; t++) s->lora_u[t] = s->lora_u[DSL_EXPERTS + (t - DSL_EXPERTS) % 3];
}

void deepseek_layout_routes(engine *e, carve *c)
{
    const model_config *cfg = &e->cfg;
    size_t N = (size_t)e->Nmax, E = (size_t)cfg->ds.n_routed, C = (size_t)cfg->hidden_size;
    e->router_logits = engine_take(c, N * E * sizeof(float));
    e->router_xf = engine_take(c, N * C * sizeof(float));
}

void deepseek_layout_grads(engine *e, carve *c)
{
    const model_config *cfg = &e->cfg;
    const deepseek_config *d = &cfg->ds;
    deepseek_grads *g = e->dsg;
    size_t N = (size_t)e->Nmax, A = e->be->act_size, H = (size_t)cfg->num_heads, QK = (size_t)cfg->head_dim;
    size_t R = N * d->top_k, E = (size_t)d->n_routed, C = (size_t)cfg->hidden_size, I = (size_t)d->moe_intermediate;
    size_t D = (size_t)e->attn_D;
    g->dq = engine_take(c, N * H * QK * A);
    g->dQ = engine_take(c, N * H * D * A);
    g->dK = engine_take(c, N * H * D * A);
    g->dV = engine_take(c, N * H * D * A);
    g->dO = engine_take(c, N * H * D * A);
    g->do_in = engine_take(c, N * H * d->v_head_dim * A);
    g->dkvb = engine_take(c, N * H * (d->qk_nope_dim + d->v_head_dim) * A);
    g->dkva = engine_take(c, N * (d->kv_lora_rank + d->qk_rope_dim) * A);
    g->dckv = engine_take(c, N * d->kv_lora_rank * A);
    g->dckv_raw = engine_take(c, N * d->kv_lora_rank * A);
    if (d->q_lora_rank) {
        g->dqa = engine_take(c, N * d->q_lora_rank * A);
        g->dqa_n = engine_take(c, N * d->q_lora_rank * A);
    }
    g->dxe = engine_take(c, R * C * A);
    g->dye = engine_take(c, R * C * A);
    g->dge = engine_take(c, R * I * A);
    g->due = engine_take(c, R * I * A);
    g->dme = engine_take(c, R * I * A);
    g->dw = engine_take(c, R * sizeof(float));
    g->dlogits = engine_take(c, N * E * sizeof(float));
    if (e->be->kind == BE_CPU) g->h_dw = g->dw, g->h_dlogits = g->dlogits;
}

void deepseek_workspace(const engine *e, size_t *biggest, size_t *lora, size_t *widest)
{
    const model_config *cfg = &e->cfg;
    size_t N = (size_t)e->Nmax * cfg->ds.top_k;   /* expert calls run on up to N*K rows */
    for (int l = 0; l < cfg->num_layers; l++)
        for (int s = 0; s < e->nslots; s++) {
            int out, in;
            if (!deepseek_linear(cfg, l, s, NULL, 0, NULL, &out, &in)) continue;
            if ((size_t)out * in > *biggest) *biggest = (size_t)out * in;
            if ((size_t)out > *widest) *widest = (size_t)out;
            if ((size_t)in > *widest) *widest = (size_t)in;
            const lora_view *v = e->views ? &e->views[l * e->nslots + s] : NULL;
            if (v && v->r && lora_workspace_bytes(v, (int)N, e->be->act_size) > *lora)
                *lora = lora_workspace_bytes(v, (int)N, e->be->act_size);
        }
    /* the CPU products' transposed operands run over N*K rows of the experts */
    *widest = *widest * (size_t)cfg->ds.top_k;
    const size_t batch = (size_t)cfg->ds.moe_intermediate * cfg->hidden_size * (size_t)deepseek_expert_batch(e);
    if (cfg->ds.n_routed && batch > *biggest) *biggest = batch;
}

int deepseek_expert_batch(const engine *e)
{
    const model_config *c = &e->cfg;
    size_t one = (size_t)c->ds.moe_intermediate * c->hidden_size * e->be->act_size;
    size_t budget = e->opts.expert_batch_bytes ? e->opts.expert_batch_bytes : (256u << 20);
    size_t fit = one ? budget / one : 1;
    if (fit > (size_t)c->ds.n_routed) fit = (size_t)c->ds.n_routed;
    return fit < 1 ? 1 : (int)fit;
}

/* ------------------------------------------------------------------ linears */

static const lora_view *slot_adapter(const engine *e, int l, int s)
{
    if (!e->views || !e->last.lora) return NULL;
    const lora_view *v = &e->views[l * e->nslots + s];
    return v->A ? v : NULL;
}

void ds_lora_fwd(engine *e, int l, int s, void *y, const void *x, int rows, float *u)
{
    const lora_view *v = slot_adapter(e, l, s);
    if (v && rows) {
        lora_ctx ctx = {.seed = e->opts.seed, .step = e->last.micro_step, .training = e->last.training};
        op_lora_fwd(e->be, y, u, x, v, rows, &ctx);
    }
}

void ds_lora_bwd(engine *e, int l, int s, void *dx, const void *dy, const void *x, int rows, const float *u)
{
    const lora_view *v = slot_adapter(e, l, s);
    if (v && rows) {
        lora_ctx ctx = {.seed = e->opts.seed, .step = e->last.micro_step, .training = e->last.training};
        op_lora_bwd(e->be, dx, dy, x, u, v, rows, &ctx);
    }
}

void ds_linear_fwd(engine *e, int l, int s, void *y, const void *x, int rows, float beta, float *u)
{
    op_linear_fwd(e->be, y, x, &e->layers[l].dsl[s], rows, beta);
    ds_lora_fwd(e, l, s, y, x, rows, u);
}

void ds_linear_bwd(engine *e, int l, int s, void *dx, const void *dy, const void *x, int rows, float beta,
                   const float *u)
{
    op_linear_bwd(e->be, dx, dy, &e->layers[l].dsl[s], rows, beta);
    ds_lora_bwd(e, l, s, dx, dy, x, rows, u);
}

/* -------------------------------------------------------------------- layer */

void deepseek_layer_forward(engine *e, int l, layer_acts *a, const mla_cache *cache)
{
    const model_config *c = &e->cfg;
    const int N = e->N, C = c->hidden_size;
    const layer_weights *w = &e->layers[l];
    op_rmsnorm_fwd(e->be, a->h1, a->rstd1, e->resid.dev[l], w->attn_norm, N, C, c->rms_norm_eps);
    be_copy(e->be, a->x_mid, e->resid.dev[l], (size_t)N * C * e->be->act_size);
    mla_forward(e, l, a, cache);                                    /* x_mid = x + MLA(h1) */
    op_rmsnorm_fwd(e->be, a->h2, a->rstd2, a->x_mid, w->mlp_norm, N, C, c->rms_norm_eps);
    be_copy(e->be, e->resid.dev[l + 1], a->x_mid, (size_t)N * C * e->be->act_size);
    moe_mlp_forward(e, l, a, e->resid.dev[l + 1]);                      /* out = x_mid + MLP(h2) */
}

void deepseek_layer_backward(engine *e, int l, layer_acts *a)
{
    const model_config *c = &e->cfg;
    const int N = e->N, C = c->hidden_size;
    const layer_weights *w = &e->layers[l];
    moe_mlp_backward(e, l, a);                                      /* e->dh = dL/d h2 */
    op_rmsnorm_bwd(e->be, e->dres, e->dh, a->x_mid, w->mlp_norm, a->rstd2, N, C);   /* dres = dL/d x_mid */
    mla_backward(e, l, a);                                          /* e->dh = dL/d h1 */
    op_rmsnorm_bwd(e->be, e->dres, e->dh, e->resid.dev[l], w->attn_norm, a->rstd1, N, C); /* dres = dL/dx */
}
