/* Generation with a key/value cache (finetune/engine/engine_decode.h,
 * finetune/run/generate.h) on the CPU:
 *  - on models/tiny and every family fixture (Qwen2 biases, Qwen3 q/k norms,
 *    Llama-3.1 rope, Mistral's sliding window shorter than the sequence, yarn;
 *    DeepSeek-V2/V3's latent attention and experts, models/tiny-moe),
 *    16-bit and 4-bit, with and without the adapter: the cached logits of every
 *    position equal the full forward's bit for bit (fed whole, in chunks, and
 *    one token at a time), and greedy generation gives the tokens of the full
 *    recompute;
 *  - batched prompts of different lengths give what each gives alone;
 *  - the sampler's rules on constructed logits (top-k, top-p, min-p,
 *    temperature, the repetition penalty as transformers defines it), top-k 1
 *    is greedy, draws follow the probabilities;
 *  - stop strings and stop tokens, the streamed text; the fused NF4 product equals dequantization
 *    followed by the GEMM. */
#include "testutil.h"

#include "core/rng.h"
#include "core/status.h"
#include "finetune/engine/ops/ops_decode.h"
#include "finetune/run/generate.h"
#include "finetune/run/run.h"

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char model[64];      /* under the source tree ("models/tiny", "tests/data/fixtures/tiny-qwen2") */
    bool adapter, four;  /* its adapter/ folder; NF4 on load */
} gen_case;

static gen_case CASES[] = {
    {"models/tiny", false, false},
    {"models/tiny", false, true},
    {"tests/data/fixtures/tiny-qwen2", false, false},
    {"tests/data/fixtures/tiny-qwen2", true, false},
    {"tests/data/fixtures/tiny-qwen2", true, true},
    {"tests/data/fixtures/tiny-qwen3", false, false},
    {"tests/data/fixtures/tiny-qwen3", true, true},
    {"tests/data/fixtures/tiny-llama31", true, false},
    {"tests/data/fixtures/tiny-llama31", false, true},
    {"tests/data/fixtures/tiny-mistral", false, false},
    {"tests/data/fixtures/tiny-mistral", true, true},
    {"tests/data/fixtures/tiny-llama-yarn", true, false},
    {"tests/data/fixtures/tiny-qwen2-bnb-4bit", false, false},
    {"models/tiny-moe", false, true},
    {"tests/data/fixtures/tiny-deepseek-v2", true, false},
    {"tests/data/fixtures/tiny-deepseek-v2-grouped", true, true},
    {"tests/data/fixtures/tiny-deepseek-v3", true, false},
    {"tests/data/fixtures/tiny-deepseek-v3", false, true},
    {"tests/data/fixtures/tiny-deepseek-v3-bnb-4bit", false, false},
};

static void open_case(const gen_case *c, ds_run *x)
{
    char *model = tu_source_path(c->model), ad[512];
    snprintf(ad, sizeof ad, "%s/adapter", model);
    ds_run_opts o = {.device = BE_CPU, .model_dir = model, .adapter_dir = c->adapter ? ad : NULL,
                     .load_in_4bit = c->four, .double_quant = true};
    cr_assert_eq(ds_run_open(&o, x), DS_OK, "%s: %s", c->model, ds_errmsg());
    free(model);
}

static tok_ids encode(const ds_run *x, const char *text)
{
    tok_ids ids = {0};
    cr_assert_eq(tok_encode(x->tok, text, strlen(text), true, &ids), DS_OK, "%s", ds_errmsg());
    return ids;
}

static gen_opts greedy(int max_new)
{
    gen_opts g = {.max_new = max_new, .sample = {.temperature = 0, .top_p = 1, .repetition_penalty = 1}};
    return g;
}

ParameterizedTestParameters(generate, cache_equals_recompute)
{
    return cr_make_param_array(gen_case, CASES, sizeof CASES / sizeof CASES[0]);
}

/* Greedy tokens of both paths, then the logits of every position of the
 * sequence: cached (fed in steps of `chunk`) against the full forward. */
