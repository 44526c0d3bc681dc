/* data/clean/clean_filters.c - the repetition rules of Gopher (Rae et al.,
 * 2021, "Scaling Language Models", appendix A) and the character-set rules.
 *
 * Repetition, on each counted piece of a record (an output, each assistant
 * turn, chosen and rejected apart) with at least repetition.min_words words:
 *   dup_line_share       lines that repeat an earlier line, of all non-blank lines (0.30)
 *   dup_line_char_share  their characters, of all characters of the lines (0.20)
 *   top_ngram_share      characters of the most frequent repeated n-gram times its count, of the
 *                        characters of all words: n = 2, 3, 4 against 0.20, 0.18, 0.16
 *   dup_ngram_share      characters of words inside repeats of an earlier n-gram, of all word
 *                        characters: n = 5..10 against 0.15, 0.14, ..., 0.10
 * The config sets the n = 2 and n = 5 limits; the others follow Gopher's
 * steps (0.02 and 0.01 less per word). A limit of 1 turns a rule off.
 */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

void clean_scratch_free(clean_scratch *s)
{
    free(s->keys);
    free(s->counts);
    free(s->covered);
    free(s->grams);
    free(s->prefix);
    memset(s, 0, sizeof *s);
}

/* A table of 2^k slots for n entries (load <= 1/2). */
static int table_for(clean_scratch *s, size_t n, size_t *mask)
{
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    if (cap > s->cap) {   /* the two arrays grow alike: s->cap counts keys, counts has twice as many */
        size_t ck = s->cap, cc = 2 * s->cap;
        if (ds_grow(&s->keys, &ck, cap, sizeof *s->keys) || ds_grow(&s->counts, &cc, 2 * cap, sizeof *s->counts))
            return DS_ENOMEM;
        s->cap = cap;
    }
    memset(s->keys, 0, cap * sizeof *s->keys);
    *mask = cap - 1;
    return DS_OK;
}

/* The slot of key (never 0: the hashes are nudged off it), inserted if new. */
static size_t slot_of(clean_scratch *s, size_t mask, uint64_t key, bool *fresh)
{
    key |= 1;
    size_t i = (size_t)key & mask;
    while (s->keys[i] && s->keys[i] != key) i = (i + 1) & mask;
    *fresh = !s->keys[i];
    s->keys[i] = key;
    return i;
}

static int line_repetition(const char *text, size_t len, clean_scratch *s, clean_repetition *out)
{
    if (!memchr(text, '\n', len)) return DS_OK;          /* one line repeats nothing */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    size_t mask;
    int rc = table_for(s, lines + 1, &mask);
    if (rc) return rc;
    size_t nonblank = 0, dup = 0, chars = 0, dup_chars = 0;
    for (size_t a = 0; a <= len;) {
        const char *nl = memchr(text + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - text) : len, x = a, y = b;
        while (x < y && (text[x] == ' ' || text[x] == '\t' || text[x] == '\r')) x++;
        while (y > x && (text[y - 1] == ' ' || text[y - 1] == '\t' || text[y - 1] == '\r')) y--;
        if (y > x) {
            uint64_t h = 0x11;
            for (size_t i = x; i < y; i++) h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
            bool fresh;
            slot_of(s, mask, ds_mix64(h), &fresh);
            nonblank++;
            chars += y - x;
            if (!fresh) dup++, dup_chars += y - x;
        }
        a = b + 1;
    }
    out->dup_line = nonblank ? (double)dup / (double)nonblank : 0;
    out->dup_line_chars = chars ? (double)dup_chars / (double)chars : 0;
    return DS_OK;
}

/* Of the n-grams of words [w0, w1): the largest count x characters among
 * repeated ones (*top), and the characters of words inside a repeat
 * (*dup). @return whether any n-gram repeats. */
