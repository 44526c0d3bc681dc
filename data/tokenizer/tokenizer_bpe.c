/* data/tokenizer/tokenizer_bpe.c - the BPE model: characters to ids, merges by rank.
 *
 * A piece starts as one symbol per character (with HF's prefix/suffix rules,
 * byte fallback and unknown token), then the adjacent pair with the lowest
 * merge rank is merged, leftmost first, until no pair has a merge. A min-heap
 * of candidate pairs keeps that O(n log n) per piece; stale heap entries are
 * recognised when popped, as in HF's word.rs. Results are cached per piece
 * on each thread.
 */
#include "tokenizer_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS (1u << 16)        /* power of two */
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_MAX_KEY 256             /* longer pieces are rare and not worth keeping */
#define CACHE_MAX_BYTES (8u << 20)

/* ------------------------------------------------------- per-thread scratch */

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local tk_scratch *g_scratch;

static void scratch_free(void *p)
{
    tk_scratch *s = p;
    if (!s) return;
    for (int i = 0; i < 2; i++) tk_pieces_free(&s->pieces[i]);
    for (int i = 0; i < 3; i++) ds_buf_free(&s->buf[i]);
    free(s->m.v);
    free(s->seg);
    free(s->sym);
    free(s->heap);
    free(s->slot);
    free(s->ent);
    ds_buf_free(&s->keys);
    tok_ids_free(&s->ids);
    free(s);
}

static void make_key(void) { pthread_key_create(&g_key, scratch_free); }

static void cache_clear(tk_scratch *s)
{
    if (s->slot) memset(s->slot, 0, s->nslot * sizeof *s->slot);
    s->used = 0;
    s->keys.len = 0;
    s->ids.n = 0;
}

tk_scratch *tk_scratch_get(const tokenizer *t)
{
    tk_scratch *s = g_scratch;
    if (!s) {
        pthread_once(&g_once, make_key);
        if (!(s = ds_calloc(1, sizeof *s, "a tokenizer's scratch space"))) return NULL;
        pthread_setspecific(g_key, s);
        g_scratch = s;
    }
    if (s->owner != t->serial) {
        cache_clear(s);
        s->owner = t->serial;
    }
    return s;
}

void tk_scratch_release_for(const tokenizer *t)
{
    /* Only this thread's scratch can be reached; other threads' caches are
     * cleared when they next encode with another tokenizer. */
    if (g_scratch && g_scratch->owner == t->serial) {
        pthread_setspecific(g_key, NULL);
        scratch_free(g_scratch);
        g_scratch = NULL;
    }
}

/* ---------------------------------------------------------------- the cache */

/* The cached ids of piece k, appended to out: *hit says whether it was there. */
static int cache_get(const tk_scratch *s, const char *k, size_t n, uint32_t h, tok_ids *out, bool *hit)
{
    *hit = false;
    if (!s->slot) return DS_OK;
    size_t mask = s->nslot - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t e = s->slot[i];
        if (!e) return DS_OK;
        const struct tk_cache_ent *x = &s->ent[e - 1];
        if (x->hash == h && x->key_len == n && !memcmp(s->keys.p + x->key_off, k, n)) {
            *hit = true;
            return x->ids_n ? tk_ids_append(out, s->ids.ids + x->ids_off, x->ids_n) : DS_OK;
        }
    }
}

static int cache_put(tk_scratch *s, const char *k, size_t n, uint32_t h, const int32_t *ids, size_t nids)
{
    if (!s->slot) {
        s->slot = ds_calloc(CACHE_SLOTS, sizeof *s->slot, "the tokenizer cache");
        s->ent = ds_malloc(CACHE_MAX_ENTRIES * sizeof *s->ent, "the tokenizer cache");
        if (!s->slot || !s->ent) {
            free(s->slot);
            free(s->ent);
            s->slot = NULL;
            s->ent = NULL;
            return DS_ENOMEM;
        }
        s->nslot = CACHE_SLOTS;
        s->capent = CACHE_MAX_ENTRIES;
    }
    if (s->used >= CACHE_MAX_ENTRIES || s->keys.len + n > CACHE_MAX_BYTES) cache_clear(s);
    size_t key_off = s->keys.len, ids_off = s->ids.n;
    if (ds_buf_append(&s->keys, k, n) || tk_ids_append(&s->ids, ids, nids)) {
        s->keys.len = key_off;
        return DS_ENOMEM;
    }
    size_t mask = s->nslot - 1, i = h & mask;
    while (s->slot[i]) i = (i + 1) & mask;
    struct tk_cache_ent *x = &s->ent[s->used];
    x->hash = h;
    x->key_off = (uint32_t)key_off;
    x->key_len = (uint32_t)n;
    x->ids_off = (uint32_t)ids_off;
    x->ids_n = (uint32_t)nids;
    s->slot[i] = (uint32_t)++s->used;
    return DS_OK;
}