ParameterizedTest(gen_case *c, generate, cache_equals_recompute)
{
    ds_run x;
    open_case(c, &x);
    const int V = x.model->cfg.vocab_size, max_new = 20;
    tok_ids prompt = encode(&x, "The patient was given a dose of");
    const int T = (int)prompt.n + max_new;
    engine_opts eo = {.max_B = 1, .max_T = T};
    cr_assert_eq(ds_run_start(&x, &eo), DS_OK, "%s", ds_errmsg());
    const bool lora = x.adapter != NULL;
    gen_opts g = greedy(max_new);   /* no stop tokens: every position is used */
    gen_result full, cached;
    cr_assert_eq(generate_recompute(x.eng, lora, x.tok, V, &prompt, &g, &full, NULL), DS_OK, "%s", ds_errmsg());
    engine_decoder *d;
    decoder_opts dopts = {.max_B = 1, .ctx = T, .lora = lora};
    cr_assert_eq(decoder_create(x.eng, &dopts, &d), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(generate(d, x.tok, V, 1, &prompt, &g, &cached, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(full.ids.n, (size_t)max_new);
    cr_assert_eq(cached.ids.n, full.ids.n, "%s: %zu tokens cached, %zu recomputed", c->model, cached.ids.n,
                 full.ids.n);
    for (size_t i = 0; i < full.ids.n; i++)
        cr_assert_eq(cached.ids.ids[i], full.ids.ids[i], "%s: token %zu: cached %d, recomputed %d", c->model, i,
                     cached.ids.ids[i], full.ids.ids[i]);
    cr_assert_str_eq(cached.text, full.text);
    decoder_free(d);

    /* the sequence's logits, position by position */
    int32_t *seq = malloc(sizeof(int32_t) * T), *rows = calloc(T, sizeof(int32_t));
    memcpy(seq, prompt.ids, prompt.n * sizeof(int32_t));
    memcpy(seq + prompt.n, full.ids.ids, (size_t)max_new * sizeof(int32_t));
    batch b;
    cr_assert_eq(batch_alloc(&b, 1, T), DS_OK);
    for (int t = 0; t < T; t++) b.ids[t] = seq[t], b.pos[t] = t;
    float *lp = malloc(sizeof(float) * T), *ref = malloc(sizeof(float) * (size_t)T * V), *z = malloc(sizeof(float) * V);
    engine_fwd f = {.lora = lora};
    cr_assert_eq(engine_forward(x.eng, &b, &f, lp, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(engine_read_logits(x.eng, 0, T, ref), DS_OK);
    const int chunks[] = {1, 3, 7, 1000};
    for (int k = 0; k < 4; k++) {
        decoder_opts o2 = {.max_B = 1, .ctx = T, .lora = lora, .max_step = chunks[k] < 1000 ? chunks[k] : 0};
        cr_assert_eq(decoder_create(x.eng, &o2, &d), DS_OK, "%s", ds_errmsg());
        for (int t = 0; t < T; t++) {   /* fed one position at a time, each cut into steps of max_step */
            cr_assert_eq(decoder_feed(d, 1, seq + t, rows, z), DS_OK, "%s", ds_errmsg());
            cr_assert(memcmp(z, ref + (size_t)t * V, sizeof(float) * V) == 0,
                      "%s: position %d: cached logits differ from the full forward's", c->model, t);
        }
        decoder_free(d);
        cr_assert_eq(decoder_create(x.eng, &o2, &d), DS_OK, "%s", ds_errmsg());   /* and all at once */
        cr_assert_eq(decoder_feed(d, T, seq, rows, z), DS_OK, "%s", ds_errmsg());
        cr_assert(memcmp(z, ref + (size_t)(T - 1) * V, sizeof(float) * V) == 0, "%s: steps of %d: last logits differ",
                  c->model, o2.max_step);
        decoder_free(d);
    }
    batch_free(&b);
    free(seq), free(rows), free(lp), free(ref), free(z);
    gen_result_free(&full), gen_result_free(&cached);
    tok_ids_free(&prompt);
    ds_run_close(&x);
}

/* Three prompts of different lengths in one batch give what each gives alone. */
Test(generate, batch_equals_one_by_one)
{
    gen_case c = {"tests/data/fixtures/tiny-qwen2", true, false};
    ds_run x;
    open_case(&c, &x);
    const int V = x.model->cfg.vocab_size;
    const char *texts[3] = {"Hello", "The patient was given a dose of", "A rash and fever in a child"};
    tok_ids p[3];
    for (int i = 0; i < 3; i++) p[i] = encode(&x, texts[i]);
    engine_opts eo = {.max_B = 1, .max_T = 1};
    cr_assert_eq(ds_run_start(&x, &eo), DS_OK, "%s", ds_errmsg());
    gen_opts g = greedy(12);
    engine_decoder *d;
    decoder_opts o = {.max_B = 3, .ctx = 64, .lora = true, .max_step = 5};
    cr_assert_eq(decoder_create(x.eng, &o, &d), DS_OK, "%s", ds_errmsg());
    gen_result batched[3], alone;
    cr_assert_eq(generate(d, x.tok, V, 3, p, &g, batched, NULL), DS_OK, "%s", ds_errmsg());
    for (int i = 0; i < 3; i++) {
        decoder_truncate(d, 0, 0);
        cr_assert_eq(generate(d, x.tok, V, 1, &p[i], &g, &alone, NULL), DS_OK, "%s", ds_errmsg());
        cr_assert_eq(alone.ids.n, batched[i].ids.n);
        cr_assert(memcmp(alone.ids.ids, batched[i].ids.ids, alone.ids.n * sizeof(int32_t)) == 0,
                  "prompt %d: batched tokens differ from its own", i);
        cr_assert_str_eq(alone.text, batched[i].text);
        gen_result_free(&alone);
        gen_result_free(&batched[i]);
        tok_ids_free(&p[i]);
    }
    decoder_free(d);
    ds_run_close(&x);
}

/* A row refuses to grow past its positions, by name. */
Test(generate, cache_full_is_refused)
{
    gen_case c = {"models/tiny", false, false};
    ds_run x;
    open_case(&c, &x);
    engine_opts eo = {.max_B = 1, .max_T = 1};
    cr_assert_eq(ds_run_start(&x, &eo), DS_OK);
    engine_decoder *d;
    decoder_opts o = {.max_B = 1, .ctx = 4};
    cr_assert_eq(decoder_create(x.eng, &o, &d), DS_OK);
    int32_t ids[5] = {1, 2, 3, 4, 5}, rows[5] = {0};
    float *z = malloc(sizeof(float) * x.model->cfg.vocab_size);
    cr_assert_eq(decoder_feed(d, 5, ids, rows, z), DS_EUSAGE);
    cr_assert(strstr(ds_errmsg(), "4 positions"), "%s", ds_errmsg());
    cr_assert_eq(decoder_len(d, 0), 0, "nothing was fed");
    free(z);
    decoder_free(d);
    ds_run_close(&x);
}

/* ---- stop strings and stop tokens ---- */

typedef struct {
    char buf[4096];
    size_t len;
    int calls;
} collected;

static void collect(void *ctx, int b, const char *piece, size_t len)
{
    collected *c = ctx;
    cr_assert_eq(b, 0);
    cr_assert_lt(c->len + len, sizeof c->buf);
    memcpy(c->buf + c->len, piece, len);
    c->len += len;
    c->buf[c->len] = 0;
    c->calls++;
}

Test(generate, stop_strings_and_tokens)
{
    gen_case c = {"models/tiny", false, false};
    ds_run x;
    open_case(&c, &x);
    const int V = x.model->cfg.vocab_size;
    tok_ids p = encode(&x, "Question: Which organism causes");
    engine_opts eo = {.max_B = 1, .max_T = 1};
    cr_assert_eq(ds_run_start(&x, &eo), DS_OK);
    engine_decoder *d;
    decoder_opts o = {.max_B = 1, .ctx = 128};
    cr_assert_eq(decoder_create(x.eng, &o, &d), DS_OK);
    gen_opts g = greedy(40);
    gen_result plain, cut;
    cr_assert_eq(generate(d, x.tok, V, 1, &p, &g, &plain, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(plain.end, GEN_LENGTH);
    size_t len = strlen(plain.text);
    cr_assert_gt(len, 12, "the continuation is long enough to cut: '%s'", plain.text);
    char stop[4] = {0};
    memcpy(stop, plain.text + len / 2, 3);   /* a piece of the text: the output ends before its first occurrence */
    const char *stops[2] = {"never in this text \x01", stop};
    g.stop = stops, g.nstop = 2;
    collected pieces = {0};   /* streamed: the pieces make up the text, the stop string never shown */
    g.on_text = collect, g.on_text_ctx = &pieces;
    decoder_truncate(d, 0, 0);
    cr_assert_eq(generate(d, x.tok, V, 1, &p, &g, &cut, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_str_eq(pieces.buf, cut.text);
    cr_assert_gt(pieces.calls, 1, "streamed in pieces");
    cr_assert_eq(cut.end, GEN_STOP);
    size_t at = (size_t)(strstr(plain.text, stop) - plain.text);
    cr_assert_eq(strlen(cut.text), at, "cut at %zu: '%s' (stop '%s' in '%s')", at, cut.text, stop, plain.text);
    cr_assert(strncmp(cut.text, plain.text, at) == 0);
    cr_assert_lt(cut.ids.n, plain.ids.n, "generation stopped early");
    gen_result_free(&cut);

    /* a stop token ends the sequence and is kept */
    int32_t eos = plain.ids.ids[4];
    size_t first = 0;
    while (plain.ids.ids[first] != eos) first++;
    g = greedy(40);
    g.stop_ids = &eos, g.nstop_ids = 1;
    decoder_truncate(d, 0, 0);
    cr_assert_eq(generate(d, x.tok, V, 1, &p, &g, &cut, NULL), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(cut.end, GEN_EOS);
    cr_assert_eq(cut.ids.n, first + 1);
    cr_assert_eq(cut.ids.ids[first], eos);
    gen_result_free(&cut);
    gen_result_free(&plain);
    tok_ids_free(&p);
    decoder_free(d);
    ds_run_close(&x);
}

/* ---- the sampler ---- */

static sampler_opts sampling(void)
{
    sampler_opts s = {.temperature = 1, .top_p = 1, .repetition_penalty = 1};
    return s;
}

/* logits = log of these probabilities: 0.5, 0.3, 0.15, 0.05 */
static void four(float z[4])
{
    const float p[4] = {0.5f, 0.3f, 0.15f, 0.05f};
    for (int i = 0; i < 4; i++) z[i] = logf(p[i]);
}

static void expect_probs(const float *got, const float *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        cr_expect(fabsf(got[i] - want[i]) < 1e-6f, "%s: token %d: %g, want %g", what, i, got[i], want[i]);
}

Test(sampler, top_p_min_p_top_k_cuts)
{
    float z[4], p[4];
    four(z);
    sampler_opts s = sampling();
    s.top_p = 0.75f;   /* tail 0.05 + 0.15 = 0.2 <= 0.25 removed, then 0.5 > 0.25 stops */
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){0.625f, 0.375f, 0, 0}, 4, "top-p 0.75");
    s.top_p = 0.9f;    /* 0.05 <= 0.1 removed; 0.2 > 0.1 kept */
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0}, 4, "top-p 0.9");
    s.top_p = 1e-6f;   /* the likeliest is always kept */
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){1, 0, 0, 0}, 4, "top-p tiny");
    s = sampling();
    s.min_p = 0.25f;   /* below 0.25 * 0.5 = 0.125 removed */
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0}, 4, "min-p 0.25");
    s.min_p = 0.4f;    /* below 0.2 removed */
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){0.625f, 0.375f, 0, 0}, 4, "min-p 0.4");
    s = sampling();
    s.top_k = 3;
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    expect_probs(p, (float[]){0.5f / 0.95f, 0.3f / 0.95f, 0.15f / 0.95f, 0}, 4, "top-k 3");
    float tie[5] = {1, 3, 2, 3, 0};   /* top-k 1 keeps both tokens tied for the best */
    float pt[5];
    s.top_k = 1;
    cr_assert_eq(sampler_probs(tie, 5, &s, NULL, 0, pt), DS_OK);
    expect_probs(pt, (float[]){0, 0.5f, 0, 0.5f, 0}, 5, "top-k 1 with a tie");
    /* temperature: p ∝ exp(z / T) */
    s = sampling();
    s.temperature = 2;
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    cr_expect(fabsf(p[0] / p[3] - sqrtf(0.5f / 0.05f)) < 1e-4f, "temperature 2: ratio %g", p[0] / p[3]);
}

