/* tests/gpu/test_gpu_generate.c - generation with a key/value cache on CUDA
 * (finetune/engine/engine_decode.h): on models/tiny and every family fixture,
 * 16-bit and 4-bit (where decoding runs the fused NF4 kernel), with the adapter:
 *  - the cached logits of every position of a sequence against the CUDA full
 *    forward's: relative error <= 2e-2 (bf16); against the fp32 CPU
 *    reference's <= 2.5e-2 (bf16 activations and the LoRA products in bf16:
 *    1.2e-2 to 2.1e-2 over the fixtures on an H100);
 *  - greedy generation with the cache against the full recompute: the same
 *    tokens, or where they part, the recompute's two best logits were within
 *    bf16 rounding of each other (2e-2 of the logits' spread);
 *  - batched prompts: each row's logits equal its logits alone (the kernels do
 *    not mix rows).
 * Skips with a line where there is no GPU. */
#include "testutil.h"

#include "core/status.h"
#include "finetune/run/generate.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char model[64];
    bool adapter, four;
} gen_case;

static gen_case CASES[] = {
    {"models/tiny", false, false},        {"models/tiny", false, true},
    {"tests/data/fixtures/tiny-qwen2", true, false},   {"tests/data/fixtures/tiny-qwen2", true, true},
    {"tests/data/fixtures/tiny-qwen3", true, true},    {"tests/data/fixtures/tiny-llama31", true, true},
    {"tests/data/fixtures/tiny-mistral", true, false}, {"tests/data/fixtures/tiny-mistral", true, true},
    {"tests/data/fixtures/tiny-llama-yarn", true, true},
};

static void open_on(const gen_case *c, be_kind k, ds_run *x)
{
    char *model = tu_source_path(c->model), ad[512];
    snprintf(ad, sizeof ad, "%s/adapter", model);
    ds_run_opts o = {.device = k, .model_dir = model, .adapter_dir = c->adapter ? ad : NULL, .load_in_4bit = c->four,
                     .double_quant = true};
    cr_assert_eq(ds_run_open(&o, x), DS_OK, "%s: %s", c->model, ds_errmsg());
    free(model);
}

