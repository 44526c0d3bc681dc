/* DeepSeek-V2/V3 models without files (`ds-ft bench train`, ds-ft doctor):
 * the built-in deepseek-v2-lite shape read as its config.json is; models of
 * the tiny fixtures' configs with random weights (every tensor the loader
 * gives, and a CPU training step with a finite loss and spread routing);
 * the memory estimate from the config alone against the CPU engine's arenas,
 * and its weight figure for DeepSeek-V2-Lite. CPU only: CUDA is never
 * initialised (the estimates for BE_CUDA are shape-only). */
#include "testutil.h"

#include "adapters/lora.h"
#include "backend/backend.h"
#include "core/status.h"
#include "finetune/engine/engine.h"
#include "finetune/model/model.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const TINY[] = {"tiny-deepseek-v2", "tiny-deepseek-v2-grouped", "tiny-deepseek-v3"};
#define NTINY (sizeof TINY / sizeof *TINY)

static model_config tiny_config(const char *family)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tests/data/fixtures/%s", family);
    char *dir = tu_source_path(rel);
    model_config c;
    cr_assert_eq(model_config_load(dir, &c), DS_OK, "%s: %s", family, ds_errmsg());
    cr_assert(c.ds.on, "%s: not a DeepSeek config", family);
    free(dir);
    return c;
}

/* An adapter on every linear the model has (r = 4). */
static lora_adapter *all_linear(const model_config *c)
{
    lora_config lc = {.r = 4, .alpha = 8, .targets = (1u << LORA_T_COUNT) - 1};
    lora_adapter *ad;
    cr_assert_eq(lora_create(c, &lc, "random", &ad), DS_OK, "%s", ds_errmsg());
    lora_init(ad, 3);
    return ad;
}

/* ------------------------------------------------------------------ shape */

Test(model_random_deepseek, v2_lite_shape_is_its_config)
{
    model_config c;
    cr_assert_eq(model_shape("deepseek-v2-lite", &c), DS_OK, "%s", ds_errmsg());
    cr_assert(strstr(model_shape_names(), "deepseek-v2-lite"), "%s", model_shape_names());
    model_config hub;   /* the Hub's spelling (ds-ft doctor's deepseek-ai/DeepSeek-V2-Lite) */
    cr_expect(model_shape("DeepSeek-V2-Lite", &hub) == DS_OK && hub.ds.n_routed == 64, "%s", ds_errmsg());
    const deepseek_config *d = &c.ds;
    cr_expect_str_eq(c.architecture, "DeepseekV2ForCausalLM");
    cr_expect(c.family == FAMILY_DEEPSEEK_V2 && d->on);
    cr_expect(c.hidden_size == 2048 && c.intermediate_size == 10944 && c.num_layers == 27 && c.vocab_size == 102400);
    cr_expect(c.num_heads == 16 && c.num_kv_heads == 16 && c.head_dim == 192, "heads %d/%d of %d", c.num_heads,
              c.num_kv_heads, c.head_dim);
    cr_expect(d->q_lora_rank == 0 && d->kv_lora_rank == 512 && d->qk_nope_dim == 128 && d->qk_rope_dim == 64 &&
              d->v_head_dim == 128 && d->rope_interleave);
    cr_expect(d->n_routed == 64 && d->n_shared == 2 && d->top_k == 6 && d->moe_intermediate == 1408 &&
              d->first_k_dense == 1, "experts %d + %d shared, top %d", d->n_routed, d->n_shared, d->top_k);
    cr_expect(d->topk_method == TOPK_GREEDY && d->n_group == 1 && d->topk_group == 1 && !d->sigmoid &&
              !d->norm_topk_prob && d->routed_scaling_factor == 1.0 && fabs(d->aux_loss_alpha - 0.001) < 1e-12);
    cr_expect(c.max_position == 163840 && c.rope_theta == 10000.0 && fabsf(c.rms_norm_eps - 1e-6f) < 1e-12f &&
              !c.tie_word_embeddings && c.bos_id == 100000 && c.eos_id == 100001);
    cr_expect(c.rope.type == ROPE_YARN && c.rope.factor == 40.0 && c.rope.original_max_position == 4096 &&
              c.rope.beta_fast == 32.0 && c.rope.beta_slow == 1.0 && c.rope.mscale == 0.707 &&
              c.rope.mscale_all_dim == 0.707);
    /* DeepseekV2Attention: softmax_scale = qk_head_dim^-0.5 * yarn_get_mscale(40, 0.707)^2 */
    double m = 0.1 * 0.707 * log(40.0) + 1.0, plain = 1.0 / sqrt(192.0);
    cr_expect(fabs(d->softmax_scale - plain * m * m) < 1e-7, "softmax_scale %.9g, expected %.9g", d->softmax_scale,
              plain * m * m);
    cr_expect(d->softmax_scale > 1.5 * plain, "yarn's mscale^2 (%.4f) is in softmax_scale", m * m);
    /* the linears as DeepSeek-V2-Lite's checkpoint holds them */
    int out, in;
    cr_expect(deepseek_linear(&c, 1, DSL_Q, NULL, 0, NULL, &out, &in) && out == 3072 && in == 2048);
    cr_expect(!deepseek_linear(&c, 1, DSL_QA, NULL, 0, NULL, &out, &in));
    cr_expect(deepseek_linear(&c, 1, DSL_KVA, NULL, 0, NULL, &out, &in) && out == 576 && in == 2048);
    cr_expect(deepseek_linear(&c, 1, DSL_KVB, NULL, 0, NULL, &out, &in) && out == 4096 && in == 512);
    cr_expect(deepseek_linear(&c, 0, DSL_GATE, NULL, 0, NULL, &out, &in) && out == 10944 && in == 2048);
    cr_expect(!deepseek_linear(&c, 0, DSL_EXPERTS, NULL, 0, NULL, &out, &in), "layer 0 is dense");
    cr_expect(deepseek_linear(&c, 26, DSL_SH_UP, NULL, 0, NULL, &out, &in) && out == 2816 && in == 2048);
    cr_expect(deepseek_linear(&c, 26, DSL_EXPERTS + 3 * 63 + 2, NULL, 0, NULL, &out, &in) && out == 2048 && in == 1408);
    long long params = model_config_params(&c);
    cr_expect(params == 15706484224LL, "DeepSeek-V2-Lite has 15,706,484,224 parameters, not %lld", params);
}

