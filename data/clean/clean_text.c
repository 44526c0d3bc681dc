/* data/clean/clean_text.c - a record's text, its words, and the
 * fingerprints made of them: the exact hash of the normalised text,
 * SimHash and MinHash over word shingles.
 *
 * Normalisation is by words: lower case (Unicode), runs of letters, digits
 * and marks, everything else a separator. So "Take 5 mg." and "take 5 MG"
 * are the same text; "0.5 mg" ("0", "5", "mg") and "05 mg" are not.
 */
#include "clean_internal.h"

#include "core/mem.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/utf8.h"
#include "data/dataset/chat_template.h"
#include "data/dataset/dataset.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define FNV_PRIME 0x100000001b3ULL
#define FNV_BASIS 0xcbf29ce484222325ULL

/* ---- words ---- */

/* Room for one more word in the three parallel arrays (they grow alike). */
static bool grow_words(clean_words *w)
{
    size_t c1 = w->cap, c2 = w->cap, c3 = w->cap;
    if (ds_grow(&w->hash, &c1, w->n + 1, sizeof *w->hash) || ds_grow(&w->start, &c2, w->n + 1, sizeof *w->start) ||
        ds_grow(&w->len, &c3, w->n + 1, sizeof *w->len))
        return false;
    w->cap = c1;
    return true;
}

void clean_words_free(clean_words *w)
{
    free(w->hash);
    free(w->start);
    free(w->len);
    memset(w, 0, sizeof *w);
}

static clean_script script_of(uint32_t c)
{
    if (c < 0x250) return SCRIPT_LATIN;   /* ASCII and Latin-1/Extended letters */
    if (c >= 0x1E00 && c <= 0x1EFF) return SCRIPT_LATIN;
    if ((c >= 0x370 && c <= 0x3FF) || (c >= 0x1F00 && c <= 0x1FFF)) return SCRIPT_GREEK;
    if (c >= 0x400 && c <= 0x52F) return SCRIPT_CYRILLIC;
    if (c >= 0x530 && c <= 0x58F) return SCRIPT_ARMENIAN;
    if (c >= 0x590 && c <= 0x5FF) return SCRIPT_HEBREW;
    if ((c >= 0x600 && c <= 0x6FF) || (c >= 0x750 && c <= 0x77F)) return SCRIPT_ARABIC;
    if (c >= 0x900 && c <= 0x97F) return SCRIPT_DEVANAGARI;
    if (c >= 0xE00 && c <= 0xE7F) return SCRIPT_THAI;
    if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F))
        return SCRIPT_HANGUL;
    if ((c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
        (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x2FFFF))
        return SCRIPT_CJK;
    return SCRIPT_OTHER;
}

/* Han, Hiragana and Katakana are written without spaces: each character is a word. */
static bool is_own_word(uint32_t c) { return script_of(c) == SCRIPT_CJK; }

static inline bool ascii_word(unsigned char c) { return (unsigned char)((c | 0x20) - 'a') < 26 || (unsigned char)(c - '0') < 10; }

int clean_words_scan(clean_words *w, const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    w->n = 0;
    w->chars = w->alpha_words = w->bad_chars = 0;
    memset(w->letters, 0, sizeof w->letters);
    size_t i = 0;
    uint64_t h = FNV_BASIS;
    size_t start = 0;
    bool in_word = false, has_letter = false;
#define END_WORD()                                                                                  \
    do {                                                                                            \
        if (in_word) {                                                                              \
            if (w->n == w->cap && !grow_words(w)) return DS_ENOMEM;                              \
            w->hash[w->n] = ds_mix64(h);                                                            \
            w->start[w->n] = (uint32_t)start;                                                       \
            w->len[w->n] = (uint32_t)(i - start);                                                   \
            w->n++;                                                                                 \
            w->alpha_words += has_letter;                                                           \
            in_word = has_letter = false;                                                           \
            h = FNV_BASIS;                                                                          \
        }                                                                                           \
    } while (0)
    if (len > UINT32_MAX) return ds_fail(DS_EDATA, "a record of %zu bytes is too long to clean", len);
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (ascii_word(c)) {
                if (!in_word) start = i, in_word = true;
                /* the rest of an ASCII run of the word at once */
                size_t j = i, letters = 0;
                for (; j < len && ascii_word(s[j]); j++) {
                    unsigned char x = s[j];
                    letters += x >= 'A';
                    h = (h ^ (x | 0x20u)) * FNV_PRIME;   /* digits have 0x20 set already */
                }
                w->chars += j - i;
                w->letters[SCRIPT_LATIN] += letters;
                has_letter |= letters > 0;
                i = j;
                continue;
            }
            w->chars++;
            END_WORD();
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) w->bad_chars++;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp = ds_utf8_decode((const char *)s + i, len - i, &n);
        w->chars++;
        if (cp == DS_UTF8_BAD || cp == 0xFFFD || (cp >= 0x80 && cp < 0xA0)) {
            END_WORD();
            w->bad_chars++;
            i += n;
            continue;
        }
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool wordch = letter || (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_NO);
        if (!wordch || is_own_word(cp)) END_WORD();
        if (wordch) {
            if (!in_word) start = i, in_word = true;
            if (letter) {
                has_letter = true;
                w->letters[script_of(cp)]++;
            }
            uint32_t lo = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
            for (int k = 0; k < 4; k++) h = (h ^ ((lo >> (8 * k)) & 0xff)) * FNV_PRIME;
        }
        i += n;
        if (wordch && is_own_word(cp)) END_WORD();
    }
    END_WORD();