/* Every position's logits of seq (T tokens): the full forward, then the cache fed one token at a time. */
static void logits_both(ds_run *x, const int32_t *seq, int T, float *full, float *cached)
{
    const int V = x->model->cfg.vocab_size;
    batch b;
    cr_assert_eq(batch_alloc(&b, 1, T), DS_OK);
    for (int t = 0; t < T; t++) b.ids[t] = seq[t], b.pos[t] = t;
    float *lp = malloc(sizeof(float) * T);
    engine_fwd f = {.lora = x->adapter != NULL};
    cr_assert_eq(engine_forward(x->eng, &b, &f, lp, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(engine_read_logits(x->eng, 0, T, full), DS_OK, "%s", ds_errmsg());
    engine_decoder *d;
    decoder_opts o = {.max_B = 1, .ctx = T, .lora = x->adapter != NULL};
    cr_assert_eq(decoder_create(x->eng, &o, &d), DS_OK, "%s", ds_errmsg());
    int32_t row = 0;
    for (int t = 0; t < T; t++)
        cr_assert_eq(decoder_feed(d, 1, seq + t, &row, cached + (size_t)t * V), DS_OK, "%s", ds_errmsg());
    decoder_free(d);
    batch_free(&b);
    free(lp);
}

ParameterizedTestParameters(gpu_generate, cache_on_cuda)
{
    return cr_make_param_array(gen_case, CASES, sizeof CASES / sizeof CASES[0]);
}

ParameterizedTest(gen_case *c, gpu_generate, cache_on_cuda)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    ds_run cpu, gpu;
    open_on(c, BE_CPU, &cpu);
    open_on(c, BE_CUDA, &gpu);
    const int V = cpu.model->cfg.vocab_size, max_new = 16;
    const char *text = "The patient was given a dose of";
    tok_ids prompt = {0};
    cr_assert_eq(tok_encode(cpu.tok, text, strlen(text), true, &prompt), DS_OK);
    const int T = (int)prompt.n + max_new;
    engine_opts eo = {.max_B = 1, .max_T = T};
    cr_assert_eq(ds_run_start(&cpu, &eo), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(ds_run_start(&gpu, &eo), DS_OK, "%s", ds_errmsg());
    gen_opts g = {.max_new = max_new, .sample = {.top_p = 1, .repetition_penalty = 1}};

    /* greedy: cache against recompute, both on CUDA */
    gen_result full, cached;
    cr_assert_eq(generate_recompute(gpu.eng, gpu.adapter != NULL, gpu.tok, V, &prompt, &g, &full, NULL), DS_OK, "%s",
                 ds_errmsg());
    engine_decoder *d;
    decoder_opts o = {.max_B = 1, .ctx = T, .lora = gpu.adapter != NULL};
    cr_assert_eq(decoder_create(gpu.eng, &o, &d), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(generate(d, gpu.tok, V, 1, &prompt, &g, &cached, NULL), DS_OK, "%s", ds_errmsg());
    decoder_free(d);
    int32_t *seq = malloc(sizeof(int32_t) * T);
    memcpy(seq, prompt.ids, prompt.n * sizeof(int32_t));
    memcpy(seq + prompt.n, full.ids.ids, full.ids.n * sizeof(int32_t));
    float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
    float *ca = malloc(sizeof(float) * (size_t)T * V), *cb = malloc(sizeof(float) * (size_t)T * V);
    logits_both(&gpu, seq, T, a, b);
    logits_both(&cpu, seq, T, ca, cb);
    size_t same = 0;
    while (same < full.ids.n && same < cached.ids.n && full.ids.ids[same] == cached.ids.ids[same]) same++;
    if (same < full.ids.n) {   /* parted: only where the recompute's two best were a rounding apart */
        const float *z = a + (prompt.n - 1 + same) * (size_t)V;
        float best = -INFINITY, second = -INFINITY, lo = INFINITY;
        for (int i = 0; i < V; i++) {
            if (z[i] > best) second = best, best = z[i];
            else if (z[i] > second) second = z[i];
            if (z[i] < lo) lo = z[i];
        }
        cr_expect(best - second <= 2e-2f * (best - lo), "%s: token %zu: cached %d, recomputed %d, gap %g of %g",
                  c->model, same, cached.ids.ids[same], full.ids.ids[same], best - second, best - lo);
    }
    double e_full = tu_rel_err(b, a, (size_t)T * V), e_cpu = tu_rel_err(b, cb, (size_t)T * V);
    printf("GPUGENERATE %-40s %s%s tokens %zu/%zu equal, cached vs full %.3e, vs cpu %.3e\n", c->model,
           c->four ? "nf4" : "bf16", c->adapter ? "+lora" : "", same, full.ids.n, e_full, e_cpu);
    cr_expect(e_full <= 2e-2, "%s: cached logits vs the CUDA full forward: %.3e", c->model, e_full);
    cr_expect(e_cpu <= 2.5e-2, "%s: CUDA cached logits vs the CPU: %.3e", c->model, e_cpu);
    free(seq), free(a), free(b), free(ca), free(cb);
    gen_result_free(&full), gen_result_free(&cached);
    tok_ids_free(&prompt);
    ds_run_close(&gpu);
    ds_run_close(&cpu);
}

/* tiny-qwen2 in NF4 with its adapter on CUDA, its engine started (decoders bring their own buffers). */
static void open_qwen2_nf4(ds_run *x)
{
    gen_case c = {"tests/data/fixtures/tiny-qwen2", true, true};
    open_on(&c, BE_CUDA, x);
    engine_opts eo = {.max_B = 1, .max_T = 1};
    cr_assert_eq(ds_run_start(x, &eo), DS_OK, "%s", ds_errmsg());
}

/* Rows of a batch do not mix: each row's logits equal its logits alone. */
Test(gpu_generate, batch_rows_independent)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    ds_run x;
    open_qwen2_nf4(&x);
    const int V = x.model->cfg.vocab_size;
    int32_t ids[3][6] = {{5, 9, 13, 2, 77, 31}, {8, 1, 400, 3, 3, 3}, {100, 200, 300, 400, 500, 600}};
    int len[3] = {6, 2, 4};
    engine_decoder *d;
    decoder_opts o = {.max_B = 3, .ctx = 16, .lora = true};
    cr_assert_eq(decoder_create(x.eng, &o, &d), DS_OK, "%s", ds_errmsg());
    int32_t feed[12], rows[12];
    int n = 0;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < len[r]; i++) feed[n] = ids[r][i], rows[n++] = r;
    float *batched = malloc(sizeof(float) * 3 * V), *alone = malloc(sizeof(float) * 3 * V);
    cr_assert_eq(decoder_feed(d, n, feed, rows, batched), DS_OK, "%s", ds_errmsg());
    int32_t step[3] = {7, 8, 9}, srows[3] = {0, 1, 2};   /* then a decode step of the three rows together */
    cr_assert_eq(decoder_feed(d, 3, step, srows, batched), DS_OK, "%s", ds_errmsg());
    for (int r = 0; r < 3; r++) {
        decoder_truncate(d, 0, 0);
        int32_t zero[8] = {0};
        cr_assert_eq(decoder_feed(d, len[r], ids[r], zero, alone), DS_OK, "%s", ds_errmsg());
        cr_assert_eq(decoder_feed(d, 1, &step[r], zero, alone), DS_OK, "%s", ds_errmsg());
        double e = tu_rel_err(batched + (size_t)r * V, alone, (size_t)V);
        cr_expect(e <= 1e-2, "row %d: batched vs alone %.3e", r, e);
    }
    free(batched), free(alone);
    decoder_free(d);
    ds_run_close(&x);
}

/* Recorded steps (CUDA graphs) replay the plain steps' kernels: after every
 * feed, the logits equal a plain decoder's bit for bit, through changes of the
 * step's shape (both rows, one row, both again) that make new recordings. */
Test(gpu_generate, recorded_steps_equal_plain)
{
    if (!tu_have_gpu()) cr_skip_test("no CUDA device: GPU tests skipped");
    ds_run x;
    open_qwen2_nf4(&x);
    const int V = x.model->cfg.vocab_size;
    engine_decoder *rec, *plain;
    decoder_opts o = {.max_B = 2, .ctx = 32, .lora = true};
    cr_assert_eq(decoder_create(x.eng, &o, &rec), DS_OK, "%s", ds_errmsg());
    o.plain = true;
    cr_assert_eq(decoder_create(x.eng, &o, &plain), DS_OK, "%s", ds_errmsg());
    float *a = calloc((size_t)2 * V, sizeof(float)), *b = calloc((size_t)2 * V, sizeof(float));
    int32_t prompt[7] = {5, 9, 13, 2, 8, 1, 400}, prows[7] = {0, 0, 0, 0, 1, 1, 1};
    cr_assert_eq(decoder_feed(rec, 7, prompt, prows, a), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(decoder_feed(plain, 7, prompt, prows, b), DS_OK, "%s", ds_errmsg());
    /* 6 steps of both rows, 5 of row 0 alone, 4 of both */
    const int plan[3][2] = {{6, 2}, {5, 1}, {4, 2}};
    int fed = 0;
    for (int p = 0; p < 3; p++)
        for (int s = 0; s < plan[p][0]; s++, fed++) {
            const int n = plan[p][1];
            int32_t ids[2], rows[2] = {0, 1};
            for (int r = 0; r < n; r++) {   /* each row's greedy token by the plain decoder */
                const float *z = b + (size_t)r * V;
                int best = 0;
                for (int i = 1; i < V; i++)
                    if (z[i] > z[best]) best = i;
                ids[r] = best;
            }
            cr_assert_eq(decoder_feed(rec, n, ids, rows, a), DS_OK, "step %d: %s", fed, ds_errmsg());
            cr_assert_eq(decoder_feed(plain, n, ids, rows, b), DS_OK, "step %d: %s", fed, ds_errmsg());
            for (size_t i = 0; i < (size_t)n * V; i++) cr_assert(isfinite(a[i]), "step %d: logit %zu not finite", fed, i);
            cr_assert(memcmp(a, b, sizeof(float) * (size_t)n * V) == 0, "step %d (%d rows): recorded logits differ "
                      "from the plain step's (rel. error %.3e)", fed, n, tu_rel_err(a, b, (size_t)n * V));
        }
    printf("GPUGENERATE recorded steps: %d steps of three shapes equal the plain decoder's bit for bit\n", fed);
    free(a), free(b);
    decoder_free(rec);
    decoder_free(plain);
    ds_run_close(&x);
}