/* transformers' RepetitionPenaltyLogitsProcessor: a seen token's logit / penalty
 * when positive, * penalty when negative, once however often it was seen. */
Test(sampler, repetition_penalty)
{
    float z[4] = {2.0f, -2.0f, 1.0f, 0.5f}, p[4];
    int32_t hist[3] = {0, 1, 1};
    sampler_opts s = sampling();
    s.repetition_penalty = 2.0f;   /* -> 1, -4, 1, 0.5 */
    cr_assert_eq(sampler_probs(z, 4, &s, hist, 3, p), DS_OK);
    double e[4] = {exp(1.0), exp(-4.0), exp(1.0), exp(0.5)}, sum = e[0] + e[1] + e[2] + e[3];
    expect_probs(p, (float[]){(float)(e[0] / sum), (float)(e[1] / sum), (float)(e[2] / sum), (float)(e[3] / sum)}, 4,
                 "penalty 2");
    s.temperature = 0;   /* greedy sees the penalised logits: 0 and 2 tie at 1, the lower id wins */
    cr_assert_eq(sampler_probs(z, 4, &s, hist, 3, p), DS_OK);
    expect_probs(p, (float[]){1, 0, 0, 0}, 4, "greedy with penalty");
    s.repetition_penalty = 4.0f;   /* 0.5, -8, 1, 0.5: token 2 */
    cr_assert_eq(sampler_probs(z, 4, &s, hist, 3, p), DS_OK);
    expect_probs(p, (float[]){0, 0, 1, 0}, 4, "greedy with penalty 4");
}

