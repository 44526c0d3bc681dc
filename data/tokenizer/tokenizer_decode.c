/* data/tokenizer/tokenizer_decode.c - ids to text: HF's decoder chain.
 *
 * Each id becomes its token string (added tokens first; unknown ids are
 * skipped, as HF does), special tokens are dropped when asked, and the
 * decoders rewrite the list of strings in turn; the result is their
 * concatenation. Without a decoder HF joins the tokens with spaces.
 */
#include "tokenizer_internal.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

#define PIECE(ps, i) ((ps)->text.p + (ps)->span[i][0])
#define PLEN(ps, i) ((ps)->span[i][1])

static int byte_level(const tk_pieces *in, tk_pieces *out)
{
    /* each token whose characters all stand for bytes becomes those bytes,
     * any other stays as it is; the whole is then read as UTF-8 */
    ds_buf raw = {0}, text = {0};
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = PLEN(in, i), start = raw.len, k;
        bool all = true;
        for (size_t j = 0; j < n && all && !rc; j += k) {
            int b = tk_char_byte(ds_utf8_decode(s + j, n - j, &k));
            if (b < 0) all = false;
            else rc = ds_buf_putc(&raw, (char)b);
        }
        if (!rc && !all) {
            raw.len = start;
            rc = ds_buf_append(&raw, s, n);
        }
    }
    if (!rc) rc = tk_utf8_lossy(&text, raw.p, raw.len);
    if (!rc) rc = tk_pieces_add(out, text.p, text.len);
    ds_buf_free(&raw);
    ds_buf_free(&text);
    return rc;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "<0xAB>" -> 0xAB, else -1. Rust's u8::from_str_radix also takes "+A". */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int flush_bytes(ds_buf *bytes, tk_pieces *out)
{
    int rc = DS_OK;
    if (!bytes->len) return DS_OK;
    if (ds_utf8_valid(bytes->p, bytes->len) == bytes->len) rc = tk_pieces_add(out, bytes->p, bytes->len);
    else
        for (size_t i = 0; !rc && i < bytes->len; i++) rc = tk_pieces_add(out, "\xEF\xBF\xBD", 3);   /* one U+FFFD per byte */
    bytes->len = 0;
    return rc;
}

static int byte_fallback(const tk_pieces *in, tk_pieces *out)
{
    ds_buf bytes = {0};
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < in->n; i++) {
        int b = byte_token(PIECE(in, i), PLEN(in, i));
        if (b >= 0) rc = ds_buf_putc(&bytes, (char)b);
        else if (!(rc = flush_bytes(&bytes, out))) rc = tk_pieces_add(out, PIECE(in, i), PLEN(in, i));
    }
    if (!rc) rc = flush_bytes(&bytes, out);
    ds_buf_free(&bytes);
    return rc;
}

static int strip(const tk_dec *d, const tk_pieces *in, tk_pieces *out)
{
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = PLEN(in, i), a = 0, b = n, k;
        for (size_t c = 0; c < d->strip_start && a < n && ds_utf8_decode(s + a, n - a, &k) == d->strip_char; c++) a += k;
        for (size_t c = 0; c < d->strip_stop && b > a; c++) {
            size_t p = b - 1;
            while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
            if (ds_utf8_decode(s + p, n - p, &k) != d->strip_char) break;
            b = p;
        }
        rc = tk_pieces_add(out, s + a, b - a);
    }
    return rc;
}

static int replace(const tk_dec *d, const tk_pieces *in, tk_pieces *out)
{
    tk_matches m = {0};
    ds_buf tmp = {0};
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < in->n; i++) {
        const char *s = PIECE(in, i);
        size_t n = PLEN(in, i), prev = 0;
        rc = tk_regex_find_all(&d->re, s, n, &m);
        tmp.len = 0;
        for (size_t j = 0; !rc && j < m.n; j++) {
            rc = ds_buf_append(&tmp, s + prev, m.v[2 * j] - prev);
            if (!rc) rc = ds_buf_append(&tmp, d->str, d->str_len);
            prev = m.v[2 * j + 1];
        }
        if (!rc) rc = ds_buf_append(&tmp, s + prev, n - prev);
        if (!rc) rc = tk_pieces_add(out, tmp.p, tmp.len);
    }
    free(m.v);
    ds_buf_free(&tmp);
    return rc;
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text)
{
    *text = NULL;
    tk_pieces a = {0}, b = {0}, *cur = &a, *next = &b;
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        int32_t id = ids[i];
        const char *s = NULL;
        size_t len = 0;
        if (id >= 0 && id < t->vocab_size && t->added_by_id[id] >= 0) {
            const tk_added *x = &t->added[t->added_by_id[id]];
            s = x->norm ? x->norm : x->content;   /* what the decoder should see, as HF hands it over */
            len = x->norm ? x->norm_len : x->len;
        } else
            s = tk_bpe_token(&t->bpe, id, &len);
        if (!s) continue;
        if (skip_special) {
            int k = tk_added_find(t, s, len);
            if (k >= 0 && t->added[k].special) continue;
        }
        rc = tk_pieces_add(cur, s, len);
    }
    if (!rc && !t->has_decoder) {
        /* HF joins the tokens with single spaces */
        for (size_t i = 0; !rc && i < cur->n; i++) {
            if (i) rc = ds_buf_putc(&next->text, ' ');
            if (!rc) rc = ds_buf_append(&next->text, PIECE(cur, i), PLEN(cur, i));
        }
        if (!rc) rc = tk_pieces_add_span(next, 0, next->text.len);
        tk_pieces *s = cur;
        cur = next;
        next = s;
    }
    for (int k = 0; !rc && k < t->ndec; k++) {
        const tk_dec *d = &t->dec[k];
        tk_pieces_reset(next);
        switch (d->kind) {
        case DEC_BYTELEVEL: rc = byte_level(cur, next); break;
        case DEC_BYTEFALLBACK: rc = byte_fallback(cur, next); break;
        case DEC_FUSE: {
            size_t start = next->text.len;
            for (size_t i = 0; !rc && i < cur->n; i++) rc = ds_buf_append(&next->text, PIECE(cur, i), PLEN(cur, i));
            if (!rc) rc = tk_pieces_add_span(next, start, next->text.len - start);
            break;
        }
        case DEC_STRIP: rc = strip(d, cur, next); break;
        case DEC_REPLACE: rc = replace(d, cur, next); break;
        }
        tk_pieces *s = cur;
        cur = next;
        next = s;
    }
    if (!rc) {
        ds_buf out = {0};
        for (size_t i = 0; !rc && i < cur->n; i++) rc = ds_buf_append(&out, PIECE(cur, i), PLEN(cur, i));
        if (!rc && !(*text = ds_buf_take(&out))) rc = DS_ENOMEM;
        ds_buf_free(&out);
    }
    tk_pieces_free(&a);
    tk_pieces_free(&b);
    return rc;
}

void tk_dec_free(tk_dec *d)
{
    tk_regex_free(&d->re);
    free(d->str);
}