/* ------------------------------------------------------------------ merging */

static int heap_push(tk_scratch *s, size_t *n, tk_merge m)
{
    if (ds_grow(&s->heap, &s->capheap, *n + 1, sizeof *s->heap)) return DS_ENOMEM;
    tk_merge *h = s->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < m.rank || (h[p].rank == m.rank && h[p].pos <= m.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
    return DS_OK;
}

static tk_merge heap_pop(tk_scratch *s, size_t *n)
{
    tk_merge *h = s->heap, top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos)))
            c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos <= h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static int sym_push(tk_scratch *s, size_t *n, int32_t id)
{
    if (ds_grow(&s->sym, &s->capsym, *n + 1, sizeof *s->sym)) return DS_ENOMEM;
    s->sym[*n] = (tk_sym){id, (int32_t)*n - 1, (int32_t)*n + 1, false};
    ++*n;
    return DS_OK;
}

static int try_pair(const tk_bpe *m, tk_scratch *s, size_t *nh, int32_t pos)
{
    const tk_sym *a = &s->sym[pos];
    const struct tk_pair_ent *e = tk_pairmap_get(&m->merges, a->id, s->sym[a->next].id);
    return e ? heap_push(s, nh, (tk_merge){e->rank, pos, e->merged}) : DS_OK;
}

/* c with the prefix/suffix HF adds into tmp. */
static int affixed(const tk_bpe *m, ds_buf *tmp, const char *c, size_t k, bool pre, bool suf)
{
    tmp->len = 0;
    if (pre && ds_buf_append(tmp, m->prefix, m->prefix_len)) return DS_ENOMEM;
    if (ds_buf_append(tmp, c, k)) return DS_ENOMEM;
    return suf ? ds_buf_append(tmp, m->suffix, m->suffix_len) : DS_OK;
}

/* The vocab id of one character (with the prefix/suffix HF adds) into *id, -1 if none. */
static int char_id(const tk_bpe *m, ds_buf *tmp, const char *c, size_t k, bool first, bool last, int32_t *id)
{
    bool pre = !first && m->prefix_len, suf = last && m->suffix_len;
    if (!pre && !suf) {
        uint32_t cp = 512;   /* 512 and above: looked up by its bytes */
        size_t len;
        if ((unsigned char)c[0] < 0x80) cp = (unsigned char)c[0];
        else if (k == 2) cp = ds_utf8_decode(c, k, &len);
        *id = cp < 512 ? m->small_id[cp] : tk_strmap_get(&m->vocab, c, k);
        return DS_OK;
    }
    if (affixed(m, tmp, c, k, pre, suf)) return DS_ENOMEM;
    *id = tk_strmap_get(&m->vocab, tmp->p, tmp->len);
    return DS_OK;
}

/* The symbols of one piece: a character each (HF's rules for prefixes,
 * suffixes, byte fallback and unknown characters); *ns their count. */
