/* data/tokenizer/tokenizer_pretok.c - pre-tokenizers: Split, ByteLevel, Digits.
 *
 * Each step turns a list of pieces into a finer one. As in HF tokenizers, a
 * step first finds "matches" covering each piece (regex matches and the text
 * between them, flagged), then its behaviour decides which become pieces and
 * which are merged or dropped; empty pieces are always dropped.
 */
#include "tokenizer_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- the GPT-2 byte map */

/* Printable bytes stand for themselves; the 68 others (controls, space,
 * DEL, NBSP, soft hyphen) are mapped in order to U+0100, U+0101, ... so that
 * every byte is a visible character of the vocabulary. */
static tk_bchar g_bchar[256];
static int16_t g_cbyte[512];
static pthread_once_t g_bonce = PTHREAD_ONCE_INIT;

static void byte_map_init(void)
{
    int extra = 0;
    for (int cp = 0; cp < 512; cp++) g_cbyte[cp] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        char u[4];
        g_bchar[b].len = (uint8_t)ds_utf8_encode(cp, u);
        memcpy(g_bchar[b].s, u, g_bchar[b].len);
        g_cbyte[cp] = (int16_t)b;
    }
}

const tk_bchar *tk_byte_chars(void)
{
    pthread_once(&g_bonce, byte_map_init);
    return g_bchar;
}

int tk_char_byte(uint32_t cp)
{
    pthread_once(&g_bonce, byte_map_init);
    return cp < 512 ? g_cbyte[cp] : -1;
}

/* --------------------------------------------------------- split behaviours */

/* Turn match positions into segments covering [0, n): the matches, and the
 * text between them as non-matches. */
static int cover(tk_scratch *sc, size_t n, bool invert)
{
    const tk_matches *m = &sc->m;
    sc->nseg = 0;
    /* at most one segment before each match, the match, and one after the last */
    if (ds_grow(&sc->seg, &sc->capseg, 2 * m->n + 1, sizeof *sc->seg)) return DS_ENOMEM;
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        size_t a = m->v[2 * i], b = m->v[2 * i + 1];
        if (prev != a) sc->seg[sc->nseg++] = (tk_seg){prev, a, invert};
        sc->seg[sc->nseg++] = (tk_seg){a, b, !invert};
        prev = b;
    }
    if (prev != n) sc->seg[sc->nseg++] = (tk_seg){prev, n, invert};
    return DS_OK;
}

/* Apply a behaviour to the segments and add the surviving pieces of s. */
static int emit_split(const char *s, tk_scratch *sc, int behavior, tk_pieces *out)
{
    tk_seg *g = sc->seg;
    size_t n = sc->nseg, k = 0;   /* g[0..k) is the result, built in place */
    size_t from = 0;              /* ... or g[from..n) for MergedWithNext */
    bool prev_match = false;
    switch (behavior) {
    case SPLIT_ISOLATED:
        k = n;
        break;
    case SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!g[i].match) g[k++] = g[i];
        break;
    case SPLIT_CONTIGUOUS:   /* runs of matches, and runs of the rest, each become one piece */
        for (size_t i = 0; i < n; i++) {
            tk_seg x = g[i];
            if (x.match == prev_match && k) g[k - 1].b = x.b;
            else g[k++] = x;
            prev_match = x.match;
        }
        break;
    case SPLIT_MERGED_PREV:   /* a match joins the piece before it */
        for (size_t i = 0; i < n; i++) {
            tk_seg x = g[i];
            if (x.match && !prev_match && k) g[k - 1].b = x.b;
            else g[k++] = x;
            prev_match = x.match;
        }
        break;
    case SPLIT_MERGED_NEXT:   /* the same fold from the right */
        from = n;
        for (size_t i = n; i-- > 0;) {
            tk_seg x = g[i];
            if (x.match && !prev_match && from < n) g[from].a = x.a;
            else g[--from] = x;
            prev_match = x.match;
        }
        k = n;
        break;
    }
    int rc = DS_OK;
    for (size_t i = from; !rc && i < k; i++)
        if (g[i].b > g[i].a) rc = tk_pieces_add(out, s + g[i].a, g[i].b - g[i].a);
    return rc;
}

/* Digits: every numeric character is a match of its own. */
static int digit_matches(const char *s, size_t n, tk_matches *m)
{
    m->n = 0;
    int rc = DS_OK;
    for (size_t i = 0, k; !rc && i < n; i += k)
        if (tk_is_numeric(ds_utf8_decode(s + i, n - i, &k))) rc = tk_matches_push(m, i, i + k);
    return rc;
}

static int byte_level(const char *s, size_t n, tk_pieces *out)
{
    const tk_bchar *bc = tk_byte_chars();
    ds_buf *t = &out->text;
    size_t start = t->len;
    if (n > SIZE_MAX / 2 || ds_buf_reserve(t, 2 * n)) return DS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const tk_bchar *c = &bc[(unsigned char)s[i]];
        t->p[t->len] = c->s[0];
        if (c->len == 2) t->p[t->len + 1] = c->s[1];
        t->len += c->len;
    }
    t->p[t->len] = '\0';
    return tk_pieces_add_span(out, start, t->len - start);
}

/* -------------------------------------------------------------- the driver */

int tk_pretokenize(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, tk_pieces **out)
{
    tk_pieces *cur = &sc->pieces[0], *next = &sc->pieces[1];
    tk_pieces_reset(cur);
    if (n && tk_pieces_add(cur, s, n)) return DS_ENOMEM;
    for (int k = 0; k < t->npretok; k++) {
        const tk_pretok *p = &t->pretok[k];
        tk_pieces_reset(next);
        for (size_t i = 0; i < cur->n; i++) {
            const char *ps = cur->text.p + cur->span[i][0];
            size_t pn = cur->span[i][1];
            int rc = DS_OK;
            switch (p->kind) {
            case PT_SPLIT:
                rc = tk_regex_find_all(&p->re, ps, pn, &sc->m);
                if (!rc) rc = cover(sc, pn, p->invert);
                if (!rc) rc = emit_split(ps, sc, p->behavior, next);
                break;
            case PT_DIGITS:
                rc = digit_matches(ps, pn, &sc->m);
                if (!rc) rc = cover(sc, pn, false);
                if (!rc) rc = emit_split(ps, sc, p->individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, next);
                break;
            case PT_BYTELEVEL: {
                if (p->add_prefix_space && ps[0] != ' ') {
                    ds_buf *pre = &sc->buf[2];
                    pre->len = 0;
                    if (ds_buf_putc(pre, ' ') || ds_buf_append(pre, ps, pn)) return DS_ENOMEM;
                    ps = pre->p;
                    pn = pre->len;
                }
                if (!p->use_regex) {
                    rc = byte_level(ps, pn, next);
                    break;
                }
                rc = tk_regex_find_all(&p->re, ps, pn, &sc->m);
                if (!rc) rc = cover(sc, pn, false);
                for (size_t j = 0; !rc && j < sc->nseg; j++)
                    if (sc->seg[j].b > sc->seg[j].a)
                        rc = byte_level(ps + sc->seg[j].a, sc->seg[j].b - sc->seg[j].a, next);
                break;
            }
            }
            if (rc) return rc;
        }
        tk_pieces *tmp = cur;
        cur = next;
        next = tmp;
    }
    *out = cur;
    return DS_OK;
}

void tk_pretok_free(tk_pretok *p) { tk_regex_free(&p->re); }
