/* data/clean/clean_internal.h - the building blocks the cleaner's files
 * share, and that the tests and the fuzz target call one by one: words and
 * fingerprints (clean_text.c), the near-duplicate tables (clean_lsh.c), the
 * filters (clean_filters.c), the PII scanner (clean_pii.c), the
 * contamination index (clean_contam.c), the quality cut (clean_quality.c),
 * and the report (clean_report.c).
 */
#ifndef DS_DATA_CLEAN_INTERNAL_H
#define DS_DATA_CLEAN_INTERNAL_H

#include "clean.h"
#include "data/tokenizer/tokenizer.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- a hash map: 64-bit key -> the first 32-bit value put under it ---- */

typedef struct {
    uint64_t *keys;            /* key | 1; 0 = empty slot */
    uint32_t *vals;
    size_t mask, used;
} clean_map;

/* Put val under key unless the key is there: *first = the value it has
 * (val when new). @return DS_OK or DS_ENOMEM (memory). */
int clean_map_put(clean_map *m, uint64_t key, uint32_t val, uint32_t *first);
bool clean_map_get(const clean_map *m, uint64_t key, uint32_t *val);
void clean_map_free(clean_map *m);

/* ---- words ---- */

/* The words of a text: maximal runs of letters, digits and combining marks
 * (each Han, Hiragana or Katakana character is a word of its own), each
 * with the hash of its lower-cased form and its byte span. Character counts
 * for the charset filter are gathered on the way. */
typedef enum { SCRIPT_OTHER, SCRIPT_LATIN, SCRIPT_GREEK, SCRIPT_CYRILLIC, SCRIPT_ARMENIAN, SCRIPT_HEBREW,
               SCRIPT_ARABIC, SCRIPT_DEVANAGARI, SCRIPT_THAI, SCRIPT_HANGUL, SCRIPT_CJK, SCRIPT_COUNT } clean_script;
/* "any|latin|greek|..." in clean_script order (any = SCRIPT_OTHER: no script filter). */
#define CLEAN_SCRIPT_CHOICES "any|latin|greek|cyrillic|armenian|hebrew|arabic|devanagari|thai|hangul|cjk"

typedef struct {
    uint64_t *hash;            /* (n) hash of the lower-cased word */
    uint32_t *start, *len;     /* (n) byte span in the text */
    size_t n, cap;
    /* characters seen (code points), letters per script, words with a letter,
     * and bad characters (U+FFFD, control characters other than tab and newline) */
    size_t chars, letters[SCRIPT_COUNT], alpha_words, bad_chars;
} clean_words;

/* Scan text (valid UTF-8 from JSON; stray bytes count as bad characters)
 * into w, replacing what it held. @return DS_OK or DS_ENOMEM (memory). */
int clean_words_scan(clean_words *w, const char *text, size_t len);
void clean_words_free(clean_words *w);

/* The hash of the word sequence (the normalised text: lower case, words
 * separated by one space, punctuation gone); 0 only for no words. */
uint64_t clean_exact_hash(const clean_words *w);
/* The hash of words [i, i + k): what shingles and n-grams are keyed by. */
uint64_t clean_ngram_hash(const clean_words *w, size_t i, size_t k);

/* 64-bit SimHash over the word shingles of `shingle` words (a text shorter
 * than that is one shingle); 0 for no words. */
uint64_t clean_simhash(const clean_words *w, int shingle);
/* The largest Hamming distance that counts as near at `similarity`:
 * floor((1 - similarity) * 64), e.g. 0.9 -> 6. */
int clean_simhash_max_distance(double similarity);
/* MinHash signature: nhash 16-bit minima over the shingles (b-bit MinHash);
 * all 0xffff for no words. */
void clean_minhash(const clean_words *w, int shingle, int nhash, uint16_t *sig);

/* ---- near duplicates (clean_lsh.c) ---- */