/* top-k 1 at any temperature picks what greedy picks, whatever the draw. */
Test(sampler, top_k_one_is_greedy)
{
    const int V = 1000;
    float *z = malloc(sizeof(float) * V), *p = malloc(sizeof(float) * V), *g = malloc(sizeof(float) * V);
    for (int trial = 0; trial < 20; trial++) {
        tu_fill_uniform(z, V, 100 + trial, 5.0f);
        sampler_opts s = sampling(), gs = sampling();
        s.temperature = 1.5f, s.top_k = 1, gs.temperature = 0;
        cr_assert_eq(sampler_probs(z, V, &gs, NULL, 0, g), DS_OK);
        cr_assert_eq(sampler_probs(z, V, &s, NULL, 0, p), DS_OK);
        ds_rng r1 = ds_rng_make(trial, 1), r2 = ds_rng_make(trial, 1);
        cr_assert_eq(sampler_pick(p, V, &r1), sampler_pick(g, V, &r2), "trial %d", trial);
    }
    free(z), free(p), free(g);
}

/* Draws follow the distribution: 20000 draws from 0.5/0.3/0.15/0.05 (fixed seed). */
Test(sampler, draws_follow_probabilities)
{
    float z[4], p[4];
    four(z);
    sampler_opts s = sampling();
    cr_assert_eq(sampler_probs(z, 4, &s, NULL, 0, p), DS_OK);
    int count[4] = {0};
    ds_rng r = ds_rng_make(7, DS_STREAM_TEST);
    for (int i = 0; i < 20000; i++) count[sampler_pick(p, 4, &r)]++;
    const double want[4] = {0.5, 0.3, 0.15, 0.05};
    for (int i = 0; i < 4; i++)   /* 5 standard deviations */
        cr_expect(fabs(count[i] / 20000.0 - want[i]) < 5 * sqrt(want[i] * (1 - want[i]) / 20000),
                  "token %d drawn %d times", i, count[i]);
}

