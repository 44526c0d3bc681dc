/* Finite-difference checks of the DeepSeek ops' backwards (MLA heads, the
 * MoE router with each scoring and weighting, the expert scatter, the
 * balance loss) on small random shapes, as tests/test_gradcheck.c does: L =
 * sum(w * f(x)) for a random w. Then the whole DeepSeek layer: the engine's
 * LoRA gradients with the balance loss and a capacity factor on, against
 * central differences of the loss it reports. */
#include "testutil.h"

#include "adapters/lora.h"
#include "backend/backend.h"
#include "core/files.h"
#include "core/status.h"
#include "finetune/engine/engine.h"
#include "finetune/engine/ops/ops_moe.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-2f
#define TOL 2e-2

static backend *cpu(void)
{
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    return be;
}

/* The buffers of one check, zeroed, all freed by release() at its end. */
static struct {
    void *p[32];
    int n;
} g_bufs;

static void *buf(size_t bytes)
{
    cr_assert_lt(g_bufs.n, 32);
    void *p = calloc(1, bytes ? bytes : 1);
    cr_assert_not_null(p);
    return g_bufs.p[g_bufs.n++] = p;
}

static void release(void)
{
    while (g_bufs.n > 0) free(g_bufs.p[--g_bufs.n]);
}

static float *rnd(size_t n, uint64_t seed, float scale)
{
    float *x = buf(sizeof(float) * n);
    tu_fill_uniform(x, n, seed, scale);
    return x;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);
static void numeric_grad(float *x, size_t n, loss_fn f, void *ctx, float *g, float eps)
{
    for (size_t i = 0; i < n; i++) {
        float old = x[i];
        x[i] = old + eps;
        double lp = f(ctx);
        x[i] = old - eps;
        double lm = f(ctx);
        x[i] = old;
        g[i] = (float)((lp - lm) / (2.0 * eps));
    }
}

static void expect_close(const float *analytic, const float *numeric, size_t n, const char *what)
{
    double err = tu_rel_err(analytic, numeric, n);
    cr_expect(err < TOL, "%s: analytic vs finite-difference gradient: relative error %.3e", what, err);
}

/* ---- MLA heads: L = w_Q·Q + w_K·K + w_V·V over q, kva, kvb ---- */
typedef struct {
    backend *be;
    float *q, *kva, *kvb, *Q, *K, *V, *gQ, *gK, *gV;
    int32_t pos[4];
    int N;
    mla_dims d;
    rope_table rt;
} mla_ctx;

static double mla_loss(void *p)
{
    mla_ctx *c = p;
    op_mla_heads(c->be, c->Q, c->K, c->V, c->q, c->kva, c->kvb, c->pos, c->N, &c->d, &c->rt);
    size_t n = (size_t)c->N * c->d.H * c->d.D;
    return dot(c->Q, c->gQ, n) + dot(c->K, c->gK, n) + dot(c->V, c->gV, n);
}