/* Records 0..n-1 with fingerprints; `alive` (may be NULL = all) marks the
 * ones that take part. On return, dup_of[i] = the earliest record j < i
 * within the threshold, or UINT32_MAX when none (then i is kept).
 * SimHash: within max_distance bits. MinHash (sig: n * nhash values): the
 * share of equal values >= similarity. Banded LSH finds the candidates; every
 * candidate is checked exactly, and no pair within the threshold is missed
 * (SimHash; MinHash's bands miss a pair with the usual small probability).
 * @return DS_OK or DS_ENOMEM (memory). */
int clean_near_simhash(const uint64_t *fp, const bool *alive, size_t n, int max_distance, uint32_t *dup_of);
int clean_near_minhash(const uint16_t *sig, int nhash, const bool *alive, size_t n, double similarity,
                       uint32_t *dup_of);
/* The (blocks, blocks per table) the SimHash tables use for n records. */
void clean_simhash_tables(int max_distance, size_t n, int *blocks, int *per_table);
/* The (bands, rows) MinHash LSH uses for nhash values at `similarity`. */
void clean_minhash_bands(int nhash, double similarity, int *bands, int *rows);

/* ---- filters (clean_filters.c) ---- */

/* Gopher-style repetition of one text: share of duplicate lines (by count
 * and by characters), of characters in the most frequent 2/3/4-gram, and
 * of characters in duplicated 5..10-grams. */
typedef struct {
    double dup_line, dup_line_chars;
    double top_ngram[3];       /* n = 2, 3, 4 */
    double dup_ngram[6];       /* n = 5..10 */
} clean_repetition;
/* Work space reused across records. */
typedef struct {
    uint64_t *keys;
    uint32_t *counts;
    uint8_t *covered;
    uint64_t *grams;           /* n-gram hashes at each word, grown one word per n */
    size_t *prefix;            /* characters of the words before each word */
    size_t cap, cover_cap;
} clean_scratch;
/* Of the text base[start, start + len) whose words are w's words [w0, w1). */
int clean_repetition_measure(const char *base, size_t start, size_t len, const clean_words *w, size_t w0, size_t w1,
                             clean_scratch *s, clean_repetition *out);
void clean_scratch_free(clean_scratch *s);
/* The name of the first repetition rule `r` breaks under cfg ("dup_line_share", ...), or NULL. */
const char *clean_repetition_broken(const clean_repetition *r, const clean_config *cfg);
/* The name of the first charset rule the words break, or NULL. */
const char *clean_charset_broken(const clean_words *w, const clean_config *cfg);

/* ---- PII (clean_pii.c) ---- */

#define CLEAN_PII_TYPES(X, SEP)                                                                                \
    X(email, PII_EMAIL, CLEAN_PII_EMAIL, "<EMAIL>") SEP X(phone, PII_PHONE, CLEAN_PII_PHONE, "<PHONE>") SEP     \
    X(ipv4, PII_IPV4, CLEAN_PII_IP, "<IP_ADDRESS>") SEP X(ipv6, PII_IPV6, CLEAN_PII_IP, "<IP_ADDRESS>") SEP     \
    X(credit_card, PII_CARD, CLEAN_PII_CARD, "<CREDIT_CARD>") SEP                                              \
    X(us_ssn, PII_US_SSN, CLEAN_PII_NATIONAL_ID, "<US_SSN>") SEP                                               \
    X(uk_nino, PII_UK_NINO, CLEAN_PII_NATIONAL_ID, "<UK_NINO>") SEP                                            \
    X(uk_nhs_number, PII_UK_NHS, CLEAN_PII_NATIONAL_ID, "<NHS_NUMBER>") SEP                                    \
    X(us_mbi, PII_US_MBI, CLEAN_PII_NATIONAL_ID, "<US_MBI>") SEP                                               \
    X(url_credentials, PII_URL_CREDENTIALS, CLEAN_PII_URL_CREDENTIALS, "<CREDENTIALS>")
#define CLEAN_PII_TYPE_ID(name, id, cat, ph) id
typedef enum { CLEAN_PII_TYPES(CLEAN_PII_TYPE_ID, DS_COMMA), PII_NTYPES } clean_pii_type;

