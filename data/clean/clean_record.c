/* data/clean/clean_record.c - one record in the first pass: PII, the
 * per-record rules in their order, and the fingerprints the later stages
 * need (kept in the report's record list; the text is dropped right after).
 */
#include "clean_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int scrub_string(clean_state *s, json_t *str, bool count, bool *drop)
{
    const char *v = json_string_value(str);
    size_t len = json_string_length(str);
    int rc = clean_pii_find(v, len, &s->pii);
    if (rc || s->pii.n == 0) return rc;
    bool any_mask = false;
    for (size_t k = 0; k < s->pii.n; k++) {
        clean_pii_type t = s->pii.m[k].type;
        clean_pii_category c = clean_pii_category_of(t);
        if (!s->mask[c] && !s->drop[c]) continue;     /* off: not even counted */
        if (count) s->rep->pii_found[t]++;
        s->seen[t] = true;
        any_mask |= s->mask[c];
        *drop |= s->drop[c];
    }
    if (!any_mask) return DS_OK;
    size_t n;
    char *masked = clean_pii_mask(v, len, &s->pii, s->mask, &n);
    if (!masked) return ds_fail(DS_ENOMEM, "out of memory");
    rc = json_string_setn(str, masked, n) ? ds_fail(DS_ENOMEM, "out of memory") : DS_OK;
    s->changed = true;
    free(masked);
    return rc;
}

static int scrub(clean_state *s, json_t *v, bool count, bool *drop)
{
    if (json_is_string(v)) return scrub_string(s, v, count, drop);
    int rc = DS_OK;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) if (!rc) rc = scrub(s, x, count, drop);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (!rc) rc = scrub(s, x, count, drop);
    }
    return rc;
}

int clean_scrub(clean_state *s, json_t *v, bool count, bool *drop)
{
    *drop = s->changed = false;
    if (!s->any_pii) return DS_OK;
    memset(s->seen, 0, sizeof s->seen);
    int rc = scrub(s, v, count, drop);
    for (int t = 0; t < PII_NTYPES && count; t++) s->rep->pii_records[t] += s->seen[t];
    return rc;
}

static int hist_bin(size_t words)
{
    int b = 0;
    while (words && b < CLEAN_HIST_BINS - 1) {
        words >>= 1;
        b++;
    }
    return b;
}

/* The first length rule the text breaks, or NULL. */
static const char *length_broken(clean_state *s, int *rc)
{
    const clean_config *c = s->cfg;
    size_t words = s->words.n, chars = s->words.chars;
    if (s->min_words > 0 && words < (size_t)s->min_words) return "min_words";
    if (s->max_words > 0 && words > (size_t)s->max_words) return "max_words";
    if (c->min_chars > 0 && chars < (size_t)c->min_chars) return "min_chars";
    if (c->max_chars > 0 && chars > (size_t)c->max_chars) return "max_chars";
    if (c->min_tokens > 0 || c->max_tokens > 0) {
        s->ids.n = 0;
        *rc = tok_encode(s->job->tok, s->text.counted, s->text.counted_len, false, &s->ids);
        if (*rc) return NULL;
        if (c->min_tokens > 0 && s->ids.n < (size_t)c->min_tokens) return "min_tokens";
        if (c->max_tokens > 0 && s->ids.n > (size_t)c->max_tokens) return "max_tokens";
    }
    return NULL;
}

/* The first repetition rule a counted piece of at least min_words words breaks, or NULL. */
static const char *repetition_broken(clean_state *s, int *rc)
{
    const clean_words *w = &s->words;
    size_t j = 0;
    for (int p = 0; p < s->text.npieces; p++) {
        size_t a = s->text.piece_start[p], b = a + s->text.piece_len[p], w0;
        while (j < w->n && w->start[j] < a) j++;
        w0 = j;
        while (j < w->n && w->start[j] < b) j++;
        if (j - w0 < (size_t)s->cfg->repetition_min_words || j == w0) continue;
        clean_repetition r;
        if ((*rc = clean_repetition_measure(s->text.counted, a, b - a, w, w0, j, &s->scratch, &r))) return NULL;
        const char *why = clean_repetition_broken(&r, s->cfg);
        if (why) return why;
    }
    return NULL;
}

