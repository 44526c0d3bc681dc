/* data/tokenizer/tokenizer_internal.h - what the tokenizer_*.c files share.
 *
 * The pipeline follows Hugging Face tokenizers: added tokens are split out of
 * the raw text first, the rest is normalized, pre-tokenized into pieces, and
 * each piece goes through the BPE model. Each stage is a flat array of steps
 * (a "Sequence" in tokenizer.json is flattened at load: applying its members
 * in order is all a Sequence does).
 */
#ifndef DS_DATA_TOKENIZER_INTERNAL_H
#define DS_DATA_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/status.h"
#include "core/utf8.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Text is built in ds_buf (core/buf.h). Everything below that allocates
 * returns DS_OK or DS_ENOMEM (message set, core/mem.h). */

/* Append ids to a tok_ids. */
int tk_ids_push(tok_ids *v, int32_t id);
int tk_ids_append(tok_ids *v, const int32_t *ids, size_t n);

/* ------------------------------------------------------------------- UTF-8 */

/* Validating, decoding and encoding: core/utf8.h. */
/* Append s to out with every ill-formed sequence replaced by U+FFFD, one per
 * maximal subpart, as Rust's String::from_utf8_lossy does. */
int tk_utf8_lossy(ds_buf *out, const char *s, size_t n);

/* ---------------------------------------------------------------- hash maps */

uint64_t tk_hash(const void *p, size_t n);

/* String -> int32 map. Keys are copied into an arena, each NUL-terminated. */
typedef struct {
    ds_buf arena;
    struct tk_map_ent {
        uint32_t off, len;
        uint32_t hash;
        int32_t val;
    } *ent;
    size_t n, cap;
    uint64_t *slot;   /* hash << 32 | (entry index + 1); 0 = empty */
    size_t nslot;     /* power of two */
} tk_strmap;

int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t n);   /* -1 if absent */
/* Insert or overwrite. */
int tk_strmap_put(tk_strmap *m, const char *s, size_t n, int32_t val);
void tk_strmap_free(tk_strmap *m);

/* (left id, right id) -> (rank, merged id): the BPE merges. */
typedef struct {
    struct tk_pair_ent {
        uint64_t key;     /* left << 32 | right; UINT64_MAX = empty */
        uint32_t rank;
        int32_t merged;
    } *slot;
    size_t nslot, n;
} tk_pairmap;

int tk_pairmap_init(tk_pairmap *m, size_t expect);
int tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
static inline const struct tk_pair_ent *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b)
{
    if (!m->nslot) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t mask = m->nslot - 1, i = (size_t)(h >> 32) & mask;
    for (;;) {
        const struct tk_pair_ent *e = &m->slot[i];
        if (e->key == key) return e;
        if (e->key == UINT64_MAX) return NULL;
        i = (i + 1) & mask;
    }
}
void tk_pairmap_free(tk_pairmap *m);

/* ------------------------------------------------------------------ regexes */

/* A pattern from tokenizer.json compiled with PCRE2. HF compiles patterns
 * with Oniguruma (Ruby syntax); tk_regex_compile rewrites the constructs
 * whose meaning differs and refuses the ones it cannot express. */
typedef struct {
    pcre2_code *code;
    bool jit;
} tk_regex;

/* `literal`: the pattern is a plain string ({"String": ...}). `where` names
 * the component in error messages. */
int tk_regex_compile(tk_regex *re, const char *pat, size_t n, bool literal, const char *what, const char *where);
void tk_regex_free(tk_regex *re);

/* Match positions: pairs (start, end). */
typedef struct {
    size_t *v;
    size_t n, cap;   /* n counts pairs, cap the values v has room for */
} tk_matches;
static inline int tk_matches_push(tk_matches *m, size_t a, size_t b)
{
    if (ds_grow(&m->v, &m->cap, 2 * (m->n + 1), sizeof *m->v)) return DS_ENOMEM;
    m->v[2 * m->n] = a;
    m->v[2 * m->n + 1] = b;
    m->n++;
    return DS_OK;
}

/* All matches in s[0..n) as the onig crate's find_iter yields them (an empty
 * match right after a match is skipped; after an empty match the search moves
 * on one character). s must be valid UTF-8. */
int tk_regex_find_all(const tk_regex *re, const char *s, size_t n, tk_matches *out);

