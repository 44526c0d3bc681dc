/* finetune/engine/engine_moe.c - the MLP half of a DeepSeek layer, forward and
 * backward: the dense SwiGLU MLP of the first first_k_dense_replace layers,
 * and in MoE layers, as transformers' DeepseekV2Moe / DeepseekV3MoE compute it,
 *   out = x_mid + shared_experts(h2) + sum over the chosen experts e of w_e · expert_e(h2)
 * The routed tokens are grouped by expert (moe_group), so that each
 * expert's products run once over all its tokens. The choice of experts has
 * no gradient; the weights w do, back through the router's scores to h2.
 * The choice and the grouping are made on the host from the router's logits
 * (on the GPU they come down, and the groups go up: one wait per layer and
 * pass); the products and the token movement run on the backend. */
#include "engine_deepseek.h"

#include <string.h>

/* The dense MLP or the shared experts: out += down(silu(gate(h)) * up(h)), slots g0..g0+2. */
static void mlp_forward(engine *e, int l, layer_acts *a, int g0, int width, void *out)
{
    float **u = a->ds->lora_u;
    ds_linear_fwd(e, l, g0, a->g, a->h2, e->N, 0.0f, u[g0]);
    ds_linear_fwd(e, l, g0 + 1, a->u, a->h2, e->N, 0.0f, u[g0 + 1]);
    op_swiglu_fwd(e->be, a->m, a->g, a->u, (size_t)e->N * width);
    ds_linear_fwd(e, l, g0 + 2, out, a->m, e->N, 1.0f, u[g0 + 2]);
}

/* Its backward: e->dh (+)= dL/dh from dL/d out = e->dres (beta: 0 overwrites). */
static void mlp_backward(engine *e, int l, layer_acts *a, int g0, int width, float beta)
{
    float **u = a->ds->lora_u;
    ds_linear_bwd(e, l, g0 + 2, e->dm, e->dres, a->m, e->N, 0.0f, u[g0 + 2]);
    op_swiglu_bwd(e->be, e->dg, e->du, e->dm, a->g, a->u, (size_t)e->N * width);
    ds_linear_bwd(e, l, g0, e->dh, e->dg, a->h2, e->N, beta, u[g0]);
    ds_linear_bwd(e, l, g0 + 1, e->dh, e->du, a->h2, e->N, 1.0f, u[g0 + 1]);
}

/* Row `row` of a grouped (R, width) act buffer, and of a LoRA intermediate of rank r. */
static void *at(const engine *e, void *p, int row, int width) { return be_act_at(e->be, p, (size_t)row * width); }
static float *u_at(float *u, int row, int r) { return u ? u + (size_t)row * r : NULL; }

static int slot_r(const engine *e, int l, int s) { return e->views ? e->views[l * e->nslots + s].r : 0; }

enum { EXPERT_GATE, EXPERT_UP, EXPERT_DOWN };

/* Projection p of the routed experts ex[0..count) over their grouped rows,
 * each with its adapter: forward out = in·Wᵀ, backward dx (+)= dy·W (beta).
 * Their weights are dequantized together, deepseek_expert_batch of them at a
 * time (linear_weights), so a layer costs a few dequantization launches, not
 * one per expert and projection.
 * Buffers by projection, forward: gate xe -> ge, up xe -> ue, down me -> ye;
 * backward: down dye -> dme, gate dge -> dxe, up due -> dxe. */