/* ------------------------------------------------------------ random model */

/* Every tensor model_deepseek_load_layer would give, of its shape. */
static void expect_deepseek_tensors(const char *family, const llama_model *m)
{
    const model_config *c = &m->cfg;
    const deepseek_config *d = &c->ds;
    cr_expect(m->quantized && m->embed && m->lm_head && m->final_norm, "%s", family);
    for (int l = 0; l < c->num_layers; l++) {
        const model_layer *L = &m->layers[l];
        cr_assert(L->dsl && L->attn_norm && L->mlp_norm && L->kv_a_norm, "%s: layer %d", family, l);
        cr_expect(L->kv_a_norm->numel == d->kv_lora_rank);
        cr_expect(d->q_lora_rank ? L->q_a_norm && L->q_a_norm->numel == d->q_lora_rank : !L->q_a_norm);
        if (deepseek_is_moe(c, l)) {
            cr_assert(L->router, "%s: layer %d has no router", family, l);
            cr_expect(L->router->dtype == ST_BF16 && L->router->ndim == 2 && L->router->shape[0] == d->n_routed &&
                      L->router->shape[1] == c->hidden_size, "%s: router (E, C) bf16", family);
            cr_expect(d->sigmoid ? L->router_bias && L->router_bias->dtype == ST_F32 &&
                                       L->router_bias->numel == d->n_routed
                                 : !L->router_bias, "%s: layer %d: router bias only for V3 (fp32)", family, l);
        } else {
            cr_expect(!L->router && !L->router_bias, "%s: dense layer %d has a router", family, l);
        }
        int n = 0;
        for (int s = 0; s < deepseek_slots(c); s++) {
            int out, in;
            bool has = deepseek_linear(c, l, s, NULL, 0, NULL, &out, &in);
            const model_linear *lin = &L->dsl[s];
            if (!has) {
                cr_expect(!lin->out && !lin->q_owner, "%s: layer %d slot %d should be empty", family, l, s);
                continue;
            }
            cr_expect(lin->out == out && lin->in == in && lin->q_owner && lin->q.rows == out && lin->q.cols == in &&
                      lin->q.double_quant, "%s: layer %d slot %d: NF4 [%d, %d]", family, l, s, out, in);
            n++;
        }
        cr_expect(n >= (deepseek_is_moe(c, l) ? 4 + 3 * d->n_routed : 7), "%s: layer %d: %d linears", family, l, n);
    }
}