const char *clean_pii_type_name(clean_pii_type t);      /* "email" */
const char *clean_pii_placeholder(clean_pii_type t);    /* "<EMAIL>" */
clean_pii_category clean_pii_category_of(clean_pii_type t);

typedef struct {
    size_t start, end;         /* bytes [start, end) of the text */
    clean_pii_type type;
} clean_pii_match;

typedef struct {
    clean_pii_match *m;
    size_t n, cap;
} clean_pii_matches;

/* Find the PII in text (not overlapping, in order), replacing what `out`
 * held. @return DS_OK or DS_ENOMEM (memory). */
int clean_pii_find(const char *text, size_t len, clean_pii_matches *out);
void clean_pii_matches_free(clean_pii_matches *m);
/* The text with each match whose category is to be masked (mask[cat])
 * replaced by its placeholder: malloc'd, *out_len its length. */
char *clean_pii_mask(const char *text, size_t len, const clean_pii_matches *m, const bool mask[CLEAN_PII_NCAT],
                     size_t *out_len);

/* ---- contamination (clean_contam.c) ---- */

typedef struct clean_contam clean_contam;
/* The n-grams of every record of the eval files (all their fields; the type
 * of each file told from its first record). A record shorter than n words
 * is matched by its whole word sequence when it has at least 3 words.
 * @return DS_OK, DS_ENOINPUT, DS_EDATA (file:line), DS_ENOMEM. */
int clean_contam_load(const char *const *files, int nfiles, int n, bool skip_bad_lines, clean_contam **out);
void clean_contam_free(clean_contam *c);
/* The first eval item the words share an n-gram with: *item its index, *at
 * the first word of the shared span, *span its word count. @return whether
 * found. */
bool clean_contam_find(const clean_contam *c, const clean_words *w, uint32_t *item, size_t *at, size_t *span);
size_t clean_contam_items(const clean_contam *c);
/* "file:line" of an eval item (valid while c lives). */
const char *clean_contam_where(const clean_contam *c, uint32_t item);

/* ---- record text (clean_text.c) ---- */

/* A record's text: the pieces (one per field) joined by newlines, and
 * which of them count under cfg->text ("reply" or "all"). */
typedef struct {
    char *all;         size_t all_len;        /* every field (left empty when no_all) */
    bool no_all;                               /* set by the caller: only the counted text is wanted */
    char *counted;     size_t counted_len;    /* the fields the rules read */
    size_t cap_all, cap_counted;
    /* the counted pieces: spans of `counted`, each checked on its own by the repetition rules */
    size_t *piece_start, *piece_len;
    int npieces;
    size_t cap_pieces;
} clean_text;

/* Tell a record's dataset type from its fields (the first record of a file):
 * NULL when none fits. */
const char *clean_guess_type(const json_t *obj);
/* The text of one record (dataset_record_text), replacing what t held.
 * @return DS_OK, DS_EDATA (file:line: field), DS_ENOMEM. */
int clean_text_of(const char *type, bool all, const json_t *obj, const char *file, int line, clean_text *t);
void clean_text_free(clean_text *t);

/* The default word limits of a type ("text": 10..256, ...). */
void clean_type_word_limits(const char *type, int64_t *min_words, int64_t *max_words);

/* ---- a run's records and report ---- */

/* The rules in the order they run; a record's fate is the first it breaks. */
#define CLEAN_RULES(X, SEP)                                                                                 \
    X(kept) SEP X(malformed) SEP X(pii) SEP X(empty) SEP X(length) SEP X(repetition) SEP X(charset) SEP      \
    X(contamination) SEP X(exact_duplicate) SEP X(near_duplicate) SEP X(quality)
#define CLEAN_RULE_ID(name) RULE_##name
typedef enum { CLEAN_RULES(CLEAN_RULE_ID, DS_COMMA), RULE_COUNT } clean_rule;
const char *clean_rule_name(clean_rule r);

#define CLEAN_NONE UINT32_MAX
#define CLEAN_HIST_BINS 18     /* word counts: 0, then [2^(b-1), 2^b) up to 2^16 and more */
#define CLEAN_SCORE_BINS 21    /* scores (mean NLL): [0.5 b, 0.5 (b + 1)), the last open */

