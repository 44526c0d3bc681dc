/* data/clean/clean.h - data cleaning before training: exact and near
 * duplicates, length, repetition and character-set filters, PII scrubbing,
 * contamination with evaluation sets, and a language-model quality cut.
 *
 * Records are read with data/jsonl.h (JSONL, JSON arrays, .zst) and their
 * text taken field by field as training reads it (dataset_record_text in
 * data/dataset.h). The rules run in this order, each on the records the
 * previous ones kept:
 *
 *   malformed -> pii (drop) -> empty -> length -> repetition -> charset
 *   -> contamination (drop) -> exact duplicate -> near duplicate -> quality
 *
 * Memory is bounded by the number of records, not their size: the first
 * pass keeps a few fingerprints per record (about 40 bytes, plus the
 * near-duplicate index), never the texts; a second pass (a third with a
 * quality scorer) reads the inputs again to write the kept records.
 *
 * The options live in one clean_config, read from clean.yaml (or a recipe's
 * `clean:` section) through option tables (core/options.h), one table per
 * section: `dedup`, `length`, ... (clean_config_sections()).
 */
#ifndef DS_DATA_CLEAN_H
#define DS_DATA_CLEAN_H

#include "core/options.h"
#include "core/xlist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <yaml.h>

/* ---- configuration ---- */

/* The PII categories a config acts on, X(name, CLEAN_PII_ constant). */
#define CLEAN_PII_CATEGORIES(X, SEP)                                                                     \
    X(email, CLEAN_PII_EMAIL) SEP X(phone, CLEAN_PII_PHONE) SEP X(ip_address, CLEAN_PII_IP) SEP          \
    X(credit_card, CLEAN_PII_CARD) SEP X(national_id, CLEAN_PII_NATIONAL_ID) SEP                      \
    X(url_credentials, CLEAN_PII_URL_CREDENTIALS)
#define CLEAN_PII_ID(name, id) id
typedef enum { CLEAN_PII_CATEGORIES(CLEAN_PII_ID, DS_COMMA), CLEAN_PII_NCAT } clean_pii_category;

typedef struct clean_config {
    /* input: */
    char *type;                 /* a dataset type, or NULL: told per file from its first record */
    bool skip_bad_lines;        /* a malformed line is dropped and counted instead of an error */
    char *text;                 /* "reply": the text that counts per type; "all": every field */
    /* dedup: */
    bool exact;                 /* drop records whose normalised text was seen */
    char *near;                 /* "simhash", "minhash" or "off" */
    double similarity;          /* simhash: share of equal fingerprint bits; minhash: Jaccard */
    int64_t shingle;            /* words per shingle */
    int64_t minhash_hashes;     /* MinHash signature length */
    /* length (-1: the type's default; 0: no limit): */
    int64_t min_words, max_words, min_chars, max_chars, min_tokens, max_tokens;
    /* repetition (Gopher's rules; 1 = off): */
    int64_t repetition_min_words;
    double max_dup_line_share, max_dup_line_char_share, max_top_ngram_share, max_dup_ngram_share;
    /* charset: */
    char *script;               /* "any", "latin", "cyrillic", ... */
    double min_script_share, min_alpha_word_share, max_bad_char_share;
    /* pii: "off", "mask" or "drop" per category */
    char *pii[CLEAN_PII_NCAT];
    /* contamination: */
    int64_t ngram;              /* words per n-gram (13) */
    char *contamination;        /* "warn", "drop" or "off" */
    opt_strings eval;           /* evaluation files (besides --eval) */
    int64_t examples;           /* contaminated items shown in the report */
    /* quality: */
    double keep_fraction;       /* keep the best fraction by the scorer; 0 = off */
    char *quality_model;        /* the scoring model's folder; NULL = the recipe's base model (ds-ft clean: --model) */
} clean_config;

/* One section of the config: its name and option table. */
typedef struct {
    const char *name;           /* "dedup" */
    const opt_key *keys;        /* offsets into clean_config */
    const char *help;
} clean_section;

/* The sections, ending with {NULL}. A recipe's `clean:` mapping holds the
 * same sections; its reader can fill a clean_config through these tables
 * like any other (then call clean_config_check). */
const clean_section *clean_config_sections(void);

/* clean_config_defaults() : every key at its default. @return DS_OK, or
 * DS_ENOMEM when out of memory. Free with clean_config_free(). */
