/* data/tokenizer/tokenizer_model.c - reading the "model" of a tokenizer.json (BPE). */
#include "tokenizer_internal.h"
#include "data/json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ID (1 << 24)   /* far above any real vocabulary; keeps id-indexed tables sane */

/* An optional string of the model, copied ("" adds nothing: as if absent). */
static int opt_string(const tokenizer *t, json_t *m, const char *key, char **out, size_t *len)
{
    char *at = ds_strdupf("%s: model", t->what);
    const char *v = NULL;
    int rc = at ? json_get_str(m, key, NULL, at, &v) : DS_ENOMEM;
    free(at);
    *out = NULL;
    *len = rc || !v ? 0 : json_string_length(json_object_get(m, key));
    if (!*len) return rc;
    if (!(*out = ds_malloc(*len + 1, "a tokenizer string"))) return DS_ENOMEM;
    memcpy(*out, v, *len + 1);
    return DS_OK;
}

static int opt_bool(const tokenizer *t, json_t *m, const char *key, bool *out)
{
    char *at = ds_strdupf("%s: model", t->what);
    int rc = at ? json_get_bool(m, key, false, at, out) : DS_ENOMEM;
    free(at);
    return rc;
}

static int load_vocab(tokenizer *t, json_t *vocab)
{
    tk_bpe *m = &t->bpe;
    if (!json_is_object(vocab)) return ds_fail(DS_EDATA, "%s: model: \"vocab\" is missing or not an object", t->what);
    const char *key;
    json_t *v;
    int32_t maxid = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= MAX_ID)
            return ds_fail(DS_EDATA, "%s: model.vocab: token '%s' has a bad id (expected an integer in [0, %d))",
                           t->what, key, MAX_ID);
        int32_t id = (int32_t)json_integer_value(v);
        if (tk_strmap_put(&m->vocab, key, strlen(key), id)) return DS_ENOMEM;
        if (id > maxid) maxid = id;
    }
    m->nr = maxid + 1;
    m->r_ent = ds_malloc(((size_t)m->nr + 1) * sizeof *m->r_ent, "the vocabulary's ids");
    if (!m->r_ent) return DS_ENOMEM;
    for (int32_t i = 0; i < m->nr; i++) m->r_ent[i] = UINT32_MAX;
    for (size_t e = 0; e < m->vocab.n; e++) {
        int32_t id = m->vocab.ent[e].val;
        if (m->r_ent[id] != UINT32_MAX)
            return ds_fail(DS_EDATA, "%s: model.vocab: id %d is given to both '%s' and '%s'", t->what, id,
                           m->vocab.arena.p + m->vocab.ent[m->r_ent[id]].off, m->vocab.arena.p + m->vocab.ent[e].off);
        m->r_ent[id] = (uint32_t)e;
    }
    return DS_OK;
}

