/* finetune/cli/bench_generate.c - `ds-ft bench generate`: the speed of
 * generation with a key/value cache. A prompt of --prompt-tokens random ids
 * per row (--batch rows) is fed in one prefill, then --new-tokens greedy decode
 * steps run (logits to the host, argmax, the token fed back), after an untimed
 * warm-up of the same kind. Reports prefill and decode tokens/s. The model is
 * a folder (--model, 16-bit or NF4 with --4bit) or a built-in shape with random
 * NF4 weights (--shape, no files: deepseek-llm-7b as QLoRA holds it). --check
 * compares greedy tokens with the cache and by full recompute. */
#include "bench.h"
#include "commands.h"
#include "finetune/engine/engine_decode.h"
#include "finetune/model/model.h"

#include "core/clock.h"
#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *model, *shape, *device;
    long prompt, new_tokens, batch, check;
    bool four, plain;
} bench_gen_opts;

static const cli_opt BENCH_GENERATE_OPTS[] = {
    {"--model", ARG_MODEL, offsetof(bench_gen_opts, model), "DIR|ORG/NAME[@REV]", NULL, 0, 0, NULL, false,
     "a model folder (its weights as they are, or NF4 with --4bit)"},
    {"--shape", ARG_TEXT, offsetof(bench_gen_opts, shape), "NAME|DIR", "deepseek-llm-7b", 0, 0, NULL, false,
     "without --model: a built-in shape (or a folder's config.json) with random NF4 weights"},
    {"--prompt-tokens", ARG_INT, offsetof(bench_gen_opts, prompt), "N", "128", 1, 1 << 20, NULL, false,
     "prompt length per row (the prefill)"},
    {"--new-tokens", ARG_INT, offsetof(bench_gen_opts, new_tokens), "N", "128", 2, 1 << 20, NULL, false,
     "decode steps per row"},
    {"--batch", ARG_INT, offsetof(bench_gen_opts, batch), "N", "1", 1, 256, NULL, false, "rows generated together"},
    {"--check", ARG_INT, offsetof(bench_gen_opts, check), "N", "0", 0, 4096, NULL, false,
     "then N greedy tokens after a 16-token prompt with the cache and by full recompute: how many agree"},
    {"--plain", ARG_FLAG, offsetof(bench_gen_opts, plain), NULL, "off", 0, 0, NULL, false,
     "launch every op of every decode step (CUDA: no recorded steps), to measure what recording saves"},
    CLI_4BIT(bench_gen_opts, four),
    CLI_DEVICE(bench_gen_opts, device),
    CLI_END,
};

const cli_spec BENCH_GENERATE_SPEC = {"bench generate", "", 0, 0, NULL,
                                      "generation with a key/value cache: prefill and decode tokens/s",
                                      BENCH_GENERATE_OPTS, NULL};

typedef struct {
    double prefill_s, decode_s;
} gen_times;

static int argmax(const float *z, int V)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    return best;
}

/* One run: prefill B x P random ids, then `steps` greedy steps of B tokens. */
static int run_once(engine *e, int V, const bench_gen_opts *o, int P, int steps, uint64_t seed, gen_times *t)
{
    const int B = (int)o->batch;
    engine_decoder *d = NULL;
    decoder_opts dopts = {.max_B = B, .ctx = P + steps + 1, .max_step = 512, .plain = o->plain};
    int rc = decoder_create(e, &dopts, &d);
    int32_t *ids = ds_malloc(sizeof(int32_t) * (size_t)B * P, "the prompts"),
            *rows = ds_malloc(sizeof(int32_t) * (size_t)B * P, "the prompts' rows");
    float *logits = ds_malloc(sizeof(float) * (size_t)B * V, "the logits");
    if (!rc && (!ids || !rows || !logits)) rc = DS_ENOMEM;
    ds_rng r = ds_rng_make(seed, DS_STREAM_BENCH);
    for (int i = 0; !rc && i < B * P; i++) ids[i] = (int32_t)ds_rng_below(&r, (uint64_t)V), rows[i] = i / P;
    double t0 = ds_now();
    if (!rc) rc = decoder_feed(d, B * P, ids, rows, logits);
    t->prefill_s = ds_now() - t0;
    t0 = ds_now();
    for (int s = 0; !rc && s < steps; s++) {
        for (int b = 0; b < B; b++) ids[b] = argmax(logits + (size_t)b * V, V), rows[b] = b;
        rc = decoder_feed(d, B, ids, rows, logits);
    }
    t->decode_s = ds_now() - t0;
    decoder_free(d);
    free(ids), free(rows), free(logits);
    return rc;
}

/* --check: greedy tokens after a random 16-token prompt, with the cache and
 * by engine_forward over the whole sequence; where they first part, the
 * recompute's gap between its two best logits (a near tie parts them under
 * bf16 rounding, a bug parts them anywhere). */