static void experts_linear(engine *e, int l, layer_acts *a, const int *ex, int count, int p, bool bwd, float beta)
{
    const int C = e->cfg.hidden_size, I = e->cfg.ds.moe_intermediate, nb = deepseek_expert_batch(e);
    deepseek_acts *s = a->ds;
    deepseek_grads *g = e->dsg;
    const int in_w = p == EXPERT_DOWN ? I : C, out_w = p == EXPERT_DOWN ? C : I;
    void *xin = p == EXPERT_DOWN ? s->me : s->xe;
    void *y = p == EXPERT_GATE ? s->ge : p == EXPERT_UP ? s->ue : s->ye;                        /* forward */
    void *dy = p == EXPERT_GATE ? g->dge : p == EXPERT_UP ? g->due : g->dye, *dx = p == EXPERT_DOWN ? g->dme : g->dxe;
    /* Each expert's rows are its own, so the products may run side by side on
     * the GPU: one over a few hundred rows fills a fraction of it. Adapters
     * share the LoRA workspace, so experts with adapters run in order. */
    bool side = true;
    for (int i = 0; i < count && side; i++) side = !slot_r(e, l, DSL_EXPERTS + 3 * ex[i] + p);
    for (int b0 = 0; b0 < count; b0 += nb) {
        const int n = count - b0 < nb ? count - b0 : nb;
        const frozen_linear *f[MOE_MAX_EXPERTS];
        const void *W[MOE_MAX_EXPERTS];
        for (int i = 0; i < n; i++) f[i] = &e->layers[l].dsl[DSL_EXPERTS + 3 * ex[b0 + i] + p];
        if (!linear_weights(e->be, f, n, W)) return;
        if (side) be_fork(e->be, n < BE_MAX_STREAMS ? n : BE_MAX_STREAMS);
        for (int i = 0; i < n; i++) {
            const int x = ex[b0 + i], r0 = s->start[x], rows = s->start[x + 1] - r0, slot = DSL_EXPERTS + 3 * x + p;
            float *u = u_at(s->lora_u[slot], r0, slot_r(e, l, slot));
            if (side) be_use_stream(e->be, i);
            if (!bwd) {
                be_matmul_nt(e->be, at(e, y, r0, out_w), at(e, xin, r0, in_w), W[i], rows, out_w, in_w, 0.0f);
                ds_lora_fwd(e, l, slot, at(e, y, r0, out_w), at(e, xin, r0, in_w), rows, u);
            } else {
                be_matmul_nn(e->be, at(e, dx, r0, in_w), at(e, dy, r0, out_w), W[i], rows, out_w, in_w, beta);
                ds_lora_bwd(e, l, slot, at(e, dx, r0, in_w), at(e, dy, r0, out_w), at(e, xin, r0, in_w), rows, u);
            }
        }
        if (side) be_join(e->be);   /* before the next batch's weights overwrite these */
    }
}

/* The routed experts that got rows, in order: ex[0..return). */
static int experts_with_rows(const deepseek_acts *s, int E, int *ex)
{
    int n = 0;
    for (int x = 0; x < E; x++)
        if (s->start[x + 1] > s->start[x]) ex[n++] = x;
    return n;
}

/* Layer l's routing in the engine's per-layer record: (N, K) choices and weights, (N, E) logits and scores. */
typedef struct {
    int32_t *idx;
    float *w, *logits, *scores;
} routing;

static routing routing_of(const engine *e, int l)
{
    size_t NK = (size_t)e->Nmax * e->cfg.ds.top_k, NE = (size_t)e->Nmax * e->cfg.ds.n_routed;
    routing r = {e->route_idx + l * NK, e->route_w + l * NK, e->route_logits + l * NE, e->route_scores + l * NE};
    return r;
}

/* ceil(factor * N*K / E), or 0 without a capacity factor. */
static int capacity(const engine *e)
{
    const deepseek_config *d = &e->cfg.ds;
    if (!(e->moe_capacity > 0)) return 0;
    double slots = (double)e->N * d->top_k / d->n_routed * e->moe_capacity;
    int cap = (int)slots;
    return cap < slots ? cap + 1 : cap;
}