/* One SFT step of the CPU engine on a random batch: forward, backward, AdamW;
 * the mean loss before (and after, in *after). */
static double train_step(const llama_model *m, const lora_adapter *ad, double *after)
{
    const int B = 2, T = 16, N = B * T, V = m->cfg.vocab_size;
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    engine *e;
    engine_opts o = {.max_B = B, .max_T = T, .checkpointing = true, .training = true, .adapter = ad, .seed = 1};
    cr_assert_eq(engine_create(be, m, &o, &e), DS_OK, "%s", ds_errmsg());
    batch b;
    cr_assert_eq(batch_alloc(&b, B, T), DS_OK);
    int n = 0;
    for (int i = 0; i < N; i++) {
        b.ids[i] = (i * 37 + 11) % V;
        b.pos[i] = i % T;
        b.seg[i] = 0;
        b.targets[i] = i % T < T - 1 ? (i * 53 + 5) % V : -1;
        n += b.targets[i] >= 0;
    }
    float lp[32], ca[32] = {0}, cb[32] = {0};
    engine_fwd f = {.lora = true, .training = true, .for_backward = true};
    cr_assert_eq(engine_forward(e, &b, &f, lp, NULL), DS_OK, "%s", ds_errmsg());
    double loss = 0;
    for (int i = 0; i < N; i++)
        if (b.targets[i] >= 0) loss -= lp[i], ca[i] = 1.0f / n, cb[i] = -1.0f / n;   /* mean NLL's coefficients */
    loss /= n;
    /* the router spreads the tokens: more than a few experts chosen over the MoE layers */
    engine_moe_stats st;
    cr_assert_eq(engine_read_moe_stats(e, -1, &st), DS_OK, "%s", ds_errmsg());
    int used = 0;
    for (int x = 0; x < st.experts; x++) used += st.tokens_per_expert[x] > 0;
    cr_expect(used > st.experts / 2, "%d of %d experts chosen (max load %d)", used, st.experts, st.max_load);
    cr_assert_eq(engine_zero_grads(e), DS_OK);
    cr_assert_eq(engine_backward(e, ca, cb, NULL), DS_OK, "%s", ds_errmsg());
    double norm;
    cr_assert_eq(engine_grad_norm(e, &norm), DS_OK);
    cr_expect(isfinite(norm) && norm > 0, "gradient norm %g", norm);
    adamw_args aw = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .grad_scale = 1.0f, .step = 1};
    cr_assert_eq(engine_adamw(e, &aw), DS_OK, "%s", ds_errmsg());
    engine_fwd f2 = {.lora = true};
    cr_assert_eq(engine_forward(e, &b, &f2, lp, NULL), DS_OK, "%s", ds_errmsg());
    *after = 0;
    for (int i = 0; i < N; i++)
        if (b.targets[i] >= 0) *after -= lp[i];
    *after /= n;
    batch_free(&b);
    engine_free(e);
    be_close(be);
    return loss;
}

/* Log-probabilities and every LoRA gradient of one SFT pass on the CPU, with
 * the routed experts' weights dequantized `batch_bytes` at a time (0: the default). */