/* ------------------------------------------------------------- normalizers */

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_PREPEND, NORM_REPLACE, NORM_STRIP };

typedef struct {
    int kind;
    tk_regex re;            /* NORM_REPLACE */
    char *str;              /* NORM_PREPEND: the prefix; NORM_REPLACE: the content */
    size_t str_len;
    bool left, right;       /* NORM_STRIP */
} tk_norm;

/* ----------------------------------------------------------- pre-tokenizers */

enum { PT_SPLIT, PT_BYTELEVEL, PT_DIGITS };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };

typedef struct {
    int kind;
    tk_regex re;            /* PT_SPLIT; PT_BYTELEVEL with use_regex: the GPT-2 pattern */
    int behavior;
    bool invert;
    bool add_prefix_space;  /* PT_BYTELEVEL */
    bool use_regex;
    bool individual;        /* PT_DIGITS: individual_digits */
} tk_pretok;

/* Pieces of text: spans into one buffer. */
typedef struct {
    ds_buf text;
    size_t (*span)[2];   /* (offset, length) */
    size_t n, cap;
} tk_pieces;

int tk_pieces_add(tk_pieces *p, const char *s, size_t n);
/* Register text[off, off+n) already written into p->text as a piece. */
int tk_pieces_add_span(tk_pieces *p, size_t off, size_t n);
void tk_pieces_reset(tk_pieces *p);
void tk_pieces_free(tk_pieces *p);

/* ------------------------------------------------------------------ decoders */

enum { DEC_BYTELEVEL, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE };

typedef struct {
    int kind;
    tk_regex re;            /* DEC_REPLACE */
    char *str;              /* DEC_REPLACE: content */
    size_t str_len;
    uint32_t strip_char;    /* DEC_STRIP */
    size_t strip_start, strip_stop;
} tk_dec;

/* ------------------------------------------------------------- added tokens */

typedef struct {
    char *content;          /* as written */
    size_t len;
    char *norm;             /* normalized form (what a normalized token is matched as) */
    size_t norm_len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} tk_added;

/* A byte trie over added-token strings, for leftmost-longest matching. */
typedef struct {
    struct tk_trie_node {
        int32_t child, sibling;
        int32_t token;      /* index into tokenizer.added, -1 */
        uint8_t byte;
    } *node;
    size_t n, cap;
    bool first[256];        /* bytes some token starts with */
} tk_trie;

/* ------------------------------------------------------------------ the model */

typedef struct {
    tk_strmap vocab;         /* token string -> id */
    uint32_t *r_ent;         /* id -> vocab entry index; UINT32_MAX = no such id */
    int32_t nr;              /* largest vocab id + 1 */
    tk_pairmap merges;
    int32_t (*merge_list)[2];   /* the merges' (left id, right id) in rank order, for exporters */
    size_t nmerge;
    int32_t unk_id;          /* -1: none */
    bool fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;   /* continuing_subword_prefix, end_of_word_suffix (NULL: none) */
    size_t prefix_len, suffix_len;
    int32_t byte_id[256];    /* byte_fallback: id of "<0xAB>", -1 */
    int32_t small_id[512];   /* code point -> id of that single character, when no prefix/suffix */
} tk_bpe;

struct tokenizer {
    char *what;              /* file name for messages */
    uint64_t serial;         /* tells one tokenizer's cache from another's */
    tk_bpe bpe;
    tk_norm *norm;
    int nnorm;
    tk_pretok *pretok;
    int npretok;
    tk_dec *dec;
    int ndec;
    size_t cap_norm, cap_pretok, cap_dec, cap_added;   /* room in norm, pretok, dec, added */
    bool has_decoder;        /* no decoder: tokens are joined with spaces */
    tk_added *added;
    int nadded;
    tk_strmap added_by_content;   /* content -> index into added */
    int32_t *added_by_id;         /* id -> index into added, -1; length vocab_size */
    tk_trie trie_raw, trie_norm;  /* non-normalized / normalized added tokens */
    bool split_special;           /* tokenizer_config split_special_tokens: special tokens are plain text */
    int32_t *prefix_ids, *suffix_ids;   /* what add_special puts around the text; never NULL, room for
                                           at least one id (a BOS/EOS template's) */
    int nprefix, nsuffix;
    int bos_id, eos_id, pad_id;
    bool bos_from_model;          /* BOS goes first once tok_set_default_ids gives its id */
    int vocab_size;
    char digest[65];              /* sha256 (hex) of the bytes parsed: tok_digest */
};

