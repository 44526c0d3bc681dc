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
    for (int i = 0; i < 3; i++) tk_buf_free(&s->buf[i]);
    free(s->m.v);
    free(s->seg);
    free(s->sym);
    free(s->heap);
    free(s->slot);
    free(s->ent);
    tk_buf_free(&s->keys);
    tok_ids_free(&s->ids);
    free(s);
}

static void make_key(void) { pthread_key_create(&g_key, scratch_free); }

static void cache_clear(tk_scratch *s)
{
    if (s->slot) memset(s->slot, 0, s->nslot * sizeof *s->slot);
    s->used = 0;
    s->keys.n = 0;
    s->ids.n = 0;
}

tk_scratch *tk_scratch_get(const tokenizer *t)
{
    tk_scratch *s = g_scratch;
    if (!s) {
        pthread_once(&g_once, make_key);
        s = calloc(1, sizeof *s);
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

static bool cache_get(const tk_scratch *s, const char *k, size_t n, uint32_t h, tok_ids *out)
{
    if (!s->slot) return false;
    size_t mask = s->nslot - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t e = s->slot[i];
        if (!e) return false;
        const struct tk_cache_ent *x = &s->ent[e - 1];
        if (x->hash == h && x->key_len == n && !memcmp(s->keys.p + x->key_off, k, n)) {
            if (x->ids_n) tk_ids_append(out, s->ids.ids + x->ids_off, x->ids_n);
            return true;
        }
    }
}

static void cache_put(tk_scratch *s, const char *k, size_t n, uint32_t h, const int32_t *ids, size_t nids)
{
    if (!s->slot) {
        s->nslot = CACHE_SLOTS;
        s->slot = calloc(s->nslot, sizeof *s->slot);
        s->capent = CACHE_MAX_ENTRIES;
        s->ent = malloc(s->capent * sizeof *s->ent);
    }
    if (s->used >= CACHE_MAX_ENTRIES || s->keys.n + n > CACHE_MAX_BYTES) cache_clear(s);
    size_t mask = s->nslot - 1, i = h & mask;
    while (s->slot[i]) i = (i + 1) & mask;
    struct tk_cache_ent *x = &s->ent[s->used];
    x->hash = h;
    x->key_off = (uint32_t)s->keys.n;
    x->key_len = (uint32_t)n;
    x->ids_off = (uint32_t)s->ids.n;
    x->ids_n = (uint32_t)nids;
    tk_buf_put(&s->keys, k, n);
    tk_ids_append(&s->ids, ids, nids);
    s->slot[i] = (uint32_t)++s->used;
}

/* ------------------------------------------------------------------ merging */

static void heap_push(tk_scratch *s, size_t *n, tk_merge m)
{
    if (*n == s->capheap) {
        s->capheap = s->capheap ? s->capheap * 2 : 64;
        s->heap = realloc(s->heap, s->capheap * sizeof *s->heap);
    }
    tk_merge *h = s->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < m.rank || (h[p].rank == m.rank && h[p].pos <= m.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
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

static void sym_push(tk_scratch *s, size_t *n, int32_t id)
{
    if (*n == s->capsym) {
        s->capsym = s->capsym ? s->capsym * 2 : 64;
        s->sym = realloc(s->sym, s->capsym * sizeof *s->sym);
    }
    s->sym[*n] = (tk_sym){id, (int32_t)*n - 1, (int32_t)*n + 1, false};
    ++*n;
}

static void try_pair(const tk_bpe *m, tk_scratch *s, size_t *nh, int32_t pos)
{
    const tk_sym *a = &s->sym[pos];
    const struct tk_pair_ent *e = tk_pairmap_get(&m->merges, a->id, s->sym[a->next].id);
    if (e) heap_push(s, nh, (tk_merge){e->rank, pos, e->merged});
}

/* The vocab id of one character (with the prefix/suffix HF adds), or -1. */
static int32_t char_id(const tk_bpe *m, tk_buf *tmp, const char *c, size_t k, bool first, bool last)
{
    bool pre = !first && m->prefix_len, suf = last && m->suffix_len;
    if (!pre && !suf) {
        if ((unsigned char)c[0] < 0x80) return m->small_id[(unsigned char)c[0]];
        if (k == 2) {
            size_t len;
            uint32_t cp = ds_utf8_decode(c, k, &len);
            if (cp < 512) return m->small_id[cp];
        }
        return tk_strmap_get(&m->vocab, c, k);
    }
    tmp->n = 0;
    if (pre) tk_buf_put(tmp, m->prefix, m->prefix_len);
    tk_buf_put(tmp, c, k);
    if (suf) tk_buf_put(tmp, m->suffix, m->suffix_len);
    return tk_strmap_get(&m->vocab, tmp->p, tmp->n);
}

/* Merge one piece; appends its ids to out. */
static void merge_word(const tk_bpe *m, tk_scratch *s, const char *w, size_t n, tok_ids *out)
{
    size_t ns = 0;
    bool unk = false;   /* an unknown token waiting to be added (HF adds it before the next known one) */
    tk_buf *tmp = &s->buf[2];
    for (size_t i = 0; i < n;) {
        size_t k = ds_utf8_lead_len((unsigned char)w[i]);   /* pieces are valid UTF-8 */
        bool first = i == 0, last = i + k == n;
        int32_t id = char_id(m, tmp, w + i, k, first, last);
        if (id >= 0) {
            if (unk) sym_push(s, &ns, m->unk_id);
            unk = false;
            sym_push(s, &ns, id);
        } else {
            bool done = false;
            if (m->byte_fallback) {
                /* every byte of the character (with prefix/suffix) as <0xAB>, or none */
                tmp->n = 0;
                if (!first && m->prefix_len) tk_buf_put(tmp, m->prefix, m->prefix_len);
                tk_buf_put(tmp, w + i, k);
                if (last && m->suffix_len) tk_buf_put(tmp, m->suffix, m->suffix_len);
                done = true;
                for (size_t b = 0; b < tmp->n && done; b++) done = m->byte_id[(unsigned char)tmp->p[b]] >= 0;
                if (done)
                    for (size_t b = 0; b < tmp->n; b++) sym_push(s, &ns, m->byte_id[(unsigned char)tmp->p[b]]);
            }
            if (!done && m->unk_id >= 0) {
                if (unk && !m->fuse_unk) sym_push(s, &ns, m->unk_id);
                unk = true;
            }
            /* no byte fallback and no unknown token: HF drops the character */
        }
        i += k;
    }
    if (unk) sym_push(s, &ns, m->unk_id);
    if (!ns) return;
    s->sym[ns - 1].next = -1;

    size_t nh = 0;
    for (size_t i = 0; i + 1 < ns; i++) try_pair(m, s, &nh, (int32_t)i);
    while (nh) {
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
        if (a->prev >= 0) try_pair(m, s, &nh, a->prev);
        if (a->next >= 0) try_pair(m, s, &nh, top.pos);
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) tk_ids_push(out, s->sym[i].id);
}

int tk_bpe_encode(const tokenizer *t, tk_scratch *s, const char *w, size_t n, tok_ids *out)
{
    const tk_bpe *m = &t->bpe;
    if (!n) return DS_OK;
    if (m->ignore_merges) {
        /* a piece that is itself a token is emitted whole (Llama 3) */
        int32_t id = tk_strmap_get(&m->vocab, w, n);
        if (id >= 0) {
            tk_ids_push(out, id);
            return DS_OK;
        }
    }
    if (n > CACHE_MAX_KEY) {
        merge_word(m, s, w, n, out);
        return DS_OK;
    }
    uint32_t h = (uint32_t)tk_hash(w, n);
    if (cache_get(s, w, n, h, out)) return DS_OK;
    size_t before = out->n;
    merge_word(m, s, w, n, out);
    cache_put(s, w, n, h, out->n > before ? out->ids + before : NULL, out->n - before);
    return DS_OK;
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
