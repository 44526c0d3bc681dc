/* The whole model on the GPU: fixtures/tiny-llama logits, loss, SFT and DPO
 * LoRA gradients through the CUDA engine (bf16 storage, fp32 math), over the
 * 16-bit and the 4-bit base,
 *  - against transformers + PEFT in fp32 (the fixture): logits, losses and
 *    log-probs within 2e-2; LoRA gradients within GRAD_TOL, the error bf16
 *    storage itself causes on this fixture (its weights are drawn large so
 *    that mistakes show, which also magnifies rounding; scripts/hf_check.py
 *    measures transformers' own bf16 error on it);
 *  - on a well-conditioned model (models/tiny, initialised at unit scale, with
 *    a random adapter on all seven linear layers): log-probs within 2e-2, SFT
 *    and DPO LoRA gradients within WELL_TOL of the fp32 CPU engine. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"
#include "core/rng.h"
#include "finetune/run/run.h"
#include "finetune/engine/engine.h"
#include "losses/loss.h"
#include "finetune/recipe/recipe.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF16_TOL 2e-2
/* LoRA gradients of the fixture: its weights are drawn with std 0.2 so that
 * every mistake shows, and that also magnifies bf16 rounding. transformers +
 * PEFT in bf16 miss its fp32 gradients by up to 4.5e-2 (SFT) and 7.4e-2 (DPO)
 * per tensor (scripts/hf_check.py on an H100); ds-ft's bf16 engine by up to
 * 4.4e-2 (4.45e-2 for one DPO tensor with the LoRA products in bf16). */
#define GRAD_TOL 5e-2
/* The well-conditioned model's LoRA gradients: on an H100 they are 1.7e-2
 * (SFT) and 2.0e-2 (DPO) from fp32 overall, at most 2.2e-2 for one module
 * (layer 1 q_proj and k_proj, where the attention backward's bf16 products
 * weigh most). */
#define WELL_TOL 3e-2
/* Two independent bf16 computations (ours and bitsandbytes'). */
#define BF16_PAIR_TOL 3e-2

static void need_gpu(void)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
}

static st_file *dump_on(const char *device, const char *model_rel, bool four_bit)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "dump.safetensors");
    char *model = tu_shared_path(model_rel), *adapter = tu_shared_path("fixtures/tiny-llama/adapter");
    char *input = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    dump_request r = {.model_dir = model, .adapter_dir = adapter, .input = input, .out = out, .device = device,
                      .load_in_4bit = four_bit};
    cr_assert_eq(dump_run(&r), 0, "dump on %s: %s", device, ds_errmsg());
    st_file *f;
    cr_assert_eq(st_file_open(out, &f), 0);
    free(dir); free(out); free(model); free(adapter); free(input);
    return f;
}

static double rel(const st_file *a, const st_file *b, const char *name)
{
    const st_tensor *x = st_file_find(a, name), *y = st_file_find(b, name);
    cr_assert(x && y, "%s missing", name);
    cr_assert_eq(x->numel, y->numel);
    float *p = malloc(sizeof(float) * x->numel), *q = malloc(sizeof(float) * y->numel);
    st_to_f32(x, p);
    st_to_f32(y, q);
    double e = tu_rel_err(p, q, (size_t)x->numel);
    free(p);
    free(q);
    return e;
}

static void expect_prefix(const st_file *got, const st_file *ref, const char *prefix, double tol)
{
    int n = 0;
    for (int i = 0; i < st_file_count(ref); i++) {
        const char *name = st_file_at(ref, i)->name;
        if (strncmp(name, prefix, strlen(prefix)) || !st_file_find(got, name)) continue;
        if (st_file_at(ref, i)->dtype != ST_F32) continue;
        double e = rel(got, ref, name);
        cr_log_info("%s %s: relative error %.3e", prefix, name, e);
        cr_expect(e <= tol, "%s: relative error %.3e > %.0e", name, e, tol);
        n++;
    }
    cr_expect(n > 0, "nothing compared for %s", prefix);
}

/* Every output `ds-ft dump` writes: activations, logits, losses and log-probs
 * within BF16_TOL, LoRA gradients within GRAD_TOL. */