int clean_config_defaults(clean_config *cfg);
void clean_config_free(clean_config *cfg);

/* clean_config_set() : one key from its YAML scalar text ("dedup.similarity",
 * "0.95"); `src` and `line` locate it in messages (line 0: none). A list key
 * (contamination.eval) gets the value appended. @return DS_OK; DS_ECONFIG
 * "src:line: clean.key: ..." for an unknown key (named) or a bad value. */
int clean_config_set(clean_config *cfg, const char *key, const char *value, const char *src, int line);

/* clean_config_from_yaml_node() : fill cfg from a mapping of sections in a
 * libyaml document (the root of clean.yaml, or a recipe's `clean:` value),
 * over what cfg holds (call clean_config_defaults first). Unknown sections
 * and keys, duplicate keys, and values of the wrong kind are DS_ECONFIG
 * "src:line: clean.section.key: ...". @return DS_OK or DS_ECONFIG. */
int clean_config_from_yaml_node(clean_config *cfg, yaml_document_t *doc, yaml_node_t *map, const char *src);

/* clean_config_load() : defaults, then the YAML file at path.
 * @return DS_OK, DS_ENOINPUT, DS_EIO or DS_ECONFIG (file:line: key). */
int clean_config_load(const char *path, clean_config *cfg);

/* clean_config_check() : relations between keys (min <= max, ...).
 * @return DS_OK or DS_ECONFIG naming the keys. */
int clean_config_check(const clean_config *cfg);

/* clean_config_print_keys() : every key with its default and help, for --help. */
void clean_config_print_keys(FILE *f);

/* ---- quality scorer ---- */

/* A language model's judgement of texts: the mean negative log-likelihood
 * per token of each (lower is better), `n` texts at a time (at most
 * `batch`), so that a GPU sees full batches. The engine-backed scorer lives
 * with the engine (finetune/run/run.h: text_scorer); the cleaner only calls
 * this. */
typedef struct {
    int (*score)(void *ctx, int n, const char *const *texts, const size_t *lens, double *nll);   /* a DS_ status */
    void *ctx;
    const char *name;           /* for the report */
    int batch;                  /* texts per call; 0 = 1 */
} clean_scorer;

/* ---- a run ---- */

struct tokenizer;
typedef struct clean_report clean_report;

typedef struct {
    const char *const *inputs;  /* data files, in order; record numbers count across them from 1 */
    int ninputs;
    const char *const *evals;   /* evaluation files for the contamination check (with cfg->eval) */
    int nevals;
    const char *out;            /* the kept records as JSONL (.zst: compressed); NULL = report only */
    bool force;                 /* replace an existing `out` */
    const struct tokenizer *tok;         /* for token lengths (NULL: token limits must be off) */
    const clean_scorer *scorer;          /* for keep_fraction (NULL: keep_fraction must be off) */
} clean_job;

/* clean_run() : apply cfg to the job's inputs and write the kept records to
 * job->out atomically. *report (free with clean_report_free) is set also
 * when the run fails after reading started, else NULL.
 * @return DS_OK; DS_EEXISTS when out exists and !force; DS_EDATA for a
 * malformed record (file:line) unless skip_bad_lines; DS_ENOINPUT, DS_EIO,
 * DS_ECONFIG (a rule the job cannot run: token limits without a tokenizer,
 * keep_fraction without a scorer). */
int clean_run(const clean_config *cfg, const clean_job *job, clean_report **report);

/* clean_job_key() : a SHA-256 (hex) that changes whenever the run's result
 * may: every config key, the bytes of the inputs and eval files, the
 * tokenizer, and `extra` (what the caller adds: the scorer's model; may be
 * NULL). For caches of cleaned data (clean_key.c).
 * @return DS_OK, or DS_ENOINPUT / DS_EIO naming a file. */
int clean_job_key(const clean_config *cfg, const clean_job *job, const char *extra, char key[65]);

/* clean_report_json() : the report as a JSON document (malloc'd, indented).
 * NULL when out of memory (message set, status DS_ENOMEM). */
char *clean_report_json(const clean_report *r);
/* clean_report_summary() : a few lines for people: records in and out, what each rule dropped. */
void clean_report_summary(const clean_report *r, FILE *f);
void clean_report_free(clean_report *r);

#endif
