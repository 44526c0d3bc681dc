#include "run.h"

#include "core/interrupt.h"
#include "core/mem.h"
#include "core/status.h"

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

/* The log-probabilities of a forward at its targets are finite numbers: a NaN
 * or infinite weight shows here, and an evaluation must not report it as a
 * score. */
static int check_logprobs(const batch *b, const float *lp)
{
    for (int k = 0; k < b->B * b->T; k++)
        if (b->targets[k] >= 0 && !isfinite(lp[k]))
            return ds_fail(DS_EDATA, "evaluation: the log-probability of row %d, position %d is %s (a weight of the "
                                     "model or adapter is NaN or infinite)", k / b->T, k % b->T,
                           isnan(lp[k]) ? "NaN" : "infinite");
    return DS_OK;
}

/* Unicode characters of a UTF-8 string (lm-eval normalises by len(str)). */
static long utf8_chars(const char *s)
{
    long n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* One scored sequence: choice k of example i, prompt + continuation. */
typedef struct {
    int example, choice, len;
} mcq_row;

/* Rows [r0, r1) into one batch of width T, targets on the continuations. */
static int mcq_batch(const dataset *d, const mcq_row *rows, int r0, int r1, int T, batch *b)
{
    int rc = batch_alloc(b, r1 - r0, T);
    for (int r = r0; !rc && r < r1; r++) {
        const mcq_example *x = &d->mcq[rows[r].example];
        int k = rows[r].choice, n = rows[r].len;
        int32_t *ids = ds_malloc(sizeof(int32_t) * (size_t)n, "a multiple-choice row");
        uint8_t *train = ids ? ds_calloc((size_t)n, 1, "a multiple-choice row") : NULL;
        if (!train) {
            free(ids);
            batch_free(b);
            return DS_ENOMEM;
        }
        memcpy(ids, x->prompt, sizeof(int32_t) * (size_t)x->n_prompt);
        memcpy(ids + x->n_prompt, x->choice[k], sizeof(int32_t) * (size_t)x->n_choice[k]);
        memset(train + x->n_prompt, 1, (size_t)x->n_choice[k]);
        int col = batch_put(b, r - r0, 0, ids, train, n, r - r0);
        batch_pad_row(b, r - r0, col, 0);
        free(ids);
        free(train);
    }
    return rc;
}

int eval_mcq(engine *e, const dataset *d, bool lora, long limit, int max_rows, eval_result *out)
{
    memset(out, 0, sizeof *out);
    if (d->kind != EX_MCQ) return ds_fail(DS_EINTERNAL, "eval_mcq on a dataset that is not multiple choice");
    int n = limit >= 0 && limit < d->n ? (int)limit : d->n;
    const int budget = engine_max_tokens(e), maxT = engine_max_T(e);
    /* Every (example, choice) is a row of its own: the rows of one example
     * may land in different forwards, so any example fits the engine. */
    long total = 0;
    out->first = ds_malloc(sizeof(long) * (size_t)(n + 1), "the evaluation's results");
    if (!out->first) return DS_ENOMEM;
    for (int i = 0; i < n; i++) {
        out->first[i] = total;
        total += d->mcq[i].nchoices;
    }
    out->first[n] = total;
    mcq_row *rows = ds_malloc(sizeof *rows * (size_t)total, "the multiple-choice rows");
    out->loglik = rows ? ds_calloc((size_t)total, sizeof(double), "the evaluation's results") : NULL;
    out->pred = out->loglik ? ds_calloc((size_t)n, sizeof(int), "the evaluation's results") : NULL;
    out->pred_norm = out->pred ? ds_calloc((size_t)n, sizeof(int), "the evaluation's results") : NULL;
    int rc = out->pred_norm ? DS_OK : DS_ENOMEM;
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < d->mcq[i].nchoices && !rc; k++) {
            mcq_row *r = &rows[out->first[i] + k];
            *r = (mcq_row){i, k, d->mcq[i].n_prompt + d->mcq[i].n_choice[k]};
            if (r->len > maxT)
                rc = ds_fail(DS_EDATA, "multiple-choice example %d is %d tokens, longer than %d", i, r->len, maxT);
        }
    engine_fwd f = {.lora = lora};
    for (long r0 = 0; r0 < total && !rc;) {
        if (ds_interrupted()) {
            rc = ds_interrupt_status("during evaluation");
            break;
        }
        long r1 = r0;
        int T = 0;
        while (r1 < total) {
            int nt = rows[r1].len > T ? rows[r1].len : T;
            if (r1 > r0 && (r1 + 1 - r0 > max_rows || (r1 + 1 - r0) * nt > budget)) break;
            T = nt;
            r1++;
        }
        batch b;
        rc = mcq_batch(d, rows, (int)r0, (int)r1, T, &b);
        float *lp = rc ? NULL : ds_malloc(sizeof(float) * (size_t)b.B * b.T, "log-probabilities");
        if (!rc && !lp) rc = DS_ENOMEM;
        if (!rc) rc = engine_forward(e, &b, &f, lp, NULL);
        if (!rc) rc = check_logprobs(&b, lp);
        for (long r = r0; !rc && r < r1; r++) out->loglik[r] = batch_row_sum(b.targets, b.T, lp, (int)(r - r0));
        free(lp);
        batch_free(&b);
        r0 = r1;
    }
    /* acc: the most likely continuation; acc_norm: the most likely per character */
    for (int i = 0; !rc && i < n; i++) {
        const mcq_example *x = &d->mcq[i];
        const double *ll = out->loglik + out->first[i];
        double best_norm = -INFINITY;
        for (int k = 0; k < x->nchoices; k++) {
            long chars = utf8_chars(x->choice_text[k]);
            double norm = ll[k] / (double)(chars > 0 ? chars : 1);
            if (ll[k] > ll[out->pred[i]]) out->pred[i] = k;
            if (norm > best_norm) {
                best_norm = norm;
                out->pred_norm[i] = k;
            }
        }
        out->acc += out->pred[i] == x->answer;
        out->acc_norm += out->pred_norm[i] == x->answer;
    }
    free(rows);
    if (rc) {
        eval_result_free(out);
        return rc;
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
        if (ds_interrupted()) {
            rc = ds_interrupt_status("during evaluation");
            break;
        }
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
        float *lp = rc ? NULL : ds_malloc(sizeof(float) * (size_t)b.B * b.T, "log-probabilities");
        if (!rc && !lp) rc = DS_ENOMEM;
        if (!rc) rc = engine_forward(e, &b, &f, lp, NULL);
        if (!rc) rc = check_logprobs(&b, lp);
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