/* One merge "a b" / ["a", "b"]: the pair's ids and the merged token's id. */
static int add_merge(tokenizer *t, ds_buf *tmp, size_t i, uint32_t rank, const char *a, size_t na, const char *b,
                     size_t nb)
{
    tk_bpe *m = &t->bpe;
    int32_t ia = tk_strmap_get(&m->vocab, a, na), ib = tk_strmap_get(&m->vocab, b, nb);
    if (ia < 0 || ib < 0)
        return ds_fail(DS_EDATA, "%s: model.merges[%zu]: '%.*s' is not in the vocabulary", t->what, i,
                       (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
    /* HF drops the continuing-subword prefix of the right part */
    if (nb < m->prefix_len)
        return ds_fail(DS_EDATA, "%s: model.merges[%zu]: '%.*s' is shorter than continuing_subword_prefix",
                       t->what, i, (int)nb, b);
    tmp->len = 0;
    if (ds_buf_append(tmp, a, na) || ds_buf_append(tmp, b + m->prefix_len, nb - m->prefix_len)) return DS_ENOMEM;
    int32_t im = tk_strmap_get(&m->vocab, tmp->p, tmp->len);
    if (im < 0)
        return ds_fail(DS_EDATA, "%s: model.merges[%zu]: the merged token '%.*s' is not in the vocabulary", t->what,
                       i, (int)tmp->len, tmp->p);
    int rc = tk_pairmap_put(&m->merges, ia, ib, rank, im);
    if (rc) return rc;
    m->merge_list[m->nmerge][0] = ia;   /* rank == nmerge: a rank is given to each merge in turn */
    m->merge_list[m->nmerge++][1] = ib;
    return DS_OK;
}

static int load_merges(tokenizer *t, json_t *merges)
{
    if (!json_is_array(merges)) return ds_fail(DS_EDATA, "%s: model: \"merges\" is missing or not a list", t->what);
    int rc = tk_pairmap_init(&t->bpe.merges, json_array_size(merges));
    if (!rc && !(t->bpe.merge_list = ds_calloc(json_array_size(merges) + 1, sizeof *t->bpe.merge_list, "the merges")))
        rc = DS_ENOMEM;
    uint32_t rank = 0;
    ds_buf tmp = {0};
    for (size_t i = 0; !rc && i < json_array_size(merges); i++) {
        json_t *v = json_array_get(merges, i);
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t n = json_string_length(v);
            if (n >= 8 && !memcmp(s, "#version", 8)) continue;   /* merges.txt header: not a merge, no rank */
            const char *sp = memchr(s, ' ', n);
            if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
                rc = ds_fail(DS_EDATA, "%s: model.merges[%zu]: expected two tokens separated by one space", t->what,
                             i);
            else
                rc = add_merge(t, &tmp, i, rank, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp + 1 - s));
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
            rc = add_merge(t, &tmp, i, rank, json_string_value(a), json_string_length(a), json_string_value(b),
                           json_string_length(b));
        } else
            rc = ds_fail(DS_EDATA, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", t->what, i);
        rank++;
    }
    ds_buf_free(&tmp);
    return rc;
}

int tk_load_model(tokenizer *t, json_t *j)
{
    tk_bpe *m = &t->bpe;
    if (!json_is_object(j)) return ds_fail(DS_EDATA, "%s: \"model\" is missing or not an object", t->what);
    const char *type = json_string_value(json_object_get(j, "type"));
    /* old files leave "type" out; a BPE model is recognised by its merges */
    if (type ? strcmp(type, "BPE") != 0 : !json_object_get(j, "merges"))
        return ds_fail(DS_EDATA, "%s: model: model type '%s' is not supported (only BPE)", t->what,
                       type ? type : "(unnamed, without merges)");
    json_t *dropout = json_object_get(j, "dropout");
    if (dropout && !json_is_null(dropout) && (!json_is_number(dropout) || json_number_value(dropout) != 0.0))
        return ds_fail(DS_EDATA, "%s: model: BPE dropout %g is not supported (it makes encoding random)", t->what,
                       json_number_value(dropout));
    int rc;
    char *unk;
    size_t unk_len;
    if ((rc = opt_string(t, j, "continuing_subword_prefix", &m->prefix, &m->prefix_len)) ||
        (rc = opt_string(t, j, "end_of_word_suffix", &m->suffix, &m->suffix_len)) ||
        (rc = opt_bool(t, j, "fuse_unk", &m->fuse_unk)) || (rc = opt_bool(t, j, "byte_fallback", &m->byte_fallback)) ||
        (rc = opt_bool(t, j, "ignore_merges", &m->ignore_merges)))
        return rc;
    if ((rc = load_vocab(t, json_object_get(j, "vocab")))) return rc;
    if ((rc = load_merges(t, json_object_get(j, "merges")))) return rc;
    if ((rc = opt_string(t, j, "unk_token", &unk, &unk_len))) return rc;
    m->unk_id = -1;
    if (unk) {
        m->unk_id = tk_strmap_get(&m->vocab, unk, unk_len);
        if (m->unk_id < 0) rc = ds_fail(DS_EDATA, "%s: model: unk_token '%s' is not in the vocabulary", t->what, unk);
        free(unk);
        if (rc) return rc;
    }
    tk_bpe_prepare(m);
    return DS_OK;
}
