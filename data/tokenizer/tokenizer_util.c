/* data/tokenizer/tokenizer_util.c - id lists, lossy UTF-8, hash maps and pieces for the tokenizer. */
#include "tokenizer_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ----------------------------------------------------------------- id lists */

int tk_ids_append(tok_ids *v, const int32_t *ids, size_t n)
{
    size_t need = v->n + n;   /* at least 1: ids + offset is never NULL + 0 */
    if (ds_grow(&v->ids, &v->cap, need ? need : 1, sizeof *v->ids)) return DS_ENOMEM;
    if (n) memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    return DS_OK;
}

int tk_ids_push(tok_ids *v, int32_t id) { return tk_ids_append(v, &id, 1); }

void tok_ids_free(tok_ids *v)
{
    if (!v) return;
    free(v->ids);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------- UTF-8 */

int tk_utf8_lossy(ds_buf *out, const char *s, size_t n)
{
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    int rc = DS_OK;
    for (size_t i = 0, k; !rc && i < n; i += k) {
        if (ds_utf8_decode(s + i, n - i, &k) == DS_UTF8_BAD) rc = ds_buf_append(out, fffd, 3);   /* k: the maximal subpart */
        else rc = ds_buf_append(out, s + i, k);
    }
    return rc;
}

/* ---------------------------------------------------------- Unicode classes */

bool tk_is_whitespace(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

bool tk_is_numeric(uint32_t cp)
{
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

/* ---------------------------------------------------------------- hash maps */

uint64_t tk_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    return h;
}

/* A slot holds the key's hash in its high half and entry index + 1 in its
 * low half, so that a probe rarely has to look at the entry itself. */
static int strmap_grow(tk_strmap *m)
{
    size_t nslot = m->nslot ? m->nslot * 2 : 64;
    uint64_t *slot = ds_calloc(nslot, sizeof *slot, "a token table");
    if (!slot) return DS_ENOMEM;
    for (size_t e = 0; e < m->n; e++) {
        size_t i = m->ent[e].hash & (nslot - 1);
        while (slot[i]) i = (i + 1) & (nslot - 1);
        slot[i] = (uint64_t)m->ent[e].hash << 32 | (e + 1);
    }
    free(m->slot);
    m->slot = slot;
    m->nslot = nslot;
    return DS_OK;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n)
{
    if (!m->nslot) return -1;
    uint32_t h = (uint32_t)tk_hash(s, n);
    size_t mask = m->nslot - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t e = m->slot[i];
        if (!e) return -1;
        if ((uint32_t)(e >> 32) != h) continue;
        const struct tk_map_ent *x = &m->ent[(uint32_t)e - 1];
        if (x->len == n && !memcmp(m->arena.p + x->off, s, n)) return x->val;
    }
}

int tk_strmap_put(tk_strmap *m, const char *s, size_t n, int32_t val)
{
    if ((m->n + 1) * 2 > m->nslot && strmap_grow(m)) return DS_ENOMEM;
    uint32_t h = (uint32_t)tk_hash(s, n);
    size_t mask = m->nslot - 1, i = h & mask;
    for (; m->slot[i]; i = (i + 1) & mask) {
        uint64_t e = m->slot[i];
        struct tk_map_ent *x = &m->ent[(uint32_t)e - 1];
        if ((uint32_t)(e >> 32) == h && x->len == n && !memcmp(m->arena.p + x->off, s, n)) {
            x->val = val;
            return DS_OK;
        }
    }
    size_t off = m->arena.len;
    if (ds_grow(&m->ent, &m->cap, m->n + 1, sizeof *m->ent) || ds_buf_append(&m->arena, s, n) ||
        ds_buf_putc(&m->arena, '\0')) {   /* keys can be handed out as C strings */
        m->arena.len = off;
        return DS_ENOMEM;
    }
    struct tk_map_ent *x = &m->ent[m->n];
    x->off = (uint32_t)off;
    x->len = (uint32_t)n;
    x->hash = h;
    x->val = val;
    m->slot[i] = (uint64_t)h << 32 | (m->n + 1);
    m->n++;
    return DS_OK;
}

void tk_strmap_free(tk_strmap *m)
{
    ds_buf_free(&m->arena);
    free(m->ent);
    free(m->slot);
    memset(m, 0, sizeof *m);
}

int tk_pairmap_init(tk_pairmap *m, size_t expect)
{
    size_t nslot = 64;
    while (nslot < expect * 2) nslot *= 2;
    m->slot = ds_calloc(nslot, sizeof *m->slot, "the merges");
    if (!m->slot) return DS_ENOMEM;
    for (size_t i = 0; i < nslot; i++) m->slot[i].key = UINT64_MAX;
    m->nslot = nslot;
    m->n = 0;
    return DS_OK;
}

int tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged)
{
    if ((m->n + 1) * 2 > m->nslot) {
        tk_pairmap old = *m;
        if (tk_pairmap_init(m, old.n + 1)) {
            *m = old;
            return DS_ENOMEM;
        }
        for (size_t i = 0; i < old.nslot; i++)   /* cannot fail: the new table has room for all */
            if (old.slot[i].key != UINT64_MAX)
                tk_pairmap_put(m, (int32_t)(old.slot[i].key >> 32), (int32_t)(uint32_t)old.slot[i].key,
                               old.slot[i].rank, old.slot[i].merged);
        free(old.slot);
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->nslot - 1, i = (size_t)(h >> 32) & mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & mask;
    if (m->slot[i].key == UINT64_MAX) m->n++;
    /* A pair listed twice keeps its later rank, as HF's map does. */
    m->slot[i].key = key;
    m->slot[i].rank = rank;
    m->slot[i].merged = merged;
    return DS_OK;
}

void tk_pairmap_free(tk_pairmap *m)
{
    free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------- pieces */


int tk_pieces_add_span(tk_pieces *p, size_t off, size_t n)
{
    /* text.p is never NULL once a piece exists */
    if (ds_buf_reserve(&p->text, 0) || ds_grow(&p->span, &p->cap, p->n + 1, sizeof *p->span)) return DS_ENOMEM;
    p->span[p->n][0] = off;
    p->span[p->n][1] = n;
    p->n++;
    return DS_OK;
}

int tk_pieces_add(tk_pieces *p, const char *s, size_t n)
{
    size_t off = p->text.len;
    if (ds_buf_append(&p->text, s, n) || tk_pieces_add_span(p, off, n)) {
        p->text.len = off;
        return DS_ENOMEM;
    }
    return DS_OK;
}

void tk_pieces_reset(tk_pieces *p)
{
    p->n = 0;
    p->text.len = 0;
}

void tk_pieces_free(tk_pieces *p)
{
    ds_buf_free(&p->text);
    free(p->span);
    memset(p, 0, sizeof *p);
}
