/* finetune/cli/cmd_generate.c - `ds-ft generate`: continue a prompt, greedy or
 * with temperature and top-p sampling, with or without an adapter.
 *
 *   ds-ft generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N]
 *       [--temperature T] [--top-p P] [--seed S] [--4bit] [--device auto|cpu|cuda]
 *   (the options: GENERATE_OPTS)
 * Each new token runs the model over the whole sequence (no key/value cache):
 * simple, and fast enough for checking what an adapter learned. */
#include "commands.h"
#include "finetune/run/run.h"

#include "core/interrupt.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float p;
    int id;
} cand;

static int by_prob(const void *a, const void *b)
{
    float x = ((const cand *)a)->p, y = ((const cand *)b)->p;
    return (x < y) - (x > y);
}

/* Greedy when temperature is 0; otherwise sample from the smallest set of
 * most likely tokens whose probability reaches top_p. */
static int pick(const float *z, int V, float temperature, float top_p, ds_rng *rng)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    if (temperature <= 0) return best;
    cand *c = malloc(sizeof *c * (size_t)V);
    double sum = 0;
    for (int i = 0; i < V; i++) {
        c[i].p = expf((z[i] - z[best]) / temperature);
        c[i].id = i;
        sum += c[i].p;
    }
    qsort(c, (size_t)V, sizeof *c, by_prob);
    int keep = 0;
    double mass = 0;
    while (keep < V && (keep == 0 || mass < top_p * sum)) mass += c[keep++].p;
    double u = ds_rng_uniform(rng) * mass;
    int id = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        u -= c[i].p;
        if (u <= 0) {
            id = c[i].id;
            break;
        }
    }
    free(c);
    return id;
}

typedef struct {
    const char *model, *adapter, *prompt, *device;
    long max_new, seed;
    double temperature, top_p;
    bool four;
} generate_opts;

static const cli_opt GENERATE_OPTS[] = {
    CLI_MODEL(generate_opts, model, true),
    CLI_ADAPTER(generate_opts, adapter, "a PEFT adapter to add to the model"),
    {"--prompt", ARG_TEXT, offsetof(generate_opts, prompt), "TEXT", NULL, 0, 0, NULL, true, "the text to continue"},
    {"--max-new-tokens", ARG_INT, offsetof(generate_opts, max_new), "N", "64", 1, 1 << 20, NULL, false,
     "stop after this many new tokens (or at EOS)"},
    {"--temperature", ARG_NUM, offsetof(generate_opts, temperature), "T", "0", 0, 100, NULL, false,
     "0 = greedy; otherwise sample from softmax(logits / T)"},
    {"--top-p", ARG_NUM, offsetof(generate_opts, top_p), "P", "1", 1e-9, 1, NULL, false,
     "sample from the smallest set of likeliest tokens whose probability reaches P"},
    {"--seed", ARG_INT, offsetof(generate_opts, seed), "S", "0", 0, LONG_MAX, NULL, false, "seed of the sampling"},
    CLI_4BIT(generate_opts, four),
    CLI_DEVICE(generate_opts, device),
    CLI_END,
};

const cli_spec GENERATE_SPEC = {"generate", "", 0, 0, NULL, "generate text (greedy, or sampled with temperature and top-p)",
                                GENERATE_OPTS, NULL};

int cmd_generate(int argc, char **argv)
{
    generate_opts o;
    cli_parsed p;
    int rc = cli_parse(&GENERATE_SPEC, argc, argv, &o, &p);
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    const char *prompt = o.prompt;
    long max_new = o.max_new;
    float temperature = (float)o.temperature, top_p = (float)o.top_p;
    uint64_t seed = (uint64_t)o.seed;

    ds_run x;
    tok_ids ids = {0};
    ds_run_opts ro = {.device = BE_AUTO, .model_dir = o.model, .adapter_dir = o.adapter, .load_in_4bit = o.four,
                      .double_quant = true};
    rc = be_kind_parse(o.device, &ro.device);
    if (!rc) rc = ds_run_open(&ro, &x);
    if (rc) {
        cli_parsed_free(&p);
        return rc;
    }
    rc = tok_encode(x.tok, prompt, strlen(prompt), true, &ids);
    int maxT = (int)ids.n + (int)max_new;
    if (!rc && maxT > x.model->cfg.max_position)
        rc = ds_fail(DS_EUSAGE, "generate: %d tokens exceed the model's %d positions", maxT, x.model->cfg.max_position);
    if (!rc) {
        engine_opts eo = {.max_B = 1, .max_T = maxT};
        rc = ds_run_start(&x, &eo);
    }
    int V = x.model->cfg.vocab_size, eos = tok_eos_id(x.tok);
    float *z = malloc(sizeof(float) * (size_t)(V ? V : 1)), *lp = malloc(sizeof(float) * (size_t)maxT);
    ds_rng rng = ds_rng_make(seed, DS_STREAM_SAMPLE);
    size_t first_new = ids.n;
    engine_fwd f = {.lora = x.adapter != NULL};
    for (int step = 0; !rc && step < max_new; step++) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while generating");
            break;
        }
        batch b;
        int T = (int)ids.n;
        rc = batch_alloc(&b, 1, T);
        for (int t = 0; !rc && t < T; t++) {
            b.ids[t] = ids.ids[t];
            b.pos[t] = t;
        }
        if (!rc) rc = engine_forward(x.eng, &b, &f, lp, NULL);
        if (!rc) rc = engine_read_logits(x.eng, T - 1, 1, z);
        batch_free(&b);
        size_t bad = rc ? (size_t)V : ds_first_nonfinite(z, (size_t)V);
        if (bad < (size_t)V)   /* no token is chosen from a NaN: a weight of the model or adapter is broken */
            rc = ds_fail(DS_EDATA, "generate: the logits at position %d hold %s for token %zu (a weight of the model%s "
                                   "is NaN or infinite)", T - 1, isnan(z[bad]) ? "NaN" : "an infinity", bad,
                         x.adapter ? " or the adapter" : "");
        if (rc) break;
        int next = pick(z, V, temperature, top_p, &rng);
        if (ids.n == ids.cap) {
            ids.cap = ids.cap ? 2 * ids.cap : 16;
            ids.ids = realloc(ids.ids, sizeof(int32_t) * ids.cap);
        }
        ids.ids[ids.n++] = next;
        if (next == eos) break;
    }
    if (!rc || rc == DS_EINTERRUPTED) {   /* interrupted: what was generated so far, then exit 130 */
        char *text = NULL;
        int drc = tok_decode(x.tok, ids.ids + first_new, ids.n - first_new, true, &text);
        if (!drc) printf("%s%s\n", prompt, text);
        if (!rc) rc = drc;
        free(text);
    }
    free(z);
    free(lp);
    tok_ids_free(&ids);
    ds_run_close(&x);
    cli_parsed_free(&p);
    return rc;
}
