/* Long sequences' memory savers give the step the plain engine gives: each
 * layer's input offloaded to host memory (two device slots taking turns), the
 * MLP over slices of tokens, the LoRA products over slices of rows, and the
 * attention output kept from the forward (on the device or offloaded) instead
 * of recomputed. A forward
 * and backward with each of them, with LoRA dropout on (its mask must follow
 * the rows across slices), against the same step without them: the same
 * log-probabilities, hidden states and LoRA gradients. */
#include "testutil.h"

#include "adapters/lora.h"
#include "adapters/lora_ops.h"
#include "core/rng.h"
#include "core/status.h"
#include "finetune/engine/engine.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* What one training step leaves: log-probs (N), hidden states (L, N, C), gradients (P). */
typedef struct {
    float *lp, *hidden, *grads;
    size_t N, hidden_n, P;
} step_out;

static void step_free(step_out *s)
{
    free(s->lp);
    free(s->hidden);
    free(s->grads);
}

/* What the forward keeps for the backward besides each layer's input. */
typedef enum { KEEP_INPUTS, KEEP_ATTENTION, KEEP_PROJECTIONS, KEEP_SOME_PROJECTIONS } keep_kind;

/* One forward and backward of a fixed random batch of B rows of T on model
 * `dir` with a fresh adapter (dropout 0.1, r 4 on every linear layer). */
static step_out run_step(const char *dir, int B, int T, bool offload, int mlp_rows, keep_kind keep)
{
    backend *be;
    llama_model *m;
    lora_adapter *ad;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    cr_assert_eq(model_load(dir, NULL, &m), 0, "%s", ds_errmsg());
    lora_config lc = {.r = 4, .alpha = 8, .dropout = 0.1, .targets = (1u << LORA_T_COUNT) - 1};
    cr_assert_eq(lora_create(&m->cfg, &lc, dir, &ad), 0, "%s", ds_errmsg());
    lora_init(ad, 7);
    for (size_t i = 0; i < ad->nparams; i++) ad->data[i] += 0.01f * (float)((i * 2654435761u) % 997) / 997.0f;

    batch b;
    batch_alloc(&b, B, T);
    ds_rng rng = ds_rng_make(99, DS_STREAM_TEST);
    for (int i = 0; i < B * T; i++) {
        b.ids[i] = (int32_t)ds_rng_below(&rng, (uint64_t)m->cfg.vocab_size);
        b.pos[i] = i % T;
        b.seg[i] = 0;
        b.targets[i] = i % T == T - 1 ? -1 : (int32_t)ds_rng_below(&rng, (uint64_t)m->cfg.vocab_size);
    }
    engine *e;
    engine_opts eo = {.max_B = B, .max_T = T, .training = true, .adapter = ad, .checkpointing = true, .seed = 5,
                      .offload = offload, .mlp_rows = mlp_rows, .keep_attention = keep >= KEEP_ATTENTION,
                      .keep_projections = keep == KEEP_PROJECTIONS        ? m->cfg.num_layers
                                          : keep == KEEP_SOME_PROJECTIONS ? m->cfg.num_layers - 1 : 0};
    cr_assert_eq(engine_create(be, m, &eo, &e), 0, "%s", ds_errmsg());
    const int L = m->cfg.num_layers, C = m->cfg.hidden_size;
    step_out s = {.N = (size_t)B * T, .P = ad->nparams};
    s.hidden_n = (size_t)L * s.N * C;
    s.lp = malloc(sizeof(float) * s.N);
    s.hidden = malloc(sizeof(float) * s.hidden_n);
    s.grads = malloc(sizeof(float) * s.P);
    float *ca = calloc(s.N, sizeof(float)), *cb = calloc(s.N, sizeof(float));
    engine_fwd f = {.lora = true, .training = true, .for_backward = true, .micro_step = 3};
    cr_assert_eq(engine_zero_grads(e), 0);
    cr_assert_eq(engine_forward(e, &b, &f, s.lp, NULL), 0, "%s", ds_errmsg());
    for (int l = 0; l < L; l++)
        cr_assert_eq(engine_read_hidden(e, l, s.hidden + (size_t)l * s.N * C), 0, "%s", ds_errmsg());
    for (size_t i = 0; i < s.N; i++)
        if (b.targets[i] >= 0) ca[i] = 1.0f / (float)s.N, cb[i] = -1.0f / (float)s.N;
    cr_assert_eq(engine_backward(e, ca, cb, NULL), 0, "%s", ds_errmsg());
    cr_assert_eq(engine_get_grads(e, s.grads), 0);
    if (offload)   /* the slots now hold what the backward left: a second backward is refused, not wrong */
        cr_expect_eq(engine_backward(e, ca, cb, NULL), DS_EINTERNAL, "a second backward of one forward ran");
    free(ca);
    free(cb);
    engine_free(e);
    batch_free(&b);
    lora_free(ad);
    model_free(m);
    be_close(be);
    return s;
}

