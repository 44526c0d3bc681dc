#include "eval.h"

#include "../core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void eval_result_free(eval_result *r)
{
    free(r->loglik);
    free(r->first);
    free(r->pred);
    free(r->pred_norm);
    memset(r, 0, sizeof *r);
}

/* Unicode characters of a UTF-8 string (lm-eval normalises by len(str)). */
static long utf8_chars(const char *s)
{
    long n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Rows (prompt + choice k) of examples [i0, i1) into one batch, targets on the choices. */
static int mcq_batch(const dataset *d, int i0, int i1, int T, batch *b)
{
    int rows = 0;
    for (int i = i0; i < i1; i++) rows += d->mcq[i].nchoices;
    int rc = batch_alloc(b, rows, T);
    int row = 0;
    for (int i = i0; !rc && i < i1; i++) {
        const mcq_example *x = &d->mcq[i];
        for (int k = 0; k < x->nchoices; k++, row++) {
            int n = x->n_prompt + x->n_choice[k];
            int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
            uint8_t *train = calloc((size_t)n, 1);
            memcpy(ids, x->prompt, sizeof(int32_t) * (size_t)x->n_prompt);
            memcpy(ids + x->n_prompt, x->choice[k], sizeof(int32_t) * (size_t)x->n_choice[k]);
            memset(train + x->n_prompt, 1, (size_t)x->n_choice[k]);
            int col = batch_put(b, row, 0, ids, train, n, row);
            batch_pad_row(b, row, col, 0);
            free(ids);
            free(train);
        }
    }
    return rc;
}

static double row_sum(const batch *b, const float *lp, int row)
{
    double s = 0;
    for (int t = 0; t < b->T; t++)
        if (b->targets[(size_t)row * b->T + t] >= 0) s += lp[(size_t)row * b->T + t];
    return s;
}

static int argmax(const double *v, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

int eval_mcq(engine *e, const dataset *d, bool lora, long limit, int max_rows, eval_result *out)
{
    memset(out, 0, sizeof *out);
    if (d->kind != EX_MCQ) return ds_fail(DS_EINTERNAL, "eval_mcq on a dataset that is not multiple choice");
    int n = limit >= 0 && limit < d->n ? (int)limit : d->n;
    long total = 0;
    out->first = malloc(sizeof(long) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        out->first[i] = total;
        total += d->mcq[i].nchoices;
    }
    out->first[n] = total;
    out->loglik = calloc((size_t)(total ? total : 1), sizeof(double));
    out->pred = calloc((size_t)(n ? n : 1), sizeof(int));
    out->pred_norm = calloc((size_t)(n ? n : 1), sizeof(int));
    engine_fwd f = {.lora = lora};
    const int budget = engine_max_tokens(e), maxT = engine_max_T(e);
    int rc = DS_OK;
    for (int i0 = 0; i0 < n && !rc;) {
        /* As many whole examples as fit the row and token budgets. */
        int i1 = i0, rows = 0, T = 0;
        while (i1 < n) {
            const mcq_example *x = &d->mcq[i1];
            int t = 0;
            for (int k = 0; k < x->nchoices; k++)
                if (x->n_prompt + x->n_choice[k] > t) t = x->n_prompt + x->n_choice[k];
            if (t > maxT) return ds_fail(DS_EDATA, "multiple-choice example %d is %d tokens, longer than %d", i1, t, maxT);
            int nt = t > T ? t : T, nr = rows + x->nchoices;
            if (i1 > i0 && (nr > max_rows || (long)nr * nt > budget)) break;
            T = nt;
            rows = nr;
            i1++;
        }
        batch b;
        rc = mcq_batch(d, i0, i1, T, &b);
        float *lp = malloc(sizeof(float) * (size_t)b.B * b.T);
        if (!rc) rc = engine_forward(e, &b, &f, lp, NULL);
        for (int i = i0, row = 0; !rc && i < i1; i++) {
            const mcq_example *x = &d->mcq[i];
            double *ll = out->loglik + out->first[i];
            double norm[64];
            for (int k = 0; k < x->nchoices; k++, row++) {
                ll[k] = row_sum(&b, lp, row);
                long chars = utf8_chars(x->choice_text[k]);
                if (k < 64) norm[k] = ll[k] / (double)(chars > 0 ? chars : 1);
            }
            out->pred[i] = argmax(ll, x->nchoices);
            out->pred_norm[i] = argmax(norm, x->nchoices < 64 ? x->nchoices : 64);
            out->acc += out->pred[i] == x->answer;
            out->acc_norm += out->pred_norm[i] == x->answer;
        }
        free(lp);
        batch_free(&b);
        i0 = i1;
    }
    out->n = n;
    if (n) {
        out->acc /= n;
        out->acc_norm /= n;
    }
    return rc;
}

int eval_loss(engine *e, const dataset *d, bool lora, long limit, int max_rows, eval_result *out)
{
    memset(out, 0, sizeof *out);
    if (d->kind != EX_SFT) return ds_fail(DS_EINTERNAL, "eval_loss on a dataset that is not supervised text");
    int n = limit >= 0 && limit < d->n ? (int)limit : d->n;
    engine_fwd f = {.lora = lora};
    const int budget = engine_max_tokens(e), maxT = engine_max_T(e);
    double nll = 0;
    int rc = DS_OK;
    for (int i0 = 0; i0 < n && !rc;) {
        int i1 = i0, T = 0;
        while (i1 < n) {
            int t = d->sft[i1].n < maxT ? d->sft[i1].n : maxT;
            int nt = t > T ? t : T;
            if (i1 > i0 && (i1 + 1 - i0 > max_rows || (long)(i1 + 1 - i0) * nt > budget)) break;
            T = nt;
            i1++;
        }
        batch b;
        rc = batch_alloc(&b, i1 - i0, T);
        for (int i = i0; !rc && i < i1; i++) {
            const sft_example *x = &d->sft[i];
            int col = batch_put(&b, i - i0, 0, x->ids, x->train, x->n < T ? x->n : T, i - i0);
            batch_pad_row(&b, i - i0, col < T ? col : T, 0);
        }
        float *lp = malloc(sizeof(float) * (size_t)b.B * b.T);
        if (!rc) rc = engine_forward(e, &b, &f, lp, NULL);
        for (int k = 0; !rc && k < b.B * b.T; k++)
            if (b.targets[k] >= 0) {
                nll -= lp[k];
                out->tokens++;
            }
        free(lp);
        batch_free(&b);
        i0 = i1;
    }
    out->n = n;
    out->loss = out->tokens ? nll / out->tokens : 0;
    out->perplexity = exp(out->loss);
    return rc;
}