static void expect_every_output(const st_file *got, const st_file *ref)
{
    expect_prefix(got, ref, "base.", BF16_TOL);
    expect_prefix(got, ref, "lora.", BF16_TOL);
    expect_prefix(got, ref, "dpo.loss", BF16_TOL);
    expect_prefix(got, ref, "dpo.policy", BF16_TOL);
    expect_prefix(got, ref, "dpo.ref", BF16_TOL);
    expect_prefix(got, ref, "sft.grad.", GRAD_TOL);
    expect_prefix(got, ref, "dpo.grad.", GRAD_TOL);
}

Test(gpu_engine, fixture_on_the_16bit_base, .init = need_gpu)
{
    st_file *got = dump_on("cuda", "fixtures/tiny-llama", false), *ref;
    char *p = tu_shared_path("fixtures/tiny-llama/reference.safetensors");
    cr_assert_eq(st_file_open(p, &ref), 0);
    expect_every_output(got, ref);
    st_file_close(got);
    st_file_close(ref);
    free(p);
}

/* Over the 4-bit base the fp32 reference is the CPU engine on the same NF4 weights. */
Test(gpu_engine, fixture_on_the_4bit_base_matches_the_cpu_engine, .init = need_gpu)
{
    st_file *got = dump_on("cuda", "fixtures/tiny-llama", true);
    st_file *cpu = dump_on("cpu", "fixtures/tiny-llama", true);
    expect_every_output(got, cpu);
    st_file_close(got);
    st_file_close(cpu);
}

/* bitsandbytes' own 4-bit logits (computed in bf16 by transformers). */
Test(gpu_engine, bitsandbytes_checkpoint_logits, .init = need_gpu)
{
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "d.safetensors");
    char *model = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    char *input = tu_shared_path("fixtures/tiny-llama-bnb-4bit/reference.safetensors");
    dump_request r = {.model_dir = model, .input = input, .out = out, .device = "cuda"};
    cr_assert_eq(dump_run(&r), 0, "%s", ds_errmsg());
    st_file *got, *ref;
    cr_assert_eq(st_file_open(out, &got), 0);
    cr_assert_eq(st_file_open(input, &ref), 0);
    const st_tensor *a = st_file_find(got, "base.logits"), *b = st_file_find(ref, "logits");
    float *x = malloc(sizeof(float) * a->numel), *y = malloc(sizeof(float) * b->numel);
    st_to_f32(a, x);
    st_to_f32(b, y);
    double e = tu_rel_err(x, y, (size_t)a->numel);
    cr_expect(e <= BF16_PAIR_TOL, "4-bit logits on the GPU vs bitsandbytes' bf16 logits: relative error %.3e", e);
    free(x); free(y);
    st_file_close(got);
    st_file_close(ref);
    free(dir); free(out); free(model); free(input);
}

/* ---- a well-conditioned model: CUDA against the fp32 CPU engine ---- */

typedef struct {
    float *logprob;   /* (N) SFT forward */
    float *sft;       /* (P) SFT LoRA gradients */
    float *dpo;       /* (P) DPO LoRA gradients */
} engine_run;

static void loss_coefs(const char *section, const batch *b, const float *lp, const float *ref, float *a, float *bc)
{
    recipe_loss l;
    cr_assert_eq(recipe_loss_parse(section, false, &l), 0, "%s", ds_errmsg());
    size_t N = (size_t)b->B * b->T;
    memset(a, 0, sizeof(float) * N);
    memset(bc, 0, sizeof(float) * N);
    loss_input in = {.B = b->B, .T = b->T, .targets = b->targets, .logprob = lp, .ref_logprob = ref};
    loss_output out = {.a = a, .b = bc};
    cr_assert_eq(l.module->forward(l.cfg, &in, l.module->count(l.cfg, &in), &out), 0, "%s", ds_errmsg());
    recipe_loss_free(&l);
}

