/* data/clean/clean_contam.c - contamination: training records that share
 * an n-gram of words with an item of an evaluation set.
 *
 * Every eval item (a record of an eval file: all its fields, taken as its
 * dataset type reads them when the type can be told from its fields, else
 * all its strings) adds the hashes of its n-grams of normalised words to one
 * table (13 words by default, as used to decontaminate evaluation sets). An
 * item shorter than n words adds its whole word sequence instead, when it has
 * at least MIN_SHORT words (fewer would match ordinary phrases). A training
 * record is contaminated when one of its n-word windows - or a window of the
 * length of such a short item - hashes into the table.
 */
#include "clean_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/jsonl.h"

#include <stdlib.h>
#include <string.h>

#define MIN_SHORT 8

struct clean_contam {
    int n;
    clean_map grams;           /* n-gram hash -> the first item with it */
    bool short_len[64];        /* lengths of short items present (< n <= 64) */
    char **where;              /* (items) "file:line" */
    size_t items, cap_items;
};

size_t clean_contam_items(const clean_contam *c) { return c->items; }
const char *clean_contam_where(const clean_contam *c, uint32_t item) { return c->where[item]; }

void clean_contam_free(clean_contam *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->items; i++) free(c->where[i]);
    free(c->where);
    clean_map_free(&c->grams);
    free(c);
}

/* Every string of a JSON value, newline-joined (an eval record of no known type). */
static int all_strings(const json_t *v, clean_text *t)
{
    if (json_is_string(v)) {
        size_t n = json_string_length(v);
        if (ds_grow(&t->all, &t->cap_all, t->all_len + n + 2, 1)) return DS_ENOMEM;
        if (t->all_len) t->all[t->all_len++] = '\n';
        memcpy(t->all + t->all_len, json_string_value(v), n);
        t->all_len += n;
        return DS_OK;
    }
    int rc = DS_OK;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!rc) rc = all_strings(x, t);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (!rc) rc = all_strings(x, t);
    }
    return rc;
}

static int add_item(clean_contam *c, const clean_words *w, const char *file, int line)
{
    if (w->n < (size_t)c->n && w->n < MIN_SHORT) return DS_OK;
    if (ds_grow(&c->where, &c->cap_items, c->items + 1, sizeof *c->where)) return DS_ENOMEM;
    c->where[c->items] = ds_strdupf("%s:%d", file, line);
    if (!c->where[c->items]) return DS_ENOMEM;
    uint32_t id = (uint32_t)c->items++;
    size_t k = w->n < (size_t)c->n ? w->n : (size_t)c->n;
    if (k < (size_t)c->n) c->short_len[k] = true;
    int rc = DS_OK;
    uint32_t first;
    for (size_t i = 0; i + k <= w->n && !rc; i++) rc = clean_map_put(&c->grams, clean_ngram_hash(w, i, k), id, &first);
    return rc;
}

static int load_file(clean_contam *c, const char *path, bool skip_bad_lines, clean_text *t, clean_words *w)
{
    jsonl_reader *r;
    int rc = jsonl_open(path, 0, &r);
    if (rc) return rc;
    for (;;) {
        json_t *obj;
        int line;
        rc = jsonl_next(r, &obj, &line);
        if (rc == DS_OK && !obj) break;
        if (rc == DS_OK) {
            const char *type = clean_guess_type(obj);
            rc = type ? clean_text_of(type, true, obj, path, line, t) : DS_EDATA;
            if (rc == DS_ENOMEM || rc == DS_EINTERNAL) {
                json_decref(obj);
                break;
            }
            if (rc) {                     /* no dataset type fits: every string it holds */
                ds_clear_error();
                t->all_len = 0;
                rc = all_strings(obj, t);
            }
            if (!rc) rc = clean_words_scan(w, t->all ? t->all : "", t->all_len);
            if (!rc) rc = add_item(c, w, path, line);
            json_decref(obj);
        }
        if (rc == DS_EDATA && skip_bad_lines && jsonl_can_continue(r)) {
            ds_clear_error();
            continue;
        }
        if (rc) break;
    }
    jsonl_close(r);
    return rc;
}

int clean_contam_load(const char *const *files, int nfiles, int n, bool skip_bad_lines, clean_contam **out)
{
    *out = NULL;
    if (n < 1 || n > 63) return ds_fail(DS_ECONFIG, "contamination n-gram of %d words: 1 to 63", n);
    clean_contam *c = ds_calloc(1, sizeof *c, "the eval n-grams");
    if (!c) return DS_ENOMEM;
    c->n = n;
    int rc = DS_OK;
    clean_text t = {0};
    clean_words w = {0};
    for (int i = 0; i < nfiles && !rc; i++) rc = load_file(c, files[i], skip_bad_lines, &t, &w);
    clean_text_free(&t);
    clean_words_free(&w);
    if (rc) {
        clean_contam_free(c);
        return rc;
    }
    *out = c;
    return DS_OK;
}

bool clean_contam_find(const clean_contam *c, const clean_words *w, uint32_t *item, size_t *at, size_t *span)
{
    for (size_t k = (size_t)c->n; k > 0; k--) {   /* n, then the lengths of short items */
        if (k < (size_t)c->n && !c->short_len[k]) continue;
        for (size_t i = 0; i + k <= w->n; i++)
            if (clean_map_get(&c->grams, clean_ngram_hash(w, i, k), item)) {
                *at = i;
                *span = k;
                return true;
            }
    }
    return false;
}
