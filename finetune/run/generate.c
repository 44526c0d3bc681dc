/* finetune/run/generate.c - generation for a batch of prompts on a decoder:
 * the prompts' tokens in one prefill, then one decode step per new token for
 * every prompt still going (generate.h). */
#include "generate.h"

#include "core/clock.h"
#include "core/interrupt.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *gen_end_name(gen_end e) { return e == GEN_EOS ? "eos" : e == GEN_STOP ? "stop" : "length"; }

void gen_result_free(gen_result *r)
{
    tok_ids_free(&r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static int push(tok_ids *v, int32_t id)
{
    if (ds_grow(&v->ids, &v->cap, v->n + 1, sizeof *v->ids)) return DS_ENOMEM;
    v->ids[v->n++] = id;
    return DS_OK;
}

/* res->text from its tokens, cut before the earliest stop string; whether one was found. */
static int make_text(const tokenizer *tok, const gen_opts *o, gen_result *res, bool *stopped)
{
    free(res->text);
    res->text = NULL;
    int rc = tok_decode(tok, res->ids.ids, res->ids.n, true, &res->text);
    if (rc) return rc;
    char *cut = NULL;
    for (int i = 0; i < o->nstop; i++) {
        if (!o->stop[i][0]) continue;
        char *at = strstr(res->text, o->stop[i]);
        if (at && (!cut || at < cut)) cut = at;
    }
    if (cut) *cut = 0;
    *stopped = cut != NULL;
    return DS_OK;
}

/* Stream what of res->text is final past *emitted: all of it once `done`;
 * before, less a tail that could begin a stop string or is an unfinished
 * character (decoded as U+FFFD). */
static void stream(const gen_opts *o, int b, const gen_result *res, size_t *emitted, bool done)
{
    if (!o->on_text || !res->text) return;
    size_t len = strlen(res->text), hold = 0;
    if (!done) {
        for (int i = 0; i < o->nstop; i++)
            for (size_t k = strlen(o->stop[i]); k-- > 1;)   /* the longest proper prefix of a stop string ending the text */
                if (k <= len && k > hold && memcmp(res->text + len - k, o->stop[i], k) == 0) hold = k;
        while (len - hold >= 3 && memcmp(res->text + len - hold - 3, "\xEF\xBF\xBD", 3) == 0) hold += 3;
    }
    if (len - hold > *emitted) {
        o->on_text(o->on_text_ctx, b, res->text + *emitted, len - hold - *emitted);
        *emitted = len - hold;
    }
}

/* The next token of prompt b from its logits z (V). */
static int next_token(const float *z, int V, const gen_opts *o, const tok_ids *hist, ds_rng *rng, float *probs,
                      int32_t *out)
{
    size_t bad = ds_first_nonfinite(z, (size_t)V);
    if (bad < (size_t)V)   /* no token is chosen from a NaN: a weight of the model or adapter is broken */
        return ds_fail(DS_EDATA, "generate: the logits at position %zu hold %s for token %zu (a weight of the model "
                                 "or the adapter is NaN or infinite)", hist->n - 1,
                       isnan(z[bad]) ? "NaN" : "an infinity", bad);
    int rc = sampler_probs(z, V, &o->sample, hist->ids, hist->n, probs);
    if (rc) return rc;
    *out = sampler_pick(probs, V, rng);
    return DS_OK;
}

int generate(engine_decoder *d, const tokenizer *tok, int V, int B, const tok_ids *prompts, const gen_opts *o,
             gen_result *res, gen_stats *st)
{
    gen_stats stats = {0};
    memset(res, 0, sizeof *res * (size_t)B);
    size_t total = 0;
    for (int b = 0; b < B; b++) {
        if (!prompts[b].n) return ds_fail(DS_EUSAGE, "generate: prompt %d has no tokens", b + 1);
        total += prompts[b].n;
    }
    float *logits = ds_malloc(sizeof(float) * (size_t)B * V, "the logits of a batch");
    float *probs = ds_malloc(sizeof(float) * (size_t)V, "the sampler's probabilities");
    int32_t *feed = ds_malloc(sizeof(int32_t) * (total + (size_t)B), "the tokens of a step");
    int32_t *rows = ds_malloc(sizeof(int32_t) * (total + (size_t)B), "the rows of a step");
    tok_ids *hist = ds_calloc((size_t)B, sizeof *hist, "the sequences");
    bool *active = ds_calloc((size_t)B, sizeof *active, "the sequences");
    ds_rng *rng = ds_calloc((size_t)B, sizeof *rng, "the samplers");
    size_t *emitted = ds_calloc((size_t)B, sizeof *emitted, "the streamed lengths");
    int rc = logits && probs && feed && rows && hist && active && rng && emitted ? DS_OK : DS_ENOMEM;

    /* prefill: each prompt's tokens past what its row holds already (at least its last) */
    int n = 0;
    for (int b = 0; !rc && b < B; b++) {
        size_t start = (size_t)decoder_len(d, b);
        if (start >= prompts[b].n) start = prompts[b].n - 1;
        decoder_truncate(d, b, (int)start);
        for (size_t i = start; i < prompts[b].n; i++, n++) feed[n] = prompts[b].ids[i], rows[n] = b;
        for (size_t i = 0; !rc && i < prompts[b].n; i++) rc = push(&hist[b], prompts[b].ids[i]);
        rng[b] = ds_rng_make(o->seed, ((uint64_t)DS_STREAM_SAMPLE << 32) + o->first_stream + (uint64_t)b);
        active[b] = o->max_new > 0;
        res[b].end = GEN_LENGTH;
    }
    double t0 = ds_now();
    if (!rc) rc = decoder_feed(d, n, feed, rows, logits);
    stats.prompt_tokens = n;
    stats.prefill_s = ds_now() - t0;

    t0 = ds_now();
    for (int live = B; !rc && live > 0;) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while generating");
            break;
        }
        n = 0;
        for (int b = 0; !rc && b < B; b++) {
            if (!active[b]) continue;
            int32_t t;
            rc = next_token(logits + (size_t)b * V, V, o, &hist[b], &rng[b], probs, &t);
            if (!rc) rc = push(&res[b].ids, t);
            if (!rc) rc = push(&hist[b], t);
            if (rc) break;
            stats.new_tokens++;
            bool stopped = false;
            for (int k = 0; k < o->nstop_ids; k++)
                if (t == o->stop_ids[k]) res[b].end = GEN_EOS, stopped = true;
            if (!stopped && (o->nstop || o->on_text)) {
                rc = make_text(tok, o, &res[b], &stopped);
                if (stopped) res[b].end = GEN_STOP;
                if (!rc && !stopped) stream(o, b, &res[b], &emitted[b], false);
            }
            if (!stopped && res[b].ids.n >= (size_t)o->max_new) stopped = true;
            if (stopped) {
                active[b] = false;
                live--;
            } else {
                feed[n] = t, rows[n] = b, n++;
            }
        }
        if (!rc && n) rc = decoder_feed(d, n, feed, rows, logits);
        if (!rc) stats.decode_tokens += n;
    }
    stats.decode_s = ds_now() - t0;
    for (int b = 0; (!rc || rc == DS_EINTERRUPTED) && b < B; b++) {   /* interrupted: the text so far */
        bool stopped;
        int trc = make_text(tok, o, &res[b], &stopped);
        if (trc) rc = trc;
        else stream(o, b, &res[b], &emitted[b], true);
    }
    if (rc && rc != DS_EINTERRUPTED)
        for (int b = 0; b < B; b++) gen_result_free(&res[b]);
    for (int b = 0; hist && b < B; b++) tok_ids_free(&hist[b]);
    free(logits), free(probs), free(feed), free(rows), free(hist), free(active), free(rng), free(emitted);
    if (st) *st = stats;
    return rc;
}