static void check_mla(bool interleave)
{
    mla_ctx c = {.be = cpu(), .N = 4, .pos = {0, 3, 7, 12},
                 .d = {.H = 3, .nope = 5, .rope = 4, .v = 6, .kvr = 7, .D = 12, .interleave = interleave}};
    c.rt = (rope_table){.half = 2, .inv_freq = {1.0f, 0.1f}, .scale = 1.1f};
    const int QK = 9, H = 3, N = 4;   /* heads stored 12 wide: 3 zero columns past QK */
    size_t nq = (size_t)N * H * QK, na = (size_t)N * (7 + 4), nb = (size_t)N * H * (5 + 6), nh = (size_t)N * H * 12;
    c.q = rnd(nq, 1, 1), c.kva = rnd(na, 2, 1), c.kvb = rnd(nb, 3, 1);
    c.gQ = rnd(nh, 4, 1), c.gK = rnd(nh, 5, 1), c.gV = rnd(nh, 6, 1);
    c.Q = buf(sizeof(float) * nh), c.K = buf(sizeof(float) * nh), c.V = buf(sizeof(float) * nh);
    float *dq = buf(sizeof(float) * nq), *dkva = buf(sizeof(float) * na), *dkvb = buf(sizeof(float) * nb);
    float *num = buf(sizeof(float) * (nb > nq ? nb : nq));   /* the longest of q, kva, kvb */
    mla_loss(&c);
    op_mla_heads_bwd(c.be, dq, dkva, dkvb, c.gQ, c.gK, c.gV, c.pos, N, &c.d, &c.rt);
    numeric_grad(c.q, nq, mla_loss, &c, num, EPS);
    expect_close(dq, num, nq, "mla q");
    numeric_grad(c.kvb, nb, mla_loss, &c, num, EPS);
    expect_close(dkvb, num, nb, "mla kvb");
    numeric_grad(c.kva, na, mla_loss, &c, num, EPS);
    for (int n = 0; n < N; n++)   /* the latent's columns are not op_mla_heads' (the caller's) */
        for (int i = 0; i < 7; i++) num[n * 11 + i] = 0;
    expect_close(dkva, num, na, "mla k_pe");
    be_close(c.be);
    release();
}

Test(gradcheck_moe, mla_heads_interleaved) { check_mla(true); }
Test(gradcheck_moe, mla_heads_halves) { check_mla(false); }

/* ---- the router: L = g · w(x) (+ the balance loss), over x ---- */
typedef struct {
    backend *be;
    float *x, *xf, *W, *bias, *g, *logits, *scores, *w;
    int32_t *idx, *idx0;
    int N, C, B, T;
    moe_router r;
    float alpha;
} route_ctx;

static double route_loss(void *p)
{
    route_ctx *c = p;
    op_moe_logits(c->be, c->logits, c->xf, c->x, c->W, c->N, c->C, c->r.E);
    moe_route_select(c->scores, c->idx, c->w, c->logits, c->bias, c->N, &c->r);
    for (int i = 0; i < c->N * c->r.K; i++)
        cr_assert_eq(c->idx[i], c->idx0[i], "finite difference changed the routing: make EPS smaller");
    double aux = c->alpha > 0 ? c->alpha * moe_seq_aux_loss(c->scores, c->idx, c->B, c->T, &c->r, 0, NULL) : 0;
    return dot(c->w, c->g, (size_t)c->N * c->r.K) + aux;
}

static void check_router(moe_router r, bool bias, float alpha)
{
    route_ctx c = {.be = cpu(), .N = 6, .C = 5, .B = 2, .T = 3, .r = r, .alpha = alpha};
    size_t NE = (size_t)c.N * r.E, NK = (size_t)c.N * r.K;
    c.x = rnd((size_t)c.N * c.C, 11, 1), c.W = rnd((size_t)r.E * c.C, 12, 1), c.g = rnd(NK, 13, 1);
    c.bias = bias ? rnd((size_t)r.E, 14, 0.1f) : NULL;
    c.logits = buf(sizeof(float) * NE), c.scores = buf(sizeof(float) * NE), c.w = buf(sizeof(float) * NK);
    c.idx = buf(sizeof(int32_t) * NK), c.idx0 = buf(sizeof(int32_t) * NK), c.xf = buf(sizeof(float) * c.N * c.C);
    op_moe_logits(c.be, c.logits, c.xf, c.x, c.W, c.N, c.C, r.E);
    moe_route_select(c.scores, c.idx0, c.w, c.logits, c.bias, c.N, &c.r);
    float *dprob = alpha > 0 ? buf(sizeof(float) * NE) : NULL, *dz = buf(sizeof(float) * NE);
    if (dprob) moe_seq_aux_loss(c.scores, c.idx0, c.B, c.T, &r, alpha, dprob);
    moe_route_bwd(dz, c.g, dprob, c.scores, c.idx0, c.N, &r);
    float *dx = buf(sizeof(float) * (size_t)c.N * c.C), *num = buf(sizeof(float) * c.N * c.C);
    op_moe_route_dx(c.be, dx, c.xf, dz, c.W, c.N, c.C, r.E, 0.0f);
    numeric_grad(c.x, (size_t)c.N * c.C, route_loss, &c, num, 1e-3f);
    expect_close(dx, num, (size_t)c.N * c.C, "router");
    be_close(c.be);
    release();
}