void moe_mlp_forward(engine *e, int l, layer_acts *a, void *out)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const deepseek_config *d = &c->ds;
    const layer_weights *w = &e->layers[l];
    deepseek_acts *s = a->ds;
    if (!deepseek_is_moe(c, l)) {
        mlp_forward(e, l, a, DSL_GATE, c->intermediate_size, out);
        return;
    }
    const int N = e->N, C = c->hidden_size, I = d->moe_intermediate, K = d->top_k;
    if (d->n_shared) mlp_forward(e, l, a, DSL_SH_GATE, d->n_shared * I, out);

    const int E = d->n_routed;
    moe_router r = deepseek_router(c);
    routing rt = routing_of(e, l);
    op_moe_logits(be, e->router_logits, e->router_xf, a->h2, w->router, N, C, E);
    ds_to_host(e, rt.logits, e->router_logits, (size_t)N * E * sizeof(float));
    if (be->err) return;
    moe_route_select(rt.scores, rt.idx, rt.w, rt.logits, w->router_bias_host, N, &r);
    e->route_dropped[l] = moe_group(s->start, s->row_token, s->row_k, s->tok_row, rt.idx, rt.w, N, K, E, capacity(e));
    const int R = s->start[E];   /* the routed rows kept */
    ds_to_backend(e, s->dev_row_token, s->row_token, (size_t)R * sizeof(int32_t));
    ds_to_backend(e, s->dev_row_k, s->row_k, (size_t)R * sizeof(int32_t));
    ds_to_backend(e, s->dev_tok_row, s->tok_row, (size_t)N * K * sizeof(int32_t));
    ds_to_backend(e, s->dev_w, rt.w, (size_t)N * K * sizeof(float));
    op_moe_gather(be, s->xe, a->h2, s->dev_row_token, R, C);
    /* gate and up of every expert with rows, one SwiGLU over all rows, then down */
    int ex[MOE_MAX_EXPERTS];
    const int nx = experts_with_rows(s, E, ex);
    experts_linear(e, l, a, ex, nx, EXPERT_GATE, false, 0.0f);
    experts_linear(e, l, a, ex, nx, EXPERT_UP, false, 0.0f);
    op_swiglu_fwd(be, s->me, s->ge, s->ue, (size_t)R * I);
    experts_linear(e, l, a, ex, nx, EXPERT_DOWN, false, 0.0f);
    op_moe_scatter(be, out, s->ye, s->dev_w, s->dev_tok_row, N, K, C);
}

void moe_mlp_backward(engine *e, int l, layer_acts *a)
{
    backend *be = e->be;
    const model_config *c = &e->cfg;
    const deepseek_config *d = &c->ds;
    const layer_weights *w = &e->layers[l];
    deepseek_acts *s = a->ds;
    deepseek_grads *g = e->dsg;
    if (!deepseek_is_moe(c, l)) {
        mlp_backward(e, l, a, DSL_GATE, c->intermediate_size, 0.0f);
        return;
    }
    const int N = e->N, C = c->hidden_size, I = d->moe_intermediate, K = d->top_k, E = d->n_routed, R = s->start[E];
    routing rt = routing_of(e, l);

    /* the routed experts, grouped: dL/d their outputs and dL/d the weights (0 for dropped slots) */
    be_zero(be, g->dw, sizeof(float) * (size_t)N * K);
    op_moe_scatter_bwd(be, g->dye, g->dw, e->dres, s->ye, s->dev_w, s->dev_row_token, s->dev_row_k, R, K, C);
    int ex[MOE_MAX_EXPERTS];
    const int nx = experts_with_rows(s, E, ex);
    experts_linear(e, l, a, ex, nx, EXPERT_DOWN, true, 0.0f);
    op_swiglu_bwd(be, g->dge, g->due, g->dme, s->ge, s->ue, (size_t)R * I);
    experts_linear(e, l, a, ex, nx, EXPERT_GATE, true, 0.0f);   /* every expert's gate part before any up part adds */
    experts_linear(e, l, a, ex, nx, EXPERT_UP, true, 1.0f);
    /* the router, on the host: dL/d weights -> dL/d logits; then dL/d h2 on the backend (its weight is frozen) */
    moe_router r = deepseek_router(c);
    float *dprob = NULL;
    if (e->moe_aux_alpha > 0) {
        moe_seq_aux_loss(rt.scores, rt.idx, e->B, e->T, &r, e->moe_aux_alpha, g->h_dprob);
        dprob = g->h_dprob;
    }
    ds_to_host(e, g->h_dw, g->dw, (size_t)N * K * sizeof(float));
    if (be->err) return;
    moe_route_bwd(g->h_dlogits, g->h_dw, dprob, rt.scores, rt.idx, N, &r);
    ds_to_backend(e, g->dlogits, g->h_dlogits, (size_t)N * E * sizeof(float));
    op_moe_route_dx(be, e->dh, e->router_xf, g->dlogits, w->router, N, C, E, 0.0f);
    op_moe_gather_bwd(be, e->dh, g->dxe, s->dev_tok_row, N, K, C);
    if (d->n_shared) mlp_backward(e, l, a, DSL_SH_GATE, d->n_shared * I, 1.0f);
}