static engine_run run_on(be_kind kind, bool four_bit, const lora_adapter *ad, const batch *b)
{
    backend *be;
    cr_assert_eq(be_open(kind, &be), 0, "%s", ds_errmsg());
    char *dir = tu_source_path("models/tiny");
    llama_model *m;
    model_load_opts lo = {.load_in_4bit = four_bit, .double_quant = true};
    cr_assert_eq(model_load(dir, &lo, &m), 0, "%s", ds_errmsg());
    engine *e;
    engine_opts eo = {.max_B = b->B, .max_T = b->T, .training = true, .adapter = ad, .checkpointing = true};
    cr_assert_eq(engine_create(be, m, &eo, &e), 0, "%s", ds_errmsg());
    size_t N = (size_t)b->B * b->T, P = ad->nparams;
    engine_run r = {malloc(sizeof(float) * N), malloc(sizeof(float) * P), malloc(sizeof(float) * P)};
    float *ref = malloc(sizeof(float) * N), *lp = malloc(sizeof(float) * N);
    float *a = malloc(sizeof(float) * N), *bc = malloc(sizeof(float) * N);
    engine_fwd f = {.lora = true, .for_backward = true}, fref = {.lora = false};
    /* SFT */
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, b, &f, r.logprob, NULL), 0, "%s", ds_errmsg());
    loss_coefs("{type: sft}", b, r.logprob, NULL, a, bc);
    cr_assert_eq(engine_backward(e, a, bc, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_get_grads(e, r.sft), 0);
    /* DPO: rows 2k / 2k+1 as pairs */
    cr_assert_eq(engine_forward(e, b, &fref, ref, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, b, &f, lp, NULL), 0, "%s", ds_errmsg());
    loss_coefs("{type: dpo, beta: 0.5}", b, lp, ref, a, bc);
    cr_assert_eq(engine_backward(e, a, bc, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_get_grads(e, r.dpo), 0);
    free(ref); free(lp); free(a); free(bc); free(dir);
    engine_free(e);
    model_free(m);
    be_close(be);
    return r;
}

static void well_conditioned(bool four_bit)
{
    char *dir = tu_source_path("models/tiny");
    model_config cfg;
    cr_assert_eq(model_config_load(dir, &cfg), 0);
    lora_config lc = {.r = 8, .alpha = 16, .targets = (1u << LIN_COUNT) - 1};
    lora_adapter *ad;
    cr_assert_eq(lora_create(&cfg, &lc, "tiny", &ad), 0);
    tu_fill_uniform(ad->data, ad->nparams, 11, 0.2f);   /* B != 0: every gradient is non-zero */
    batch b;
    batch_alloc(&b, 4, 77);   /* odd length; rows 2k, 2k+1 share a 30-token prompt */
    ds_rng r = ds_rng_make(5, DS_STREAM_TEST);
    for (int row = 0; row < 4; row++)
        for (int t = 0; t < 77; t++) {
            size_t i = (size_t)row * 77 + t;
            b.ids[i] = t < 30 && row % 2 ? b.ids[i - 77] : (int32_t)ds_rng_below(&r, (uint64_t)cfg.vocab_size);
            b.pos[i] = t;
            b.seg[i] = 0;
        }
    for (int row = 0; row < 4; row++)
        for (int t = 0; t < 77; t++) {
            size_t i = (size_t)row * 77 + t;
            b.targets[i] = t + 1 < 77 && t + 1 >= 30 ? b.ids[i + 1] : -1;
        }
    engine_run cpu = run_on(BE_CPU, four_bit, ad, &b), gpu = run_on(BE_CUDA, four_bit, ad, &b);
    size_t N = 4 * 77, P = ad->nparams;
    double e_lp = tu_rel_err(gpu.logprob, cpu.logprob, N), e_sft = tu_rel_err(gpu.sft, cpu.sft, P);
    double e_dpo = tu_rel_err(gpu.dpo, cpu.dpo, P);
    cr_log_info("well-conditioned model%s: log-probs %.3e, SFT gradients %.3e, DPO gradients %.3e",
                four_bit ? " (4-bit)" : "", e_lp, e_sft, e_dpo);
    cr_expect(e_lp <= BF16_TOL, "log-probs: relative error %.3e", e_lp);
    cr_expect(e_sft <= WELL_TOL, "SFT LoRA gradients: relative error %.3e", e_sft);
    cr_expect(e_dpo <= WELL_TOL, "DPO LoRA gradients: relative error %.3e", e_dpo);
    /* and per adapted module */
    for (int l = 0; l < cfg.num_layers; l++)
        for (int t = 0; t < LIN_COUNT; t++) {
            size_t off = (size_t)(lora_A(ad, l, (llama_linear)t) - ad->data);
            size_t n = (size_t)ad->cfg.r * (ad->in[t] + ad->out[t]);
            double e = tu_rel_err(gpu.sft + off, cpu.sft + off, n);
            cr_log_info("layer %d %s: SFT gradient relative error %.3e", l, llama_linear_name((llama_linear)t), e);
            cr_expect(e <= WELL_TOL, "layer %d %s: SFT gradient relative error %.3e", l,
                      llama_linear_name((llama_linear)t), e);
        }
    free(cpu.logprob); free(cpu.sft); free(cpu.dpo);
    free(gpu.logprob); free(gpu.sft); free(gpu.dpo);
    batch_free(&b);
    lora_free(ad);
    free(dir);
}

Test(gpu_engine, well_conditioned_model_matches_the_fp32_engine, .init = need_gpu) { well_conditioned(false); }
Test(gpu_engine, well_conditioned_model_matches_the_fp32_engine_4bit, .init = need_gpu) { well_conditioned(true); }

/* ---- long sequences: the memory savers give the step the plain engine gives ---- */

/* One SFT step of a 6-layer version of models/tiny (random NF4 weights) on
 * one row of b->T tokens, LoRA with dropout on every linear layer: the
 * log-probs (N) and LoRA gradients (P). */
/* keep: 0 = each layer's input only, 1 = the attention output too, 2 = and
 * every layer's projections and residual, 3 = those of all but two layers */
static void long_step(be_kind kind, bool offload, int mlp_rows, int keep, float *lp, float *grads,
                      const lora_adapter *ad, const model_config *cfg, const batch *b)
{
    backend *be;
    cr_assert_eq(be_open(kind, &be), 0, "%s", ds_errmsg());
    llama_model *m;
    cr_assert_eq(model_random(cfg, 3, &m), 0, "%s", ds_errmsg());
    engine *e;
    engine_opts eo = {.max_B = b->B, .max_T = b->T, .training = true, .adapter = ad, .checkpointing = true,
                      .seed = 9, .offload = offload, .mlp_rows = mlp_rows, .keep_attention = keep >= 1,
                      .keep_projections = keep == 2 ? cfg->num_layers : keep == 3 ? cfg->num_layers - 2 : 0};
    cr_assert_eq(engine_create(be, m, &eo, &e), 0, "%s", ds_errmsg());
    size_t N = (size_t)b->B * b->T;
    float *a = malloc(sizeof(float) * N), *bc = malloc(sizeof(float) * N);
    engine_fwd f = {.lora = true, .training = true, .for_backward = true, .micro_step = 2};
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, b, &f, lp, NULL), 0, "%s", ds_errmsg());
    loss_coefs("{type: sft}", b, lp, NULL, a, bc);
    cr_assert_eq(engine_backward(e, a, bc, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_get_grads(e, grads), 0);
    free(a); free(bc);
    engine_free(e);
    model_random_free(m);
    be_close(be);
}