Test(gradcheck_moe, router_softmax_greedy)
{
    check_router((moe_router){.E = 6, .K = 2, .method = TOPK_GREEDY, .n_group = 1, .topk_group = 1, .scaling = 1.5f},
                 false, 0);
}
Test(gradcheck_moe, router_softmax_grouped_with_balance_loss)
{
    check_router((moe_router){.E = 6, .K = 2, .method = TOPK_GROUP_LIMITED_GREEDY, .n_group = 3, .topk_group = 2,
                              .scaling = 2.0f}, false, 0.5f);
}
Test(gradcheck_moe, router_sigmoid_normalised_with_balance_loss)
{
    check_router((moe_router){.E = 8, .K = 3, .method = TOPK_NOAUX_TC, .n_group = 4, .topk_group = 2,
                              .sigmoid = true, .norm = true, .scaling = 2.5f}, true, 0.5f);
}
Test(gradcheck_moe, router_sigmoid_unnormalised)
{
    check_router((moe_router){.E = 8, .K = 2, .method = TOPK_NOAUX_TC, .n_group = 2, .topk_group = 1,
                              .sigmoid = true, .scaling = 1.0f}, true, 0);
}

/* Ties go to the lower index, as torch.topk on CPU and the repeated-argmax
 * reading of transformers' routing choose: equal logits pick experts 0..K-1;
 * a larger one later in the row still enters; among equal groups the first. */
Test(gradcheck_moe, router_ties_choose_lower_indices)
{
    moe_router r = {.E = 8, .K = 3, .method = TOPK_GREEDY, .n_group = 1, .topk_group = 1, .scaling = 1.0f};
    float logits[2 * 8] = {0}, scores[2 * 8], w[2 * 3];
    int32_t idx[2 * 3];
    logits[8 + 6] = 1.0f;   /* row 1: expert 6 above the rest */
    moe_route_select(scores, idx, w, logits, NULL, 2, &r);
    const int32_t want[6] = {0, 1, 2, 0, 1, 6};
    for (int i = 0; i < 6; i++) cr_expect_eq(idx[i], want[i], "slot %d: expert %d, expected %d", i, idx[i], want[i]);
    r.method = TOPK_GROUP_LIMITED_GREEDY, r.n_group = 4, r.topk_group = 1, r.K = 2;
    moe_route_select(scores, idx, w, logits, NULL, 1, &r);   /* four equal groups: group 0 (experts 0, 1) */
    cr_expect(idx[0] == 0 && idx[1] == 1, "grouped ties chose %d, %d", idx[0], idx[1]);
}

/* ---- the expert scatter: y += w · ye, over ye and w ---- */
typedef struct {
    backend *be;
    float *y, *ye, *w, *g;
    int32_t tok[6], kk[6], tok_row[6];
    int N, K, C, R;
} scatter_ctx;

static double scatter_loss(void *p)
{
    scatter_ctx *c = p;
    memset(c->y, 0, sizeof(float) * c->N * c->C);
    op_moe_scatter(c->be, c->y, c->ye, c->w, c->tok_row, c->N, c->K, c->C);
    return dot(c->y, c->g, (size_t)c->N * c->C);
}