static int check_recompute(engine *e, int V, int n, int *agree)
{
    const int P = 16, T = P + n;
    int32_t *seq = ds_malloc(sizeof(int32_t) * (size_t)T, "the check's tokens");
    float *z = ds_malloc(sizeof(float) * (size_t)V, "the logits"), *lp = ds_malloc(sizeof(float) * (size_t)T, "lp");
    engine_decoder *d = NULL;
    decoder_opts dopts = {.max_B = 1, .ctx = T};
    int rc = seq && z && lp ? decoder_create(e, &dopts, &d) : DS_ENOMEM;
    ds_rng r = ds_rng_make(3, DS_STREAM_BENCH);
    for (int i = 0; i < P; i++) seq[i] = (int32_t)ds_rng_below(&r, (uint64_t)V);
    int32_t row[P];
    for (int i = 0; i < P; i++) row[i] = 0;
    if (!rc) rc = decoder_feed(d, P, seq, row, z);
    for (int i = 0; !rc && i < n; i++) {   /* the cached greedy sequence */
        seq[P + i] = argmax(z, V);
        if (i + 1 < n) rc = decoder_feed(d, 1, seq + P + i, row, z);
    }
    *agree = 0;
    batch b = {0};
    if (!rc) rc = batch_alloc(&b, 1, T);
    engine_fwd f = {.lora = false};
    for (int i = 0; !rc && i < n; i++) {   /* the recompute, fed the cached tokens: its choice at each step */
        const int len = P + i;
        b.T = len;
        for (int t = 0; t < len; t++) b.ids[t] = seq[t], b.pos[t] = t, b.seg[t] = 0, b.targets[t] = -1;
        rc = engine_forward(e, &b, &f, lp, NULL);
        if (!rc) rc = engine_read_logits(e, len - 1, 1, z);
        if (rc) break;
        int best = argmax(z, V);
        if (best != seq[len]) {
            float second = -INFINITY;
            for (int k = 0; k < V; k++)
                if (k != best && z[k] > second) second = z[k];
            printf("check: the tokens part at step %d: cached %d, recomputed %d (its two best logits %.4f apart)\n", i,
                   seq[len], best, z[best] - second);
            break;
        }
        ++*agree;
    }
    b.T = T;
    batch_free(&b);
    decoder_free(d);
    free(seq), free(z), free(lp);
    return rc;
}

int bench_generate(int argc, char **argv)
{
    bench_gen_opts o;
    cli_parsed p;
    int rc = cli_parse(&BENCH_GENERATE_SPEC, argc, argv, &o, &p);
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    backend *be = NULL;
    llama_model *m = NULL;
    model_config cfg;
    const char *name = o.model ? o.model : o.shape;
    if (o.model) {
        model_load_opts lo = {.load_in_4bit = o.four, .double_quant = true};
        rc = be_open_named(o.device, &be);
        if (!rc) rc = model_load(o.model, &lo, &m);
    } else {
        rc = model_shape(o.shape, &cfg);
        if (rc) rc = ds_fail_context(DS_EUSAGE, "bench generate: --shape is one of %s or a model folder: ",
                                     model_shape_names());
        if (!rc) rc = be_open_named(o.device, &be);
        if (!rc) rc = model_random(&cfg, 7, &m);
    }
    engine *e = NULL;
    engine_opts eo = {.max_B = 1, .max_T = o.check ? 16 + (int)o.check : 1};
    if (!rc) rc = engine_create(be, m, &eo, &e);
    const int P = (int)o.prompt, steps = (int)o.new_tokens - 1, B = (int)o.batch;
    if (!rc) {
        printf("bench generate: %s (%.2fB parameters, %s linear layers) on %s (%s), batch %d, prompt %d tokens, "
               "%d new tokens%s\n", name, model_config_params(&m->cfg) / 1e9, m->quantized ? "NF4" : "16-bit",
               be_device_name(be), be_name(be), B, P, steps + 1,
               be_can_record(be) ? (o.plain ? ", steps launched op by op (--plain)" : ", steps recorded") : "");
        gen_times warm;
        rc = run_once(e, m->cfg.vocab_size, &o, P < 16 ? P : 16, steps < 8 ? steps : 8, 1, &warm);   /* untimed warm-up */
    }
    gen_times t = {0};
    if (!rc) rc = run_once(e, m->cfg.vocab_size, &o, P, steps, 2, &t);
    if (!rc) {
        double prefill = B * (double)P / t.prefill_s, decode = B * (double)steps / t.decode_s;
        printf("prefill: %d tokens in %.3f s, %.0f tokens/s\n", B * P, t.prefill_s, prefill);
        printf("decode:  %d tokens in %.3f s, %.1f tokens/s (%.2f ms per step of %d)\n", B * steps, t.decode_s, decode,
               1e3 * t.decode_s / steps, B);
        printf("RESULT {\"model\": \"%s\", \"device\": \"%s\", \"quantized\": %s, \"batch\": %d, \"prompt_tokens\": %d, "
               "\"decode_steps\": %d, \"prefill_tokens_per_s\": %.1f, \"decode_tokens_per_s\": %.1f}\n", name,
               be_name(be), m->quantized ? "true" : "false", B, P, steps, prefill, decode);
    }
    if (!rc && o.check) {
        int agree = 0;
        rc = check_recompute(e, m->cfg.vocab_size, (int)o.check, &agree);
        if (!rc) printf("check: %d of %ld greedy tokens with the cache equal the full recompute's\n", agree, o.check);
        if (!rc) printf("RESULT {\"check_tokens\": %ld, \"check_agree\": %d}\n", o.check, agree);
    }
    engine_free(e);
    if (o.model) model_free(m);
    else model_random_free(m);
    be_close(be);
    cli_parsed_free(&p);
    return rc;
}