/* A 6-layer models/tiny with a random adapter (dropout 0.1, every linear
 * layer) and one random row of T tokens. */
typedef struct {
    model_config cfg;
    lora_adapter *ad;
    batch b;
    size_t P;
} long_case;

static long_case long_case_make(int T)
{
    long_case c;
    char *dir = tu_source_path("models/tiny");
    cr_assert_eq(model_config_load(dir, &c.cfg), 0);
    free(dir);
    c.cfg.num_layers = 6;   /* several layers' inputs go out and come back */
    lora_config lc = {.r = 8, .alpha = 16, .dropout = 0.1, .targets = (1u << LIN_COUNT) - 1};
    cr_assert_eq(lora_create(&c.cfg, &lc, "tiny", &c.ad), 0);
    tu_fill_uniform(c.ad->data, c.ad->nparams, 12, 0.2f);
    c.P = c.ad->nparams;
    batch_alloc(&c.b, 1, T);
    ds_rng r = ds_rng_make(6, DS_STREAM_TEST);
    for (int t = 0; t < T; t++) {
        c.b.ids[t] = (int32_t)ds_rng_below(&r, (uint64_t)c.cfg.vocab_size);
        c.b.pos[t] = t;
        c.b.seg[t] = 0;
    }
    for (int t = 0; t < T; t++) c.b.targets[t] = t + 1 < T ? c.b.ids[t + 1] : -1;
    return c;
}

