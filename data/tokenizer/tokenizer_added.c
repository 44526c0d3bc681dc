/* data/tokenizer/tokenizer_added.c - finding added and special tokens in text.
 *
 * HF's AddedVocabulary: the leftmost, then longest, token match wins; the
 * search resumes after it. single_word drops a match that touches a word
 * character on either side; lstrip/rstrip widen a match over the spaces
 * beside it (so they vanish from the text).
 */
#include "tokenizer_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* A new node; *index its index. */
static int trie_node(tk_trie *tr, int32_t *index)
{
    if (ds_grow(&tr->node, &tr->cap, tr->n + 1, sizeof *tr->node)) return DS_ENOMEM;
    tr->node[tr->n] = (struct tk_trie_node){-1, -1, -1, 0};
    *index = (int32_t)tr->n++;
    return DS_OK;
}

int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token)
{
    if (!n) return DS_OK;   /* HF ignores empty tokens */
    int32_t cur = 0;
    if (!tr->n && trie_node(tr, &cur)) return DS_ENOMEM;   /* the root */
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = tr->node[cur].child;
        while (c >= 0 && tr->node[c].byte != b) c = tr->node[c].sibling;
        if (c < 0) {
            if (trie_node(tr, &c)) return DS_ENOMEM;   /* a partial path ends in no token: harmless */
            tr->node[c].byte = b;
            tr->node[c].sibling = tr->node[cur].child;
            tr->node[cur].child = c;
        }
        cur = c;
    }
    tr->node[cur].token = token;
    tr->first[(uint8_t)s[0]] = true;
    return DS_OK;
}

void tk_trie_free(tk_trie *tr)
{
    free(tr->node);
    memset(tr, 0, sizeof *tr);
}

/* Longest token starting at s[0..n): its index, *len its length; -1 if none. */
static int32_t longest(const tk_trie *tr, const char *s, size_t n, size_t *len)
{
    int32_t cur = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t c = tr->node[cur].child;
        while (c >= 0 && tr->node[c].byte != (uint8_t)s[i]) c = tr->node[c].sibling;
        if (c < 0) break;
        cur = c;
        if (tr->node[cur].token >= 0) {
            best = tr->node[cur].token;
            *len = i + 1;
        }
    }
    return best;
}

/* A word character as Rust's regex \w sees it: Alphabetic, marks, decimal
 * digits, connector punctuation, joiners. */
static bool is_word(uint32_t cp)
{
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        /* joiners and the letter-like symbols Unicode counts as Alphabetic */
        return cp == 0x200C || cp == 0x200D || (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
               (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
    }
}

static size_t char_start_before(const char *s, size_t i)
{
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

int tk_split_added(const tokenizer *t, const tk_trie *trie, const char *s, size_t n, tk_emit_fn emit, void *ctx)
{
    size_t done = 0;   /* s[0..done) has been emitted */
    int rc;
    if (trie->n) {
        for (size_t pos = 0; pos < n;) {
            size_t len = 0;
            int32_t k = trie->first[(uint8_t)s[pos]] ? longest(trie, s + pos, n - pos, &len) : -1;
            if (k < 0) {
                pos++;
                continue;
            }
            const tk_added *a = &t->added[k];
            size_t start = pos, stop = pos + len, cl;
            pos = stop;   /* the search goes on after the match, whatever is done with it */
            if (a->special && t->split_special) continue;
            if (a->single_word) {
                size_t before = start ? char_start_before(s, start) : 0;
                bool left_ok = start == 0 || !is_word(ds_utf8_decode(s + before, n - before, &cl));
                bool right_ok = stop == n || !is_word(ds_utf8_decode(s + stop, n - stop, &cl));
                if (!left_ok || !right_ok) continue;
            }
            if (a->lstrip) {
                size_t ws = start;
                while (ws > 0) {
                    size_t c = char_start_before(s, ws);
                    if (!tk_is_whitespace(ds_utf8_decode(s + c, n - c, &cl))) break;
                    ws = c;
                }
                start = ws > done ? ws : done;   /* spaces an earlier match took stay with it */
            }
            if (a->rstrip)
                while (stop < n && tk_is_whitespace(ds_utf8_decode(s + stop, n - stop, &cl))) stop += cl;
            if (done < start && (rc = emit(ctx, s + done, start - done, -1))) return rc;
            if (stop > start && (rc = emit(ctx, s + start, stop - start, k))) return rc;
            done = stop;
        }
    }
    if (done < n && (rc = emit(ctx, s + done, n - done, -1))) return rc;
    return DS_OK;
}

int tk_added_find(const tokenizer *t, const char *s, size_t n)
{
    return tk_strmap_get(&t->added_by_content, s, n);
}