/* ------------------------------------------------------------ per-thread state */

typedef struct {
    size_t a, b;
    bool match;
} tk_seg;

/* A BPE symbol during merging: a token id in a linked list. */
typedef struct {
    int32_t id;
    int32_t prev, next;
    bool dead;
} tk_sym;

/* One heap entry: merge the symbol at pos with its right neighbour. */
typedef struct {
    uint32_t rank;
    int32_t pos;
    int32_t merged;
} tk_merge;

/* Scratch space reused between calls on one thread, and the BPE cache of
 * the tokenizer that used it last (pieces seen before skip the merging). */
typedef struct tk_scratch {
    uint64_t owner;             /* serial of the tokenizer the cache belongs to */
    tk_pieces pieces[2];
    ds_buf buf[3];              /* normalized text, normalizer temporary, prefixed piece */
    tk_matches m;
    tk_seg *seg;
    size_t nseg, capseg;
    tk_sym *sym;
    size_t capsym;
    tk_merge *heap;
    size_t capheap;
    /* the cache: open addressing over entries whose keys and ids live in arenas */
    uint32_t *slot;
    size_t nslot, used;
    struct tk_cache_ent {
        uint32_t hash, key_off, key_len, ids_off, ids_n;
    } *ent;
    size_t capent;
    ds_buf keys;
    tok_ids ids;
} tk_scratch;

/* This thread's scratch, its cache emptied when it belonged to another
 * tokenizer. NULL: out of memory (message set). */
tk_scratch *tk_scratch_get(const tokenizer *t);
void tk_scratch_release_for(const tokenizer *t);

/* ------------------------------------------------------------- the stages */

/* tokenizer_load.c: parse each component; each refuses what it does not know. */
int tk_load_model(tokenizer *t, json_t *model);
int tk_load_normalizer(tokenizer *t, json_t *j);
int tk_load_pretokenizer(tokenizer *t, json_t *j);
int tk_load_decoder(tokenizer *t, json_t *j);
int tk_load_postprocessor(tokenizer *t, json_t *j);

/* tokenizer_norm.c */
/* Normalize s into out (tmp: a second buffer); sc lends the regex matches. */
int tk_normalize(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, ds_buf *out, ds_buf *tmp);
void tk_norm_free(tk_norm *n);

/* tokenizer_pretok.c: split (and transform) s into pieces. */
int tk_pretokenize(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, tk_pieces **out);
void tk_pretok_free(tk_pretok *p);
/* The GPT-2 byte-to-character map: the character standing for byte b, as
 * UTF-8 (s[0..len)), and the inverse (the byte a code point stands for, -1). */
typedef struct {
    uint8_t len;
    char s[2];
} tk_bchar;
const tk_bchar *tk_byte_chars(void);
int tk_char_byte(uint32_t cp);

/* tokenizer_bpe.c */
int tk_bpe_encode(const tokenizer *t, tk_scratch *sc, const char *s, size_t n, tok_ids *out);
void tk_bpe_prepare(tk_bpe *m);   /* fill byte_id/small_id after the vocab is loaded */
void tk_bpe_free(tk_bpe *m);
/* The token string of a vocab id (NULL if none). */
const char *tk_bpe_token(const tk_bpe *m, int32_t id, size_t *len);

/* tokenizer_added.c */
int tk_trie_add(tk_trie *tr, const char *s, size_t n, int32_t token);
void tk_trie_free(tk_trie *tr);
/* Split s at added tokens of `trie`: calls emit(ctx, start, len, token) for
 * each stretch of plain text (token -1) and each added token, in order. */
typedef int (*tk_emit_fn)(void *ctx, const char *s, size_t n, int32_t token);
int tk_split_added(const tokenizer *t, const tk_trie *trie, const char *s, size_t n, tk_emit_fn emit, void *ctx);
int tk_added_find(const tokenizer *t, const char *s, size_t n);   /* index into added, -1 */

/* tokenizer_decode.c */
void tk_dec_free(tk_dec *d);

/* Unicode helpers (utf8proc). */
bool tk_is_whitespace(uint32_t cp);   /* White_Space, as Rust's char::is_whitespace */
bool tk_is_numeric(uint32_t cp);      /* Nd, Nl, No, as Rust's char::is_numeric */

#endif