Test(gradcheck_moe, expert_scatter)
{
    scatter_ctx c = {.be = cpu(), .N = 3, .K = 2, .C = 4, .R = 6, .tok = {0, 2, 1, 0, 1, 2}, .kk = {1, 0, 1, 0, 0, 1}};
    for (int r = 0; r < c.R; r++) c.tok_row[c.tok[r] * c.K + c.kk[r]] = r;
    c.y = buf(sizeof(float) * 12), c.ye = rnd(24, 21, 1), c.w = rnd(6, 22, 1), c.g = rnd(12, 23, 1);
    float *dye = buf(sizeof(float) * 24), *dw = buf(sizeof(float) * 6), *num = buf(sizeof(float) * 24);
    op_moe_scatter_bwd(c.be, dye, dw, c.g, c.ye, c.w, c.tok, c.kk, c.R, c.K, c.C);
    numeric_grad(c.ye, 24, scatter_loss, &c, num, EPS);
    expect_close(dye, num, 24, "scatter ye");
    numeric_grad(c.w, 6, scatter_loss, &c, num, EPS);
    expect_close(dw, num, 6, "scatter w");
    be_close(c.be);
    release();
}

Test(gradcheck_moe, capacity_drops_later_tokens)
{
    int32_t idx[8] = {0, 1, 0, 2, 0, 1, 0, 3}, start[5], tok[8], kk[8], tok_row[8];
    float w[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int dropped = moe_group(start, tok, kk, tok_row, idx, w, 4, 2, 4, 2);
    cr_expect_eq(dropped, 2, "expert 0 is chosen 4 times, capacity 2");
    cr_expect(w[4] == 0 && w[6] == 0 && w[0] == 1 && w[2] == 1, "the later tokens' slots are dropped");
    cr_expect(tok_row[4] == -1 && tok_row[6] == -1, "a dropped choice has no row");
    for (int i = 0; i < 8; i++)
        if (tok_row[i] >= 0) cr_expect(tok[tok_row[i]] == i / 2 && kk[tok_row[i]] == i % 2, "tok_row inverts the rows");
    cr_expect_eq(start[1], 2);
    cr_expect_eq(start[4], 6);
}

/* ---- the whole DeepSeek model: LoRA gradients with the balance loss and a
 * capacity factor on. L = mean NLL + alpha * sum over MoE layers of the
 * balance loss; central differences over LoRA parameters of the last MoE
 * layer (routed and shared experts, o_proj: upstream of its router, so the
 * balance loss's gradient is in them), skipping any that moved a choice. ---- */
typedef struct {
    engine *e;
    batch b;
    float *lp, *params;
    float alpha;
    int32_t *idx0, *idx;
    int layers[2], NK;
    bool moved;
} model_ctx;

static double model_loss(void *p)
{
    model_ctx *c = p;
    engine_set_params(c->e, c->params);
    engine_fwd f = {.lora = true};
    cr_assert_eq(engine_forward(c->e, &c->b, &f, c->lp, NULL), 0, "%s", ds_errmsg());
    double nll = 0;
    long n = 0;
    for (int i = 0; i < c->b.B * c->b.T; i++)
        if (c->b.targets[i] >= 0) nll -= c->lp[i], n++;
    engine_moe_stats st;
    cr_assert_eq(engine_read_moe_stats(c->e, -1, &st), 0);
    for (int k = 0; k < 2; k++) {
        engine_read_routing(c->e, c->layers[k], c->idx, NULL, NULL);
        if (memcmp(c->idx, c->idx0 + k * c->NK, sizeof(int32_t) * c->NK)) c->moved = true;
    }
    return nll / n + c->alpha * st.aux_loss;
}

Test(gradcheck_moe, deepseek_model_lora_with_balance_loss_and_capacity, .timeout = 120)
{
    char *dir = tu_source_path("tests/data/fixtures/tiny-deepseek-v3"), *ad_dir = ds_path_join(dir, "adapter");
    llama_model *m;
    lora_adapter *ad;
    cr_assert_eq(model_load(dir, NULL, &m), 0, "%s", ds_errmsg());
    cr_assert_eq(lora_load_peft(ad_dir, &m->cfg, &ad), 0, "%s", ds_errmsg());
    backend *be = cpu();
    model_ctx c = {.alpha = 0.5f, .layers = {1, 2}};
    engine_opts o = {.max_B = 2, .max_T = 8, .training = true, .adapter = ad};
    cr_assert_eq(engine_create(be, m, &o, &c.e), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_set_moe(c.e, c.alpha, 1.0f), 0, "%s", ds_errmsg());
    batch_alloc(&c.b, 2, 8);
    for (int i = 0; i < 16; i++) {
        c.b.ids[i] = (i * 37 + 11) % 1024;
        c.b.pos[i] = i % 8;
        c.b.seg[i] = i / 8;
        c.b.targets[i] = i % 8 < 7 ? (i * 53 + 5) % 1024 : -1;
    }
    size_t P = engine_nparams(c.e);
    c.NK = 16 * m->cfg.ds.top_k;
    c.params = malloc(sizeof(float) * P), c.lp = malloc(sizeof(float) * 16);
    c.idx0 = malloc(sizeof(int32_t) * 2 * c.NK), c.idx = malloc(sizeof(int32_t) * c.NK);
    engine_get_params(c.e, c.params);
    /* analytic: SFT coefficients a = 1/n, b = -1/n on target rows */
    engine_fwd f = {.lora = true, .for_backward = true};
    cr_assert_eq(engine_forward(c.e, &c.b, &f, c.lp, NULL), 0);
    engine_moe_stats st;
    engine_read_moe_stats(c.e, -1, &st);
    cr_expect(st.dropped > 0, "capacity factor 1.0 drops some slots of 16 tokens (max load %d)", st.max_load);
    for (int k = 0; k < 2; k++) engine_read_routing(c.e, c.layers[k], c.idx0 + k * c.NK, NULL, NULL);
    float ca[16] = {0}, cb[16] = {0};
    for (int i = 0; i < 16; i++)
        if (c.b.targets[i] >= 0) ca[i] = 1.0f / 14, cb[i] = -1.0f / 14;
    engine_zero_grads(c.e);
    cr_assert_eq(engine_backward(c.e, ca, cb, NULL), 0, "%s", ds_errmsg());
    float *grads = malloc(sizeof(float) * P);
    engine_get_grads(c.e, grads);
    const char *modules[] = {"mlp.experts.5.down_proj", "mlp.experts.2.up_proj", "mlp.shared_experts.gate_proj",
                             "self_attn.o_proj", "self_attn.kv_b_proj"};
    int checked = 0;
    double worst = 0;
    for (int s = 0; s < ad->nslots; s++) {
        char key[192];
        lora_slot_key(ad, key, sizeof key, 2, s, 'B');
        bool wanted = false;
        for (int k = 0; k < 5; k++) wanted |= strstr(key, modules[k]) && strstr(key, ".layers.2.");
        float *A = lora_slot_A(ad, 2, s);
        int out, in;
        if (!wanted || !A || !lora_slot_shape(ad, 2, s, &out, &in)) continue;
        size_t off = (size_t)(A - ad->data);
        for (int j = 0; j < 6; j++) {   /* a few of A's and of B's entries */
            size_t i = off + (j < 3 ? (size_t)j * 7 % ((size_t)ad->cfg.r * in)
                                    : (size_t)ad->cfg.r * in + (size_t)j * 11 % ((size_t)out * ad->cfg.r));
            float old = c.params[i], h = 1e-2f;
            c.moved = false;
            c.params[i] = old + h;
            double lp = model_loss(&c);
            c.params[i] = old - h;
            double lm = model_loss(&c);
            c.params[i] = old;
            if (c.moved) continue;
            double num = (lp - lm) / (2.0 * h), err = fabs(num - grads[i]) / (fabs(num) + 1e-3);
            cr_expect(err < 2e-2, "%s [%zu]: analytic %.6g, finite difference %.6g", key, i - off, grads[i], num);
            if (err > worst) worst = err;
            checked++;
        }
    }
    cr_expect(checked >= 20, "only %d parameters checked", checked);
    fprintf(stderr, "deepseek model gradient: %d parameters, worst relative error %.2e\n", checked, worst);
    engine_free(c.e);
    be_close(be);
    lora_free(ad);
    model_free(m);
    batch_free(&c.b);
    free(dir), free(ad_dir), free(c.params), free(c.lp), free(c.idx0), free(c.idx), free(grads);
}