/* What the first pass keeps of a record: fingerprints, never text. */
typedef struct {
    uint64_t exact, simhash;
    uint32_t words;            /* counted words */
    uint32_t dup_of;           /* the earlier record it duplicates (CLEAN_NONE) */
    int32_t line;
    uint16_t file;
    uint8_t fate;              /* clean_rule */
    bool pii;                  /* PII to mask was found: the later passes scrub it again */
    float score;               /* quality: mean NLL (NaN: not scored) */
} clean_rec;

typedef struct {
    uint32_t record, item;     /* training record, eval item */
    char *ngram;               /* the shared words, as they read in the record */
} clean_contam_example;

struct clean_report {
    char **inputs;  int ninputs;
    char **types;                      /* (ninputs) the type each was read as */
    uint32_t *first_record;            /* (ninputs + 1) record numbers start at 0 inside */
    clean_rec *rec;  size_t n, cap;
    uint16_t *sig;                     /* MinHash signatures (n * minhash_hashes), NULL with simhash */
    size_t sig_cap;
    const clean_config *cfg;           /* the run's (valid during clean_run only) */
    char *near, *text_mode, *out;
    double similarity;
    int max_distance, blocks, per_table, bands, rows, nhash;
    size_t dropped[RULE_COUNT];
    struct { const char *rule, *why; size_t n; } why[32];   /* dropped per rule and reason */
    int nwhy;
    size_t pii_found[PII_NTYPES], pii_records[PII_NTYPES];
    char *pii_action[CLEAN_PII_NCAT];
    size_t hist[CLEAN_HIST_BINS];
    /* contamination */
    char *contam_action;  int ngram;
    char **evals;  int nevals;
    size_t eval_items, contaminated;
    uint8_t *item_hit;                 /* (eval_items) */
    clean_contam *contam;
    clean_contam_example *examples;  int nexamples, max_examples;
    /* quality */
    double keep_fraction, score_cut;
    char *scorer;
    size_t scored, score_hist[CLEAN_SCORE_BINS];
    size_t records_out;
};

/* Count a record dropped by `rule` for the reason `why` (a static string; NULL = none). */
void clean_report_drop(clean_report *r, uint32_t record, clean_rule rule, const char *why);
/* "file:line" of a record into buf. */
const char *clean_report_where(const clean_report *r, uint32_t record, char *buf, size_t n);

/* ---- one run (clean_run.c, clean_record.c) ---- */

typedef struct {
    const clean_config *cfg;
    const clean_job *job;
    clean_report *rep;
    bool mask[CLEAN_PII_NCAT], drop[CLEAN_PII_NCAT], any_pii;
    bool seen[PII_NTYPES], changed;    /* of the record being scrubbed */
    bool all_text, simhash, minhash;
    int64_t min_words, max_words;      /* of the current file's type */
    clean_text text;
    clean_words words, all_words;
    clean_scratch scratch;
    clean_pii_matches pii;
    tok_ids ids;                       /* token lengths */
    clean_map exact;
    /* the records waiting for the scorer (pass 2): their counted texts */
    char **q_text;
    size_t *q_len, *q_cap;
    uint32_t *q_id;
    double *q_nll;
    int q_n, q_max;
} clean_state;

/* Mask the PII of every string in v (as cfg says), counting it into the
 * report when `count`; *drop is set when a category to drop was found. */
int clean_scrub(clean_state *s, json_t *v, bool count, bool *drop);
/* The first pass over one well-formed record: its rules up to exact
 * duplicates, and its fingerprints, into s->rep->rec[id]. DS_EDATA (a
 * record its type cannot read) is returned for the caller to skip or stop. */
int clean_first_pass(clean_state *s, json_t *obj, const char *type, const char *file, int line, uint32_t id);

/* Keep the best `fraction` of the records whose fate is kept by score (lower
 * is better; ties by record order): the others get RULE_quality. Sets score_cut. */
int clean_quality_cut(clean_report *r, double fraction);

#endif