#undef END_WORD
    return DS_OK;
}

/* ---- fingerprints ---- */

uint64_t clean_exact_hash(const clean_words *w)
{
    if (w->n == 0) return 0;
    uint64_t h = 0x5eed;
    for (size_t i = 0; i < w->n; i++) h = ds_mix64(h ^ w->hash[i]);
    return h ? h : 1;
}

uint64_t clean_ngram_hash(const clean_words *w, size_t i, size_t k)
{
    uint64_t h = 0;
    for (size_t j = 0; j < k; j++) h = (h << 23 | h >> 41) ^ w->hash[i + j];
    return ds_mix64(h + k);
}

/* SPREAD(b): byte k of the result is bit k of b, so adding SPREAD(byte) to a
 * word counts eight bits at once in eight byte-wide counters. */
#define SPREAD(b)                                                                                          \
    ((uint64_t)((b) & 1) | (uint64_t)((b) >> 1 & 1) << 8 | (uint64_t)((b) >> 2 & 1) << 16 |                \
     (uint64_t)((b) >> 3 & 1) << 24 | (uint64_t)((b) >> 4 & 1) << 32 | (uint64_t)((b) >> 5 & 1) << 40 |   \
     (uint64_t)((b) >> 6 & 1) << 48 | (uint64_t)((b) >> 7 & 1) << 56)
#define S4(b) SPREAD(b), SPREAD((b) + 1), SPREAD((b) + 2), SPREAD((b) + 3)
#define S16(b) S4(b), S4((b) + 4), S4((b) + 8), S4((b) + 12)
#define S64(b) S16(b), S16((b) + 16), S16((b) + 32), S16((b) + 48)
static const uint64_t spread[256] = {S64(0), S64(64), S64(128), S64(192)};

/* How many shingles the words give, and the hash of shingle i. */
static size_t shingle_count(const clean_words *w, int k) { return w->n == 0 ? 0 : w->n < (size_t)k ? 1 : w->n - (size_t)k + 1; }
static uint64_t shingle_hash(const clean_words *w, int k, size_t i)
{
    return clean_ngram_hash(w, i, w->n < (size_t)k ? w->n : (size_t)k);
}

uint64_t clean_simhash(const clean_words *w, int shingle)
{
    size_t ns = shingle_count(w, shingle);
    if (ns == 0) return 0;
    uint32_t ones[64] = {0};
    uint64_t acc[8] = {0};
    int pending = 0;
    for (size_t i = 0; i < ns; i++) {
        uint64_t h = shingle_hash(w, shingle, i);
        for (int b = 0; b < 8; b++) acc[b] += spread[(h >> (8 * b)) & 0xff];
        if (++pending == 255 || i + 1 == ns) {   /* byte counters hold up to 255 */
            for (int b = 0; b < 8; b++) {
                for (int k = 0; k < 8; k++) ones[8 * b + k] += (uint32_t)(acc[b] >> (8 * k)) & 0xff;
                acc[b] = 0;
            }
            pending = 0;
        }
    }
    uint64_t fp = 0;
    for (int j = 0; j < 64; j++)
        if (2 * (size_t)ones[j] > ns) fp |= 1ULL << j;
    return fp;
}

int clean_simhash_max_distance(double similarity)
{
    double d = (1.0 - similarity) * 64.0 + 1e-9;
    return d < 0 ? 0 : d > 64 ? 64 : (int)d;
}