static int ngram_repetition(const clean_words *w, size_t w0, size_t w1, size_t n, clean_scratch *s, size_t *top,
                            size_t *dup, bool *any)
{
    size_t count = w1 - w0 >= n ? w1 - w0 - n + 1 : 0, mask;
    *top = *dup = 0;
    *any = false;
    if (count == 0) return DS_OK;
    int rc = table_for(s, count, &mask);
    if (!rc && w1 - w0 > s->cover_cap) {   /* the three arrays grow alike (prefix has one more) */
        size_t c1 = s->cover_cap, c2 = s->cover_cap, c3 = s->cover_cap;
        if (ds_grow(&s->covered, &c1, w1 - w0, sizeof *s->covered) ||
            ds_grow(&s->grams, &c2, w1 - w0, sizeof *s->grams) || ds_grow(&s->prefix, &c3, w1 - w0 + 1, sizeof *s->prefix))
            return DS_ENOMEM;
        s->cover_cap = w1 - w0;
    }
    if (rc) return rc;
    memset(s->covered, 0, w1 - w0);
    if (n == 2) {                                        /* the 1-grams, which each pass grows by a word */
        s->prefix[0] = 0;
        for (size_t i = w0; i < w1; i++) {
            s->grams[i - w0] = w->hash[i];
            s->prefix[i - w0 + 1] = s->prefix[i - w0] + w->len[i];   /* characters of words before i */
        }
    }
    for (size_t i = w0; i < w0 + count; i++) {
        bool fresh;
        uint64_t *h = &s->grams[i - w0];                 /* the (n-1)-gram at i, one word longer */
        *h = (*h << 23 | *h >> 41) ^ w->hash[i + n - 1];
        size_t k = slot_of(s, mask, ds_mix64(*h + n), &fresh);
        size_t chars = s->prefix[i + n - w0] - s->prefix[i - w0];
        if (fresh) {
            s->counts[2 * k] = 1;
            s->counts[2 * k + 1] = (uint32_t)chars;
            continue;
        }
        *any = true;
        uint32_t c = ++s->counts[2 * k];
        if ((size_t)c * s->counts[2 * k + 1] > *top) *top = (size_t)c * s->counts[2 * k + 1];
        for (size_t j = i; j < i + n; j++) s->covered[j - w0] = 1;
    }
    for (size_t j = w0; j < w1; j++)
        if (s->covered[j - w0]) *dup += w->len[j];
    return DS_OK;
}

int clean_repetition_measure(const char *base, size_t start, size_t len, const clean_words *w, size_t w0, size_t w1,
                             clean_scratch *s, clean_repetition *out)
{
    memset(out, 0, sizeof *out);
    int rc = line_repetition(base + start, len, s, out);
    size_t chars = 0;
    for (size_t j = w0; j < w1; j++) chars += w->len[j];
    if (rc || chars == 0) return rc;
    bool any = true;   /* an n-gram can repeat only where an (n-1)-gram does */
    for (size_t n = 2; n <= 10 && any && !rc; n++) {
        size_t top, dup;
        rc = ngram_repetition(w, w0, w1, n, s, &top, &dup, &any);
        if (n <= 4) out->top_ngram[n - 2] = (double)top / (double)chars;
        else out->dup_ngram[n - 5] = (double)dup / (double)chars;
    }
    return rc;
}

const char *clean_repetition_broken(const clean_repetition *r, const clean_config *cfg)
{
    if (cfg->max_dup_line_share < 1 && r->dup_line > cfg->max_dup_line_share) return "dup_line_share";
    if (cfg->max_dup_line_char_share < 1 && r->dup_line_chars > cfg->max_dup_line_char_share)
        return "dup_line_char_share";
    for (int k = 0; k < 3 && cfg->max_top_ngram_share < 1; k++)
        if (r->top_ngram[k] > cfg->max_top_ngram_share - 0.02 * k) return "top_ngram_share";
    for (int k = 0; k < 6 && cfg->max_dup_ngram_share < 1; k++)
        if (r->dup_ngram[k] > cfg->max_dup_ngram_share - 0.01 * k) return "dup_ngram_share";
    return NULL;
}

const char *clean_charset_broken(const clean_words *w, const clean_config *cfg)
{
    static const char *const scripts[] = {"any", "latin", "greek", "cyrillic", "armenian", "hebrew",
                                          "arabic", "devanagari", "thai", "hangul", "cjk"};
    int want = 0;
    for (int k = 1; k < SCRIPT_COUNT; k++)
        if (cfg->script && !strcmp(cfg->script, scripts[k])) want = k;
    size_t letters = 0;
    for (int k = 0; k < SCRIPT_COUNT; k++) letters += w->letters[k];
    if (want && letters && (double)w->letters[want] < cfg->min_script_share * (double)letters) return "script_share";
    if (w->n && (double)w->alpha_words < cfg->min_alpha_word_share * (double)w->n) return "alpha_word_share";
    if (w->chars && (double)w->bad_chars > cfg->max_bad_char_share * (double)w->chars) return "bad_char_share";
    return NULL;
}