static int make_symbols(const tk_bpe *m, tk_scratch *s, const char *w, size_t n, size_t *ns)
{
    bool unk = false;   /* an unknown token waiting to be added (HF adds it before the next known one) */
    ds_buf *tmp = &s->buf[2];
    int rc = DS_OK;
    *ns = 0;
    for (size_t i = 0; !rc && i < n;) {
        size_t k = ds_utf8_lead_len((unsigned char)w[i]);   /* pieces are valid UTF-8 */
        bool first = i == 0, last = i + k == n;
        int32_t id;
        if ((rc = char_id(m, tmp, w + i, k, first, last, &id))) break;
        if (id >= 0) {
            if (unk) rc = sym_push(s, ns, m->unk_id);
            unk = false;
            if (!rc) rc = sym_push(s, ns, id);
        } else {
            bool done = false;
            if (m->byte_fallback) {
                /* every byte of the character (with prefix/suffix) as <0xAB>, or none */
                if ((rc = affixed(m, tmp, w + i, k, !first && m->prefix_len, last && m->suffix_len))) break;
                done = true;
                for (size_t b = 0; b < tmp->len && done; b++) done = m->byte_id[(unsigned char)tmp->p[b]] >= 0;
                for (size_t b = 0; done && !rc && b < tmp->len; b++)
                    rc = sym_push(s, ns, m->byte_id[(unsigned char)tmp->p[b]]);
            }
            if (!done && m->unk_id >= 0) {
                if (unk && !m->fuse_unk) rc = sym_push(s, ns, m->unk_id);
                unk = true;
            }
            /* no byte fallback and no unknown token: HF drops the character */
        }
        i += k;
    }
    if (!rc && unk) rc = sym_push(s, ns, m->unk_id);
    return rc;
}

/* Merge one piece; appends its ids to out. */
static int merge_word(const tk_bpe *m, tk_scratch *s, const char *w, size_t n, tok_ids *out)
{
    size_t ns;
    int rc = make_symbols(m, s, w, n, &ns);
    if (rc || !ns) return rc;
    s->sym[ns - 1].next = -1;

    size_t nh = 0;
    for (size_t i = 0; !rc && i + 1 < ns; i++) rc = try_pair(m, s, &nh, (int32_t)i);
    while (!rc && nh) {
        tk_merge top = heap_pop(s, &nh);
        tk_sym *a = &s->sym[top.pos];
        if (a->dead || a->next < 0) continue;
        tk_sym *b = &s->sym[a->next];
        /* stale: the pair at pos changed since this entry was pushed */
        const struct tk_pair_ent *e = tk_pairmap_get(&m->merges, a->id, b->id);
        if (!e || e->merged != top.merged) continue;
        a->id = top.merged;
        b->dead = true;
        a->next = b->next;
        if (b->next >= 0) s->sym[b->next].prev = top.pos;
        if (a->prev >= 0) rc = try_pair(m, s, &nh, a->prev);
        if (!rc && a->next >= 0) rc = try_pair(m, s, &nh, top.pos);
    }
    for (int32_t i = 0; !rc && i >= 0; i = s->sym[i].next) rc = tk_ids_push(out, s->sym[i].id);
    return rc;
}

int tk_bpe_encode(const tokenizer *t, tk_scratch *s, const char *w, size_t n, tok_ids *out)
{
    const tk_bpe *m = &t->bpe;
    if (!n) return DS_OK;
    if (m->ignore_merges) {
        /* a piece that is itself a token is emitted whole (Llama 3) */
        int32_t id = tk_strmap_get(&m->vocab, w, n);
        if (id >= 0) return tk_ids_push(out, id);
    }
    if (n > CACHE_MAX_KEY) return merge_word(m, s, w, n, out);
    uint32_t h = (uint32_t)tk_hash(w, n);
    bool hit;
    int rc = cache_get(s, w, n, h, out, &hit);
    if (rc || hit) return rc;
    size_t before = out->n;
    rc = merge_word(m, s, w, n, out);
    if (!rc) rc = cache_put(s, w, n, h, out->n > before ? out->ids + before : NULL, out->n - before);
    return rc;
}

/* ------------------------------------------------------------------ set-up */

void tk_bpe_prepare(tk_bpe *m)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = tk_strmap_get(&m->vocab, name, strlen(name));
    }
    for (uint32_t cp = 0; cp < 512; cp++) {
        char u[4];
        size_t k = ds_utf8_encode(cp, u);
        m->small_id[cp] = tk_strmap_get(&m->vocab, u, k);
    }
}

const char *tk_bpe_token(const tk_bpe *m, int32_t id, size_t *len)
{
    if (id < 0 || id >= m->nr || m->r_ent[id] == UINT32_MAX) return NULL;
    const struct tk_map_ent *e = &m->vocab.ent[m->r_ent[id]];
    *len = e->len;
    return m->vocab.arena.p + e->off;
}

void tk_bpe_free(tk_bpe *m)
{
    tk_strmap_free(&m->vocab);
    tk_pairmap_free(&m->merges);
    free(m->merge_list);
    free(m->r_ent);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}