void clean_minhash(const clean_words *w, int shingle, int nhash, uint16_t *sig)
{
    uint32_t mins[1024];
    uint32_t a[1024], b[1024];
    if (nhash > 1024) nhash = 1024;
    for (int j = 0; j < nhash; j++) {   /* multiply-shift hash functions, fixed */
        a[j] = (uint32_t)ds_hash3(0x6d696e68, 1, (uint64_t)j) | 1;
        b[j] = (uint32_t)ds_hash3(0x6d696e68, 2, (uint64_t)j);
        mins[j] = UINT32_MAX;
    }
    size_t ns = shingle_count(w, shingle);
    for (size_t i = 0; i < ns; i++) {
        uint64_t h64 = shingle_hash(w, shingle, i);
        uint32_t x = (uint32_t)(h64 ^ (h64 >> 32));
        for (int j = 0; j < nhash; j++) {
            uint32_t v = a[j] * x + b[j];
            mins[j] = v < mins[j] ? v : mins[j];
        }
    }
    for (int j = 0; j < nhash; j++) sig[j] = (uint16_t)(mins[j] >> 16);
}

/* ---- a record's text ---- */

const char *clean_guess_type(const json_t *obj)
{
#define HAS(k) (json_object_get(obj, k) != NULL)
    if (HAS("messages")) return "messages";
    if (HAS("chosen") && HAS("rejected")) return "preference";
    if (HAS("question") && (HAS("choices") || HAS("opa") || HAS("options"))) return "mcq";
    if (HAS("instruction") && HAS("output")) return "alpaca";
    if (HAS("prompt") && HAS("completion")) return "prompt_completion";
    if (HAS("text")) return "text";
    return NULL;
#undef HAS
}

void clean_type_word_limits(const char *type, int64_t *min_words, int64_t *max_words)
{
    static const struct { const char *type; int64_t lo, hi; } limits[] = {
        {"text", 10, 256},              /* whole examples: the seeds' 10..256 words */
        {"alpaca", 1, 256},             /* the output: a one-word answer is an answer */
        {"prompt_completion", 1, 256},  /* the completion, likewise */
        {"messages", 1, 1024},          /* every assistant turn of a conversation */
        {"preference", 2, 512},         /* chosen and rejected together */
        {"mcq", 5, 256},                /* the question and its choices */
    };
    *min_words = 10;
    *max_words = 256;
    for (size_t i = 0; type && i < sizeof limits / sizeof limits[0]; i++)
        if (!strcmp(limits[i].type, type)) *min_words = limits[i].lo, *max_words = limits[i].hi;
}

void clean_text_free(clean_text *t)
{
    free(t->all);
    free(t->counted);
    free(t->piece_start);
    free(t->piece_len);
    memset(t, 0, sizeof *t);
}

static bool reserve(char **buf, size_t *cap, size_t need) { return ds_grow(buf, cap, need, 1) == DS_OK; }

/* Append a piece to one of the two texts, newline-separated. */
static bool add_piece(char **buf, size_t *cap, size_t *len, const char *s, size_t n)
{
    if (!reserve(buf, cap, *len + n + 2)) return false;
    if (*len) (*buf)[(*len)++] = '\n';
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

int clean_text_of(const char *type, bool all, const json_t *obj, const char *file, int line, clean_text *t)
{
    ct_render r = {0};
    int rc = dataset_record_text(type, obj, file, line, &r);
    t->all_len = t->counted_len = 0;
    t->npieces = 0;
    if (rc) {
        ct_render_free(&r);
        return rc;
    }
    bool every = all || !strcmp(type, "mcq");   /* an mcq record's text is its question and choices */
    bool ok = reserve(&t->all, &t->cap_all, 1) && reserve(&t->counted, &t->cap_counted, 1);
    if (ok) t->all[0] = t->counted[0] = '\0';
    for (int i = 0; i < r.n && ok; i++) {
        if (!t->no_all) ok = add_piece(&t->all, &t->cap_all, &t->all_len, r.p[i].text, r.p[i].len);
        if (!ok || !(every || r.p[i].train)) continue;
        size_t c1 = t->cap_pieces, c2 = t->cap_pieces, need = (size_t)t->npieces + 1;
        if (ds_grow(&t->piece_start, &c1, need, sizeof *t->piece_start) ||
            ds_grow(&t->piece_len, &c2, need, sizeof *t->piece_len)) {
            ok = false;
            break;
        }
        t->cap_pieces = c1;
        ok = add_piece(&t->counted, &t->cap_counted, &t->counted_len, r.p[i].text, r.p[i].len);
        t->piece_start[t->npieces] = t->counted_len - r.p[i].len;
        t->piece_len[t->npieces++] = r.p[i].len;
    }
    ct_render_free(&r);
    return ok ? DS_OK : DS_ENOMEM;   /* ds_grow set the message */
}