/* ---- the fused NF4 product's reference ---- */

Test(nf4_gemv, equals_dequant_then_gemm)
{
    backend *be;
    cr_assert_eq(be_open(BE_CPU, &be), DS_OK);
    const int rows = 37, cols = 130, N = 3;   /* blocks of 64 cross rows */
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * N * cols);
    float *deq = malloc(sizeof(float) * rows * cols), *y1 = malloc(sizeof(float) * N * rows),
          *y2 = malloc(sizeof(float) * N * rows);
    tu_fill_uniform(w, (size_t)rows * cols, 1, 0.1f);
    tu_fill_uniform(x, (size_t)N * cols, 2, 1.0f);
    x[5] = 0;   /* a zero input, skipped by both */
    for (int dq = 0; dq < 2; dq++) {
        nf4_tensor t = {0};
        cr_assert_eq(nf4_quantize(w, rows, cols, dq, NF4_OUT_BF16, &t), DS_OK);
        op_nf4_dequant(be, deq, nf4_tensor_view(&t));
        tu_fill_uniform(y1, (size_t)N * rows, 3, 1.0f);
        memcpy(y2, y1, sizeof(float) * N * rows);
        be_matmul_nt(be, y1, x, deq, N, rows, cols, 1.0f);
        op_nf4_gemv(be, y2, x, nf4_tensor_view(&t), N, 1.0f);
        cr_assert_eq(be_sync(be), DS_OK);
        cr_assert(memcmp(y1, y2, sizeof(float) * N * rows) == 0, "double quant %d: the fused product differs", dq);
        nf4_tensor_free(&t);
    }
    free(w), free(x), free(deq), free(y1), free(y2);
    be_close(be);
}