static void expect_same(const float *x, const float *ref, size_t n, double tol, const char *what)
{
    double err = tu_rel_err(x, ref, n);
    cr_expect(err <= tol, "%s: relative difference %.3e (limit %.0e)", what, err, tol);
}

static void expect_same_step(const char *dir, bool offload, int mlp_rows, keep_kind keep)
{
    char *path = tu_source_path(dir);
    step_out ref = run_step(path, 2, 9, false, 0, KEEP_INPUTS), got = run_step(path, 2, 9, offload, mlp_rows, keep);
    expect_same(got.lp, ref.lp, ref.N, 1e-6, "log-probabilities");
    expect_same(got.hidden, ref.hidden, ref.hidden_n, 1e-6, "hidden states");
    expect_same(got.grads, ref.grads, ref.P, 1e-5, "LoRA gradients");
    double norm = 0;
    for (size_t i = 0; i < ref.P; i++) norm += (double)ref.grads[i] * ref.grads[i];
    cr_assert(norm > 0, "the reference step has no gradient");
    step_free(&ref);
    step_free(&got);
    free(path);
}

Test(engine_offload, offloaded_inputs_give_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", true, 0, KEEP_INPUTS);
}

Test(engine_offload, mlp_slices_give_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", false, 5, KEEP_INPUTS);   /* 18 tokens: slices of 5, 5, 5, 3 */
}

Test(engine_offload, both_at_once_give_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", true, 4, KEEP_INPUTS);
}

Test(engine_offload, deepseek_layers_with_offloaded_inputs)
{
    expect_same_step("tests/data/fixtures/tiny-deepseek-v3", true, 0, KEEP_INPUTS);
}

/* The backward reads the kept attention output instead of recomputing it:
 * the same step, on the device's buffers and offloaded through two slots. */
Test(engine_offload, kept_attention_gives_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", false, 0, KEEP_ATTENTION);
}

Test(engine_offload, kept_attention_offloaded_gives_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", true, 4, KEEP_ATTENTION);
}

Test(engine_offload, kept_attention_on_llama_layers)
{
    expect_same_step("tests/data/fixtures/tiny-llama31", true, 0, KEEP_ATTENTION);
}

/* Where a layer's projections are kept too its recomputation runs none of the
 * attention block's products: Qwen3's per-head norms are recomputed from the
 * kept q and k, Llama's q and k are kept after RoPE. Every layer's, or all but
 * the first's (which then uses the set's own buffers); with the inputs and
 * attention outputs offloaded or not. */
Test(engine_offload, kept_projections_give_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", false, 0, KEEP_PROJECTIONS);
    expect_same_step("tests/data/fixtures/tiny-llama31", false, 4, KEEP_PROJECTIONS);
    expect_same_step("tests/data/fixtures/tiny-qwen3", false, 0, KEEP_SOME_PROJECTIONS);
}