/* Contamination: the record's whole text against the eval n-grams. */
static int contamination(clean_state *s, uint32_t id, bool *hit)
{
    clean_report *r = s->rep;
    const clean_words *w = &s->words;
    const char *text = s->text.counted;
    if (!s->all_text) {
        int rc = clean_words_scan(&s->all_words, s->text.all, s->text.all_len);
        if (rc) return rc;
        w = &s->all_words;
        text = s->text.all;
    }
    uint32_t item;
    size_t at, span;
    *hit = clean_contam_find(r->contam, w, &item, &at, &span);
    if (!*hit) return DS_OK;
    r->contaminated++;
    r->item_hit[item] = 1;
    if (r->nexamples < r->max_examples) {
        clean_contam_example *e = &r->examples[r->nexamples];
        size_t a = w->start[at], b = w->start[at + span - 1] + w->len[at + span - 1];
        e->record = id;
        e->item = item;
        e->ngram = ds_strdupf("%.*s", (int)(b - a), text + a);
        if (!e->ngram) return DS_ENOMEM;
        r->nexamples++;
    }
    return DS_OK;
}

int clean_first_pass(clean_state *s, json_t *obj, const char *type, const char *file, int line, uint32_t id)
{
    clean_report *r = s->rep;
    clean_rec *rec = &r->rec[id];
    int rc = clean_text_of(type, s->all_text, obj, file, line, &s->text);   /* malformed? (before any change) */
    if (rc) return rc;
    bool drop = false;
    if (s->any_pii) {
        if ((rc = clean_scrub(s, obj, true, &drop))) return rc;
        if (drop) {
            clean_report_drop(r, id, RULE_pii, NULL);
            return DS_OK;
        }
        rec->pii = s->changed;
        if (s->changed && (rc = clean_text_of(type, s->all_text, obj, file, line, &s->text))) return rc;   /* masked */
    }
    if ((rc = clean_words_scan(&s->words, s->text.counted, s->text.counted_len))) return rc;
    rec->words = s->words.n > UINT32_MAX ? UINT32_MAX : (uint32_t)s->words.n;
    r->hist[hist_bin(s->words.n)]++;
    const char *why;
    if (s->words.n == 0) {
        clean_report_drop(r, id, RULE_empty, NULL);
        return DS_OK;
    }
    if ((why = length_broken(s, &rc)) || rc) {
        if (!rc) clean_report_drop(r, id, RULE_length, why);
        return rc;
    }
    if ((why = repetition_broken(s, &rc)) || rc) {
        if (!rc) clean_report_drop(r, id, RULE_repetition, why);
        return rc;
    }
    if ((why = clean_charset_broken(&s->words, s->cfg))) {
        clean_report_drop(r, id, RULE_charset, why);
        return DS_OK;
    }
    if (r->contam) {
        bool hit;
        if ((rc = contamination(s, id, &hit))) return rc;
        if (hit && !strcmp(r->contam_action, "drop")) {
            clean_report_drop(r, id, RULE_contamination, NULL);
            return DS_OK;
        }
    }
    rec->exact = clean_exact_hash(&s->words);
    if (s->cfg->exact) {
        uint32_t first;
        if ((rc = clean_map_put(&s->exact, rec->exact, id, &first))) return rc;
        if (first != id) {
            rec->dup_of = first;
            clean_report_drop(r, id, RULE_exact_duplicate, NULL);
            return DS_OK;
        }
    }
    if (s->simhash) rec->simhash = clean_simhash(&s->words, (int)s->cfg->shingle);
    if (s->minhash) clean_minhash(&s->words, (int)s->cfg->shingle, r->nhash, r->sig + (size_t)id * r->nhash);
    return DS_OK;
}
