/* data/tokenizer/tokenizer_encode.c - text to ids.
 *
 * The order is HF's: special and added tokens that match the raw text are
 * split out first; each stretch between them is normalized, searched again
 * for tokens marked "normalized", pre-tokenized, and each piece goes through
 * the BPE model. add_special then wraps the result (BOS ... EOS); a text
 * that already starts with the BOS written out gets no second one, as the
 * reference ids from transformers show (tokenizer-cases.jsonl, line 31).
 */
#include "tokenizer_internal.h"

#include "core/status.h"

#include <string.h>

typedef struct {
    const tokenizer *t;
    tk_scratch *sc;
    tok_ids *out;
} encoder;

static int on_normalized(void *ctx, const char *s, size_t n, int32_t token)
{
    encoder *e = ctx;
    if (token >= 0) return tk_ids_push(e->out, e->t->added[token].id);
    tk_pieces *p;
    int rc = tk_pretokenize(e->t, e->sc, s, n, &p);
    for (size_t i = 0; !rc && i < p->n; i++)
        rc = tk_bpe_encode(e->t, e->sc, p->text.p + p->span[i][0], p->span[i][1], e->out);
    return rc;
}

static int on_raw(void *ctx, const char *s, size_t n, int32_t token)
{
    encoder *e = ctx;
    if (token >= 0) return tk_ids_push(e->out, e->t->added[token].id);
    if (!e->t->nnorm) return tk_split_added(e->t, &e->t->trie_norm, s, n, on_normalized, e);
    ds_buf *norm = &e->sc->buf[0];
    int rc = tk_normalize(e->t, e->sc, s, n, norm, &e->sc->buf[1]);
    if (rc) return rc;
    return tk_split_added(e->t, &e->t->trie_norm, norm->p, norm->len, on_normalized, e);
}

int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special, tok_ids *out)
{
    size_t valid = ds_utf8_valid(text, len);
    if (valid != len)
        return ds_fail(DS_EDATA, "text is not valid UTF-8 (bad byte 0x%02X at offset %zu of %zu)",
                       (unsigned char)text[valid], valid, len);
    size_t start = out->n;
    encoder e = {t, tk_scratch_get(t), out};
    int rc = !e.sc ? DS_ENOMEM : len ? tk_split_added(t, &t->trie_raw, text, len, on_raw, &e) : DS_OK;
    size_t np = (size_t)t->nprefix, n = out->n - start;
    if (!rc && add_special && np && !(n >= np && !memcmp(out->ids + start, t->prefix_ids, np * sizeof *out->ids))) {
        rc = tk_ids_append(out, t->prefix_ids, np);   /* grow, then shift the text's ids right */
        if (!rc) {
            memmove(out->ids + start + np, out->ids + start, n * sizeof *out->ids);
            memcpy(out->ids + start, t->prefix_ids, np * sizeof *out->ids);
        }
    }
    if (!rc && add_special) rc = tk_ids_append(out, t->suffix_ids, (size_t)t->nsuffix);
    if (rc) out->n = start;   /* nothing half-encoded is left behind */
    return rc;
}