static float *pass(const llama_model *m, const lora_adapter *ad, size_t batch_bytes, float *lp, size_t *np)
{
    const int B = 2, T = 16, N = B * T, V = m->cfg.vocab_size;
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    engine *e;
    engine_opts o = {.max_B = B, .max_T = T, .checkpointing = true, .training = true, .adapter = ad, .seed = 1,
                     .expert_batch_bytes = batch_bytes};
    cr_assert_eq(engine_create(be, m, &o, &e), DS_OK, "%s", ds_errmsg());
    batch b;
    cr_assert_eq(batch_alloc(&b, B, T), DS_OK);
    float ca[32] = {0}, cb[32] = {0};
    for (int i = 0; i < N; i++) {
        b.ids[i] = (i * 37 + 11) % V, b.pos[i] = i % T, b.seg[i] = 0;
        b.targets[i] = i % T < T - 1 ? (i * 53 + 5) % V : -1;
        if (b.targets[i] >= 0) ca[i] = 1.0f / N, cb[i] = -1.0f / N;
    }
    engine_fwd f = {.lora = true, .training = true, .for_backward = true};
    cr_assert_eq(engine_forward(e, &b, &f, lp, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(engine_zero_grads(e), DS_OK);
    cr_assert_eq(engine_backward(e, ca, cb, NULL), DS_OK, "%s", ds_errmsg());
    float *grads;
    cr_assert_eq(engine_grads_buffer(e, &grads, np), DS_OK);
    float *copy = malloc(sizeof(float) * *np);
    cr_assert_eq(engine_get_grads(e, copy), DS_OK);
    batch_free(&b);
    engine_free(e);
    be_close(be);
    return copy;
}

/* Dequantizing the experts a few at a time (several batches, the last one
 * short) computes exactly what one batch of all of them does. */
Test(model_random_deepseek, expert_batches_change_nothing, .timeout = 120)
{
    for (size_t i = 0; i < NTINY; i++) {
        model_config c = tiny_config(TINY[i]);
        llama_model *m;
        cr_assert_eq(model_random(&c, 7, &m), DS_OK, "%s: %s", TINY[i], ds_errmsg());
        lora_adapter *ad = all_linear(&c);
        size_t one = (size_t)c.ds.moe_intermediate * c.hidden_size * sizeof(float);   /* an expert's weight on the CPU */
        cr_assert(c.ds.n_routed % 3 != 0, "%s: %d experts: pick a batch that leaves a short last one", TINY[i],
                  c.ds.n_routed);
        float lp1[32], lp3[32];
        size_t n1, n3;
        float *g1 = pass(m, ad, 0, lp1, &n1), *g3 = pass(m, ad, 3 * one, lp3, &n3);
        cr_assert_eq(n1, n3);
        cr_expect(!memcmp(lp1, lp3, sizeof lp1), "%s: log-probabilities differ with 3 experts a batch", TINY[i]);
        cr_expect(!memcmp(g1, g3, sizeof(float) * n1), "%s: LoRA gradients differ with 3 experts a batch", TINY[i]);
        free(g1), free(g3);
        lora_free(ad);
        model_random_free(m);
    }
}

Test(model_random_deepseek, random_models_train_on_the_cpu, .timeout = 120)
{
    for (size_t i = 0; i < NTINY; i++) {
        model_config c = tiny_config(TINY[i]);
        llama_model *m;
        cr_assert_eq(model_random(&c, 7, &m), DS_OK, "%s: %s", TINY[i], ds_errmsg());
        expect_deepseek_tensors(TINY[i], m);
        lora_adapter *ad = all_linear(&c);
        double after, loss = train_step(m, ad, &after);
        /* random logits of standard deviation ~1 over V tokens: about ln V */
        double lnv = log((double)c.vocab_size);
        cr_expect(isfinite(loss) && loss > 0.5 * lnv && loss < 2 * lnv, "%s: loss %g (ln V = %g)", TINY[i], loss, lnv);
        cr_expect(isfinite(after) && after < loss, "%s: loss %g after a step, %g before", TINY[i], after, loss);
        cr_log_info("%s: random weights, loss %.4f -> %.4f after one step", TINY[i], loss, after);
        lora_free(ad);
        model_random_free(m);
    }
}

Test(model_random_deepseek, random_model_is_seeded)
{
    model_config c = tiny_config("tiny-deepseek-v3");
    llama_model *a, *b, *x;
    cr_assert_eq(model_random(&c, 7, &a), DS_OK);
    cr_assert_eq(model_random(&c, 7, &b), DS_OK);
    cr_assert_eq(model_random(&c, 8, &x), DS_OK);
    const nf4_view *va = &a->layers[2].dsl[DSL_EXPERTS + 4].q, *vb = &b->layers[2].dsl[DSL_EXPERTS + 4].q,
                   *vx = &x->layers[2].dsl[DSL_EXPERTS + 4].q;
    size_t bytes = (size_t)(va->n + 1) / 2;
    cr_expect(!memcmp(va->packed, vb->packed, bytes), "the same seed, the same weights");
    cr_expect(memcmp(va->packed, vx->packed, bytes), "another seed, other weights");
    cr_expect(memcmp(va->packed, a->layers[2].dsl[DSL_EXPERTS + 7].q.packed, bytes), "experts differ");
    cr_expect(!memcmp(a->layers[1].router->data, b->layers[1].router->data, a->layers[1].router->nbytes));
    model_random_free(a);
    model_random_free(b);
    model_random_free(x);
}

/* --------------------------------------------------------------- estimate */

static void expect_same(const char *what, const engine_memory *est, const engine_memory *real)
{
    cr_expect_eq(est->weights, real->weights, "%s: weights %zu, the engine %zu", what, est->weights, real->weights);
    cr_expect_eq(est->adapter, real->adapter, "%s: adapter %zu, the engine %zu", what, est->adapter, real->adapter);
    cr_expect_eq(est->activations, real->activations, "%s: activations %zu, the engine %zu", what, est->activations,
                 real->activations);
    cr_expect_eq(est->workspace, real->workspace, "%s: workspace %zu, the engine %zu", what, est->workspace,
                 real->workspace);
}

/* engine_estimate from the config alone against engine_create's arenas on the CPU for model m. */
static void estimate_equals_engine(const char *what, const llama_model *m, bool checkpointing, bool training)
{
    lora_adapter *ad = all_linear(&m->cfg);
    engine_opts o = {.max_B = 3, .max_T = 20, .checkpointing = checkpointing, .training = training, .adapter = ad};
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    engine *e;
    cr_assert_eq(engine_create(be, m, &o, &e), DS_OK, "%s: %s", what, ds_errmsg());
    engine_memory real = engine_memory_use(e), est;
    cr_assert_eq(engine_estimate(&m->cfg, m->quantized, BE_CPU, &o, &est), DS_OK, "%s: %s", what, ds_errmsg());
    expect_same(what, &est, &real);
    engine_free(e);
    be_close(be);
    lora_free(ad);
}

Test(model_random_deepseek, estimate_equals_the_engine_on_the_cpu, .timeout = 120)
{
    for (size_t i = 0; i < NTINY; i++) {
        model_config c = tiny_config(TINY[i]);
        llama_model *m;
        cr_assert_eq(model_random(&c, 7, &m), DS_OK, "%s", ds_errmsg());
        estimate_equals_engine(TINY[i], m, true, true);
        estimate_equals_engine(TINY[i], m, false, true);
        estimate_equals_engine(TINY[i], m, false, false);
        model_random_free(m);
        /* the checkpoint itself, quantized on load and 16-bit */
        char rel[128];
        snprintf(rel, sizeof rel, "tests/data/fixtures/%s", TINY[i]);
        char *dir = tu_source_path(rel);
        for (int four = 0; four < 2; four++) {
            model_load_opts lo = {.load_in_4bit = four, .double_quant = true};
            cr_assert_eq(model_load(dir, &lo, &m), DS_OK, "%s", ds_errmsg());
            estimate_equals_engine(dir, m, true, true);
            model_free(m);
        }
        free(dir);
    }
}

Test(model_random_deepseek, v2_lite_estimate)
{
    model_config c;
    cr_assert_eq(model_shape("deepseek-v2-lite", &c), DS_OK, "%s", ds_errmsg());
    lora_config lc = {.r = 16, .alpha = 32, .targets = (1u << LIN_Q) | (1u << LORA_T_KV_B)};
    lora_adapter *ad;
    cr_assert_eq(lora_create(&c, &lc, "x", &ad), DS_OK, "%s", ds_errmsg());
    engine_opts o = {.max_B = 1, .max_T = 2048, .checkpointing = true, .training = true, .adapter = ad};
    engine_memory gpu, cpu;
    cr_assert_eq(engine_estimate(&c, true, BE_CUDA, &o, &gpu), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(engine_estimate(&c, true, BE_CPU, &o, &cpu), DS_OK, "%s", ds_errmsg());
    /* ~15.3B linear parameters in NF4 (0.516 bytes each with double quantization) + bf16 embeddings and lm_head */
    double gb = 1e9;
    cr_expect(gpu.weights > 8.0 * gb && gpu.weights < 9.5 * gb, "NF4 weights %.2f GB", gpu.weights / gb);
    cr_expect(cpu.weights > gpu.weights, "the CPU's fp32 embeddings and norms take more");
    cr_expect(gpu.activations > 0 && gpu.activations < 8 * gb && gpu.adapter > 0, "activations %.2f GB",
              gpu.activations / gb);
    cr_log_info("deepseek-v2-lite, NF4, LoRA r=16 on q_proj + kv_b_proj, 1 x 2048, checkpointing: CUDA weights "
                "%.2f GB (%.2f GiB), adapter %.1f MB, activations %.2f GB, workspace %.2f GB; CPU weights %.2f GB",
                gpu.weights / gb, gpu.weights / 1073741824.0, gpu.adapter / 1e6, gpu.activations / gb,
                gpu.workspace / gb, cpu.weights / gb);
    lora_free(ad);
}
