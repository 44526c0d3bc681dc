/* data/tokenizer/tokenizer_norm.c - normalizers: NFC/NFD/NFKC/NFKD, Prepend, Replace, Strip. */
#include "tokenizer_internal.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static bool all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static int unicode_form(int kind, const char *s, size_t n, ds_buf *out)
{
    /* ASCII is already in every normal form */
    if (all_ascii(s, n)) return ds_buf_append(out, s, n);
    int opts = UTF8PROC_STABLE;
    switch (kind) {
    case NORM_NFC: opts |= UTF8PROC_COMPOSE; break;
    case NORM_NFD: opts |= UTF8PROC_DECOMPOSE; break;
    case NORM_NFKC: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    default: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opts);
    if (k == UTF8PROC_ERROR_NOMEM) return ds_fail(DS_ENOMEM, "normalizing text: out of memory");
    if (k < 0) return ds_fail(DS_EDATA, "normalizing text: %s", utf8proc_errmsg(k));
    int rc = ds_buf_append(out, dst, (size_t)k);
    free(dst);
    return rc;
}

/* One step; `m` holds a Replace step's matches (the thread's scratch). */
static int apply(const tk_norm *nm, const char *s, size_t n, ds_buf *out, tk_matches *m)
{
    switch (nm->kind) {
    case NORM_NFC:
    case NORM_NFD:
    case NORM_NFKC:
    case NORM_NFKD:
        return unicode_form(nm->kind, s, n, out);
    case NORM_PREPEND:
        if (n && ds_buf_append(out, nm->str, nm->str_len)) return DS_ENOMEM;   /* nothing is prepended to "" */
        return ds_buf_append(out, s, n);
    case NORM_STRIP: {
        size_t a = 0, b = n, k;
        while (nm->left && a < b && tk_is_whitespace(ds_utf8_decode(s + a, b - a, &k))) a += k;
        while (nm->right && b > a) {
            size_t c = b - 1;
            while (c > a && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
            if (!tk_is_whitespace(ds_utf8_decode(s + c, b - c, &k))) break;
            b = c;
        }
        return ds_buf_append(out, s + a, b - a);
    }
    case NORM_REPLACE: {
        int rc = tk_regex_find_all(&nm->re, s, n, m);
        size_t prev = 0;
        for (size_t i = 0; !rc && i < m->n; i++) {
            rc = ds_buf_append(out, s + prev, m->v[2 * i] - prev);
            if (!rc) rc = ds_buf_append(out, nm->str, nm->str_len);
            prev = m->v[2 * i + 1];
        }
        return rc ? rc : ds_buf_append(out, s + prev, n - prev);
    }
    }
    return ds_fail(DS_EINTERNAL, "unknown normalizer step %d", nm->kind);
}

int tk_normalize(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, ds_buf *out, ds_buf *tmp)
{
    out->len = 0;
    if (ds_buf_append(out, s, n)) return DS_ENOMEM;
    for (int i = 0; i < t->nnorm; i++) {
        tmp->len = 0;
        int rc = apply(&t->norm[i], out->p, out->len, tmp, &sc->m);
        if (rc) return rc;
        ds_buf swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return DS_OK;
}

void tk_norm_free(tk_norm *n)
{
    tk_regex_free(&n->re);
    free(n->str);
}