Test(engine_offload, kept_projections_with_offload_give_the_same_step)
{
    expect_same_step("tests/data/fixtures/tiny-qwen3", true, 4, KEEP_PROJECTIONS);
    expect_same_step("tests/data/fixtures/tiny-llama31", true, 0, KEEP_SOME_PROJECTIONS);
}

/* Options that need checkpointing (or Llama-family layers) are refused by name. */
static void expect_refused(const char *dir, engine_opts eo, const char *why)
{
    char *path = tu_source_path(dir);
    backend *be;
    llama_model *m;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    cr_assert_eq(model_load(path, NULL, &m), 0, "%s", ds_errmsg());
    engine *e = NULL;
    cr_assert_eq(engine_create(be, m, &eo, &e), DS_ECONFIG);
    cr_assert(strstr(ds_errmsg(), why), "%s", ds_errmsg());
    model_free(m);
    be_close(be);
    free(path);
}

Test(engine_offload, offload_without_checkpointing_is_refused)
{
    expect_refused("tests/data/fixtures/tiny-qwen3", (engine_opts){.max_B = 1, .max_T = 8, .training = true,
                                                                   .offload = true}, "checkpointing");
}

Test(engine_offload, kept_attention_without_checkpointing_or_on_deepseek_is_refused)
{
    expect_refused("tests/data/fixtures/tiny-qwen3", (engine_opts){.max_B = 1, .max_T = 8, .training = true,
                                                                   .keep_attention = true}, "checkpointing");
    expect_refused("tests/data/fixtures/tiny-deepseek-v3", (engine_opts){.max_B = 1, .max_T = 8, .training = true,
                   .checkpointing = true, .keep_attention = true}, "DeepSeek");
    expect_refused("tests/data/fixtures/tiny-qwen3", (engine_opts){.max_B = 1, .max_T = 8, .training = true,
                   .checkpointing = true, .keep_projections = 1}, "keep_attention");
}

/* The LoRA products over more rows than one slice: against a plain loop. */
Test(engine_offload, lora_over_several_row_slices_matches_a_plain_loop)
{
    enum { IN = 3, OUT = 2, R = 2 };
    const int N = LORA_MAX_ROWS + 37;
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), 0);
    float *x = malloc(sizeof(float) * N * IN), *y = calloc((size_t)N * OUT, sizeof(float));
    float *u = malloc(sizeof(float) * N * R), A[R * IN], Bm[OUT * R];
    tu_fill_uniform(x, (size_t)N * IN, 1, 1.0f);
    tu_fill_uniform(A, R * IN, 2, 1.0f);
    tu_fill_uniform(Bm, OUT * R, 3, 1.0f);
    lora_view v = {.r = R, .in = IN, .out = OUT, .scale = 0.5f, .dropout = 0.25f, .id = 11, .A = A, .B = Bm};
    lora_ctx ctx = {.seed = 4, .step = 2, .training = true, .row0 = 0};
    op_lora_fwd(be, y, u, x, &v, N, &ctx);
    cr_assert_eq(be_sync(be), 0);
    double err = 0, norm = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OUT; o++) {
            double want = 0;
            for (int k = 0; k < R; k++) {
                double uk = 0;
                for (int c = 0; c < IN; c++) {
                    uint64_t idx = (uint64_t)n * IN + c;
                    if (ds_dropout_keep(4, 2, 11, idx, 0.25f)) uk += x[n * IN + c] / 0.75 * A[k * IN + c];
                }
                want += 0.5 * uk * Bm[o * R + k];
            }
            err += (y[n * OUT + o] - want) * (y[n * OUT + o] - want);
            norm += want * want;
        }
    cr_expect(sqrt(err / norm) < 1e-5, "LoRA forward over %d rows: relative error %.3e", N, sqrt(err / norm));
    free(x);
    free(y);
    free(u);
    be_close(be);
}