int generate_recompute(engine *e, bool lora, const tokenizer *tok, int V, const tok_ids *prompt, const gen_opts *o,
                       gen_result *res, gen_stats *st)
{
    gen_stats stats = {0};
    memset(res, 0, sizeof *res);
    res->end = GEN_LENGTH;
    tok_ids seq = {0};
    float *z = ds_malloc(sizeof(float) * (size_t)V, "the logits of a token");
    float *probs = ds_malloc(sizeof(float) * (size_t)V, "the sampler's probabilities");
    float *lp = ds_malloc(sizeof(float) * (prompt->n + (size_t)o->max_new), "the log-probabilities of a row");
    int rc = z && probs && lp ? DS_OK : DS_ENOMEM;
    for (size_t i = 0; !rc && i < prompt->n; i++) rc = push(&seq, prompt->ids[i]);
    ds_rng rng = ds_rng_make(o->seed, (uint64_t)DS_STREAM_SAMPLE << 32);
    engine_fwd f = {.lora = lora};
    double t0 = ds_now();
    for (int step = 0; !rc && step < o->max_new; step++) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("while generating");
            break;
        }
        batch b;
        const int T = (int)seq.n;
        rc = batch_alloc(&b, 1, T);
        for (int t = 0; !rc && t < T; t++) b.ids[t] = seq.ids[t], b.pos[t] = t;
        if (!rc) rc = engine_forward(e, &b, &f, lp, NULL);
        if (!rc) rc = engine_read_logits(e, T - 1, 1, z);
        batch_free(&b);
        int32_t t;
        if (!rc) rc = next_token(z, V, o, &seq, &rng, probs, &t);
        if (!rc) rc = push(&seq, t);
        if (!rc) rc = push(&res->ids, t);
        if (rc) break;
        if (!stats.new_tokens++) {   /* the first forward reads the prompt: it is the prefill */
            stats.prompt_tokens = (long)prompt->n;
            stats.prefill_s = ds_now() - t0;
        }
        bool stopped = false;
        for (int k = 0; k < o->nstop_ids; k++)
            if (t == o->stop_ids[k]) res->end = GEN_EOS, stopped = true;
        if (!stopped && o->nstop) {
            rc = make_text(tok, o, res, &stopped);
            if (stopped) res->end = GEN_STOP;
        }
        if (stopped) break;
    }
    stats.decode_s = ds_now() - t0 - stats.prefill_s;
    stats.decode_tokens = stats.new_tokens > 0 ? stats.new_tokens - 1 : 0;
    if (!rc || rc == DS_EINTERRUPTED) {
        bool stopped;
        int trc = make_text(tok, o, res, &stopped);
        if (trc) rc = trc;
    }
    if (rc && rc != DS_EINTERRUPTED) gen_result_free(res);
    tok_ids_free(&seq);
    free(z), free(probs), free(lp);
    if (st) *st = stats;
    return rc;
}