static void long_case_free(long_case *c)
{
    batch_free(&c->b);
    lora_free(c->ad);
}

/* Offloading moves data and changes no arithmetic, and neither does keeping
 * the attention output instead of recomputing it (the same kernel on the
 * same inputs): at 16,384 tokens, the same log-probs as the engine that keeps
 * every layer's input on the device, and gradients no further from it than
 * that engine is from itself run twice (the attention backward's atomic
 * adds); the MLP and LoRA products in slices (other shapes, other rounding)
 * stay near. */
Test(gpu_engine, offloaded_long_sequence_gives_the_same_loss_and_gradients, .init = need_gpu)
{
    const int T = 16384;   /* over ENGINE_MLP_ROWS and LORA_MAX_ROWS: both in slices where allowed */
    long_case c = long_case_make(T);
    enum { RUNS = 8 };
    float *lp[RUNS], *g[RUNS];
    for (int i = 0; i < RUNS; i++) lp[i] = malloc(sizeof(float) * T), g[i] = malloc(sizeof(float) * c.P);
    long_step(BE_CUDA, false, T, 0, lp[0], g[0], c.ad, &c.cfg, &c.b);   /* every input on the device, MLP whole */
    long_step(BE_CUDA, false, T, 0, lp[3], g[3], c.ad, &c.cfg, &c.b);   /* ... again: the run-to-run spread */
    long_step(BE_CUDA, true, T, 0, lp[1], g[1], c.ad, &c.cfg, &c.b);    /* offloaded, the MLP whole */
    long_step(BE_CUDA, true, 0, 0, lp[2], g[2], c.ad, &c.cfg, &c.b);    /* offloaded, the MLP in slices */
    long_step(BE_CUDA, false, T, 1, lp[4], g[4], c.ad, &c.cfg, &c.b);    /* attention output kept on the device */
    long_step(BE_CUDA, true, T, 1, lp[5], g[5], c.ad, &c.cfg, &c.b);     /* ... and offloaded with the inputs */
    long_step(BE_CUDA, false, T, 2, lp[6], g[6], c.ad, &c.cfg, &c.b);    /* its projections kept too */
    long_step(BE_CUDA, true, 0, 3, lp[7], g[7], c.ad, &c.cfg, &c.b);     /* 4 of 6 layers', offloaded, sliced */
    double spread = tu_rel_err(g[3], g[0], c.P);
    double off_lp = tu_rel_err(lp[1], lp[0], (size_t)T), off_g = tu_rel_err(g[1], g[0], c.P);
    double sl_lp = tu_rel_err(lp[2], lp[0], (size_t)T), sl_g = tu_rel_err(g[2], g[0], c.P);
    double keep_lp = tu_rel_err(lp[4], lp[0], (size_t)T), keep_g = tu_rel_err(g[4], g[0], c.P);
    double koff_lp = tu_rel_err(lp[5], lp[0], (size_t)T), koff_g = tu_rel_err(g[5], g[0], c.P);
    double proj_lp = tu_rel_err(lp[6], lp[0], (size_t)T), proj_g = tu_rel_err(g[6], g[0], c.P);
    double poff_lp = tu_rel_err(lp[7], lp[0], (size_t)T), poff_g = tu_rel_err(g[7], g[0], c.P);
    cr_log_info("%d tokens, against every input on the device: offloaded log-probs %.3e, gradients %.3e (run to run "
                "%.3e); offloaded and sliced %.3e, %.3e; attention kept %.3e, %.3e; kept and offloaded %.3e, %.3e; "
                "projections kept %.3e, %.3e; 4 layers' kept, offloaded and sliced %.3e, %.3e",
                T, off_lp, off_g, spread, sl_lp, sl_g, keep_lp, keep_g, koff_lp, koff_g, proj_lp, proj_g, poff_lp,
                poff_g);
    cr_expect(off_lp <= 1e-6, "log-probs with offload: relative difference %.3e", off_lp);
    cr_expect(off_g <= 3 * spread + 1e-6, "LoRA gradients with offload: relative difference %.3e, run to run %.3e",
              off_g, spread);
    cr_expect(sl_lp <= BF16_TOL, "log-probs, offloaded and sliced: relative difference %.3e", sl_lp);
    cr_expect(sl_g <= 2 * WELL_TOL, "LoRA gradients, offloaded and sliced: relative difference %.3e", sl_g);
    cr_expect(keep_lp <= 1e-6 && koff_lp <= 1e-6, "log-probs with the attention kept: %.3e, offloaded %.3e", keep_lp,
              koff_lp);
    cr_expect(keep_g <= 3 * spread + 1e-6 && koff_g <= 3 * spread + 1e-6,
              "LoRA gradients with the attention kept: %.3e, offloaded %.3e, run to run %.3e", keep_g, koff_g, spread);
    /* kept projections: the same products on the same inputs, read back instead of run again */
    cr_expect(proj_lp <= 1e-6, "log-probs with the projections kept: %.3e", proj_lp);
    cr_expect(proj_g <= 3 * spread + 1e-6, "LoRA gradients with the projections kept: %.3e, run to run %.3e", proj_g,
              spread);
    cr_expect(poff_lp <= BF16_TOL && poff_g <= 2 * WELL_TOL,
              "projections kept, offloaded and sliced: log-probs %.3e, gradients %.3e", poff_lp, poff_g);
    for (int i = 0; i < RUNS; i++) free(lp[i]), free(g[i]);
    long_case_free(&c);
}

