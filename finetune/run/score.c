/* finetune/run/score.c - a language model's score of texts: the mean
 * negative log-likelihood per token under the base model (no adapter), for
 * the cleaner's quality cut (data/clean/clean.h: clean_scorer).
 *
 * Each text is encoded as training encodes it (with the tokenizer's BOS),
 * cut to its first max_T tokens, and every token after the first is
 * predicted. Texts go through the engine `batch` at a time, one per row,
 * padded to the longest; the per-token log-probabilities come back from
 * engine_forward and each row is summed (batch_row_sum) as eval.c sums a
 * choice's continuation. A text with nothing to predict (one token) gets
 * log(vocab size), the score of a uniform guess: it cannot look good.
 */
#include "run.h"

#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct text_scorer {
    engine *eng;
    const tokenizer *tok;
    int max_T, batch, vocab;
    tok_ids *ids;          /* (batch) */
    uint8_t *train;        /* (max_T) all 1 but the first */
    float *lp;             /* (batch * max_T) */
};

void text_scorer_free(text_scorer *s)
{
    if (!s) return;
    engine_free(s->eng);
    for (int i = 0; s->ids && i < s->batch; i++) tok_ids_free(&s->ids[i]);
    free(s->ids);
    free(s->train);
    free(s->lp);
    free(s);
}

int text_scorer_open(backend *be, const llama_model *m, const tokenizer *tok, int max_T, int batch, text_scorer **out)
{
    *out = NULL;
    if (max_T < 2 || batch < 1) return ds_fail(DS_EINTERNAL, "text_scorer_open: max_T %d, batch %d", max_T, batch);
    text_scorer *s = ds_calloc(1, sizeof *s, "the text scorer");
    if (!s) return DS_ENOMEM;
    s->tok = tok;
    s->max_T = max_T;
    s->batch = batch;
    s->vocab = m->cfg.vocab_size;
    s->ids = ds_calloc((size_t)batch, sizeof *s->ids, "the text scorer");
    s->train = ds_malloc((size_t)max_T, "the text scorer");
    s->lp = ds_calloc((size_t)batch * (size_t)max_T, sizeof *s->lp, "the text scorer");
    int rc = !s->ids || !s->train || !s->lp ? DS_ENOMEM : DS_OK;
    if (!rc) {
        memset(s->train, 1, (size_t)max_T);
        s->train[0] = 0;
        engine_opts eo = {.max_B = batch, .max_T = max_T, .training = false};
        rc = engine_create(be, m, &eo, &s->eng);
    }
    if (rc) {
        text_scorer_free(s);
        return rc;
    }
    *out = s;
    return DS_OK;
}

int text_scorer_score(void *scorer, int n, const char *const *texts, const size_t *lens, double *nll)
{
    text_scorer *s = scorer;
    if (n < 1 || n > s->batch) return ds_fail(DS_EINTERNAL, "text_scorer_score: %d texts, at most %d", n, s->batch);
    int T = 2;
    for (int i = 0; i < n; i++) {
        s->ids[i].n = 0;   /* tok_encode appends */
        int rc = tok_encode(s->tok, texts[i], lens[i], true, &s->ids[i]);
        if (rc) return rc;
        int len = (int)s->ids[i].n < s->max_T ? (int)s->ids[i].n : s->max_T;
        if (len > T) T = len;
    }
    batch b;
    int rc = batch_alloc(&b, n, T);
    for (int i = 0; !rc && i < n; i++) {
        int len = (int)s->ids[i].n < T ? (int)s->ids[i].n : T;
        int col = batch_put(&b, i, 0, s->ids[i].ids, s->train, len, i);
        batch_pad_row(&b, i, col, 0);
    }
    engine_fwd f = {.lora = false};
    if (!rc) rc = engine_forward(s->eng, &b, &f, s->lp, NULL);
    for (int i = 0; !rc && i < n; i++) {
        long predicted = 0;
        for (int t = 0; t < T; t++) predicted += b.targets[i * T + t] >= 0;
        double sum = batch_row_sum(b.targets, T, s->lp, i);
        if (!isfinite(sum))
            rc = ds_fail(DS_EDATA, "scoring: the log-likelihood of a text is %g (a weight of the model is NaN or "
                         "infinite)", sum);
        nll[i] = predicted ? -sum / (double)predicted : log((double)s->vocab);
    }
    batch_free(&b);
    return rc;
}
