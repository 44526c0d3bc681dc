/* data/tokenizer/tokenizer_pretok.c - pre-tokenizers: Split, ByteLevel, Digits.
 *
 * Each step turns a list of pieces into a finer one. As in HF tokenizers, a
 * step first finds "matches" covering each piece (regex matches and the text
 * between them, flagged), then its behaviour decides which become pieces and
 * which are merged or dropped; empty pieces are always dropped.
 */
#include "tokenizer_internal.h"

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

static void segs_push(tk_scratch *sc, size_t a, size_t b, bool match)
{
    if (sc->nseg == sc->capseg) {
        sc->capseg = sc->capseg ? sc->capseg * 2 : 64;
        sc->seg = realloc(sc->seg, sc->capseg * sizeof *sc->seg);
    }
    sc->seg[sc->nseg++] = (tk_seg){a, b, match};
}

/* Turn match positions into segments covering [0, n): the matches, and the
 * text between them as non-matches. */
static void cover(tk_scratch *sc, size_t n, bool invert)
{
    const tk_matches *m = &sc->m;
    sc->nseg = 0;
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        size_t a = m->v[2 * i], b = m->v[2 * i + 1];
        if (prev != a) segs_push(sc, prev, a, invert);
        segs_push(sc, a, b, !invert);
        prev = b;
    }
    if (prev != n) segs_push(sc, prev, n, invert);
}

/* Apply a behaviour to the segments and add the surviving pieces of s. */
static void emit_split(const char *s, tk_scratch *sc, int behavior, tk_pieces *out)
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
    for (size_t i = from; i < k; i++)
        if (g[i].b > g[i].a) tk_pieces_add(out, s + g[i].a, g[i].b - g[i].a);
}

/* Digits: every numeric character is a match of its own. */
static void digit_matches(const char *s, size_t n, tk_matches *m)
{
    m->n = 0;
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = ds_utf8_decode(s + i, n - i, &k);
        if (tk_is_numeric(cp)) {
            if (m->n == m->cap) {
                m->cap = m->cap ? m->cap * 2 : 64;
                m->v = realloc(m->v, m->cap * 2 * sizeof *m->v);
            }
            m->v[2 * m->n] = i;
            m->v[2 * m->n + 1] = i + k;
            m->n++;
        }
        i += k;
    }
}

static void byte_level(const char *s, size_t n, tk_pieces *out)
{
    const tk_bchar *bc = tk_byte_chars();
    tk_buf *t = &out->text;
    size_t start = t->n;
    tk_buf_reserve(t, 2 * n);
    for (size_t i = 0; i < n; i++) {
        const tk_bchar *c = &bc[(unsigned char)s[i]];
        t->p[t->n] = c->s[0];
        if (c->len == 2) t->p[t->n + 1] = c->s[1];
        t->n += c->len;
    }
    tk_pieces_add_span(out, start, t->n - start);
}

/* -------------------------------------------------------------- the driver */

int tk_pretokenize(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, tk_pieces **out)
{
    tk_pieces *cur = &sc->pieces[0], *next = &sc->pieces[1];
    tk_pieces_reset(cur);
    if (n) tk_pieces_add(cur, s, n);
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
                if (rc) return rc;
                cover(sc, pn, p->invert);
                emit_split(ps, sc, p->behavior, next);
                break;
            case PT_DIGITS:
                digit_matches(ps, pn, &sc->m);
                cover(sc, pn, false);
                emit_split(ps, sc, p->individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, next);
                break;
            case PT_BYTELEVEL: {
                if (p->add_prefix_space && ps[0] != ' ') {
                    tk_buf *pre = &sc->buf[2];
                    pre->n = 0;
                    tk_buf_putc(pre, ' ');
                    tk_buf_put(pre, ps, pn);
                    ps = pre->p;
                    pn = pre->n;
                }
                if (!p->use_regex) {
                    byte_level(ps, pn, next);
                    break;
                }
                rc = tk_regex_find_all(&p->re, ps, pn, &sc->m);
                if (rc) return rc;
                cover(sc, pn, false);
                for (size_t j = 0; j < sc->nseg; j++)
                    if (sc->seg[j].b > sc->seg[j].a)
                        byte_level(ps + sc->seg[j].a, sc->seg[j].b - sc->seg[j].a, next);
                break;
            }
            }
        }
        tk_pieces *tmp = cur;
        cur = next;
        next = tmp;
    }
    *out = cur;
    return DS_OK;
}

void tk_pretok_free(tk_pretok *p) { tk_regex_free(&p->re); }