/* The slices against the fp32 CPU engine, on a length the CPU computes
 * quickly (the MLP in slices of 384 tokens): no further from it than the
 * unsliced GPU engine is. This model's LoRA gradients (six layers, dropout,
 * 1,024 tokens) are further from fp32 in bf16 than the well-conditioned
 * model's: 6.4e-2 for the unsliced GPU engine and for the sliced one alike on
 * an H100 (4.9e-2 while the LoRA products ran in fp32; in bf16 they round A,
 * B, u and du as PEFT under bf16 autocast does), so the absolute bound is 2.5
 * WELL_TOL and the claim rests on the comparison with the unsliced engine. */
Test(gpu_engine, mlp_slices_match_the_fp32_engine, .init = need_gpu)
{
    const int T = 1024;
    long_case c = long_case_make(T);
    float *lp[3], *g[3];
    for (int i = 0; i < 3; i++) lp[i] = malloc(sizeof(float) * T), g[i] = malloc(sizeof(float) * c.P);
    long_step(BE_CPU, false, T, 0, lp[0], g[0], c.ad, &c.cfg, &c.b);
    long_step(BE_CUDA, false, T, 0, lp[1], g[1], c.ad, &c.cfg, &c.b);
    long_step(BE_CUDA, true, 384, 0, lp[2], g[2], c.ad, &c.cfg, &c.b);
    double w_lp = tu_rel_err(lp[1], lp[0], (size_t)T), w_g = tu_rel_err(g[1], g[0], c.P);
    double s_lp = tu_rel_err(lp[2], lp[0], (size_t)T), s_g = tu_rel_err(g[2], g[0], c.P);
    cr_log_info("%d tokens against the fp32 CPU engine: whole %.3e / %.3e, offloaded and sliced %.3e / %.3e "
                "(log-probs / gradients)", T, w_lp, w_g, s_lp, s_g);
    cr_expect(s_lp <= BF16_TOL, "log-probs, offloaded and sliced, vs fp32: %.3e", s_lp);
    cr_expect(s_g <= 2.5 * WELL_TOL, "LoRA gradients, offloaded and sliced, vs fp32: %.3e", s_g);
    cr_expect(s_g <= 1.5 * w_g + 5e-3, "the slices add error: %.3e against %.3e unsliced", s_g, w_g);
    for (int i = 0; i < 3; i++) free(lp[i]), free(g[i]);
    long_case_free(&c);
}
