/* losses/forbidden_tokens.c - a penalty on the probability the model gives
 * to a set of tokens F, added to the main loss (sft or dpo):
 *
 *   L = λ · mean_i -log(1 - P_i),   P_i = sum_{t in F} p_it
 *
 * over the rows that have a target (completion positions). With
 * dP/dz_j = p_j ([j in F] - P):   dL_i/dz_j = w (p_j [j in F] - P p_j) / (1 - P),
 * i.e. a_i = -w P/(1-P), c_i = w/(1-P), where w = λ / (rows of the step).
 *
 * The set is given as token ids and/or strings. A string forbids the first
 * token of its encoding and the first token of its encoding with a leading
 * space (BPE vocabularies usually hold both " word" and "word"), which is
 * what stops a model from starting to say it. */
#include "loss.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double weight;
    opt_ints ids;
    opt_strings strings;
    int32_t *set;     /* resolved ids, sorted, unique */
    int nset;
    size_t cap_set;
} forbidden_cfg;

static const opt_key FORBIDDEN_KEYS[] = {
    {"weight", OPT_FLOAT, offsetof(forbidden_cfg, weight), "1.0", 0, 1e6, NULL, 0, "λ: weight of the penalty"},
    {"ids", OPT_INT_LIST, offsetof(forbidden_cfg, ids), "[]", 0, 1e9, NULL, 0, "forbidden token ids"},
    {"strings", OPT_STRING_LIST, offsetof(forbidden_cfg, strings), "[]", 0, -1, NULL, 0,
     "forbidden words (their first token, with and without a leading space)"},
    OPT_END,
};

static int add_id(forbidden_cfg *c, int32_t id)
{
    for (int i = 0; i < c->nset; i++)
        if (c->set[i] == id) return DS_OK;
    if (ds_grow(&c->set, &c->cap_set, (size_t)c->nset + 1, sizeof *c->set)) return DS_ENOMEM;
    c->set[c->nset++] = id;
    return DS_OK;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int forbidden_check(const void *cfg, const char *where)
{
    const forbidden_cfg *c = cfg;
    if (c->ids.n == 0 && c->strings.n == 0) return ds_fail(DS_ECONFIG, "%s: forbidden_tokens needs `ids` or `strings`", where);
    for (int i = 0; i < c->strings.n; i++)
        if (!*c->strings.items[i]) return ds_fail(DS_ECONFIG, "%s: strings: an empty string forbids nothing", where);
    return DS_OK;
}

static int forbidden_prepare(void *cfg, const loss_env *env)
{
    forbidden_cfg *c = cfg;
    for (int i = 0; i < c->ids.n; i++) {
        if (c->ids.items[i] < 0 || c->ids.items[i] >= env->vocab_size)
            return ds_fail(DS_ECONFIG, "%s: ids: token id %lld is outside the vocabulary (0..%d)", env->where,
                           (long long)c->ids.items[i], env->vocab_size - 1);
        if (add_id(c, (int32_t)c->ids.items[i])) return DS_ENOMEM;
    }
    for (int i = 0; i < c->strings.n; i++) {
        if (!env->encode) return ds_fail(DS_EINTERNAL, "%s: strings need a tokenizer", env->where);
        const char *s = c->strings.items[i];
        for (int space = 0; space < 2; space++) {
            char *text = space ? ds_strdupf(" %s", s) : NULL;
            if (space && !text) return DS_ENOMEM;
            int32_t *ids = NULL;
            size_t n = 0;
            int rc = env->encode(env->tok, space ? text : s, &ids, &n);
            free(text);
            if (rc) return ds_fail_context(rc, "%s: strings[%d]: ", env->where, i);
            rc = n > 0 ? add_id(c, ids[0]) : DS_OK;
            free(ids);
            if (rc) return rc;
        }
    }
    qsort(c->set, (size_t)c->nset, sizeof *c->set, cmp_i32);
    return DS_OK;
}

static void forbidden_ids(const void *cfg, const int32_t **ids, int *n)
{
    const forbidden_cfg *c = cfg;
    *ids = c->set;
    *n = c->nset;
}

static double forbidden_count(const void *cfg, const loss_input *in)
{
    (void)cfg;
    return loss_count_targets(in);
}

/* 1 - P is kept at least this far from 0 so that the loss stays finite. */
#define MIN_REST 1e-6

static int forbidden_forward(const void *cfg, const loss_input *in, double norm, loss_output *out)
{
    const forbidden_cfg *c = cfg;
    if (!in->fmass) return ds_fail(DS_EINTERNAL, "forbidden_tokens: no forbidden-mass statistics");
    if (!out->c) return ds_fail(DS_EINTERNAL, "forbidden_tokens: no c coefficients");
    double sum = 0, mass = 0, count = 0;
    double w = norm > 0 ? c->weight / norm : 0.0;
    for (int i = 0; i < in->B * in->T; i++) {
        if (in->targets[i] < 0) continue;
        double P = in->fmass[i], rest = 1.0 - P;
        if (rest < MIN_REST) rest = MIN_REST;
        sum += -log(rest);
        mass += P;
        count += 1;
        out->a[i] += (float)(-w * P / rest);
        out->c[i] += (float)(w / rest);
    }
    out->loss += w * sum;
    loss_metrics_add(&out->metrics, "forbidden/penalty", sum, count);
    loss_metrics_add(&out->metrics, "forbidden/prob", mass, count);
    return DS_OK;
}

static void forbidden_free(void *cfg)
{
    forbidden_cfg *c = cfg;
    free(c->set);
    c->set = NULL;
    c->cap_set = 0;
    c->nset = 0;
}

const loss_module LOSS_FORBIDDEN_TOKENS = {
    .name = "forbidden_tokens",
    .summary = "penalty -log(1 - P(forbidden tokens)) per completion position, added to the main loss",
    .is_penalty = true,
    .needs = LOSS_NEEDS_FORBIDDEN,
    .keys = FORBIDDEN_KEYS,
    .cfg_size = sizeof(forbidden_cfg),
    .check = forbidden_check,
    .prepare = forbidden_prepare,
    .forbidden_ids = forbidden_ids,
    .count = forbidden_count,
    .forward = forbidden_forward,
    .free_cfg = forbidden_free,
};
