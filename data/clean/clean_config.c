/* data/clean/clean_config.c - the cleaner's options: one table per section
 * (core/options.h), their defaults, one key set from YAML text, and
 * clean.yaml read with libyaml.
 *
 * Scalars are read as the recipe reads them (YAML 1.2 core types; yes/no/
 * on/off also taken for booleans). Every key has a default, so an empty
 * clean.yaml is the default cleaning.
 */
#include "clean_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/dataset/dataset.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define F(field) offsetof(clean_config, field)
#define INT_MAX_KEY 1e12

static const opt_key INPUT_KEYS[] = {
    {"type", OPT_CHOICE, F(type), "null", 0, 0, DATASET_TYPE_NAMES, OPT_NULLABLE,
     "dataset type of the inputs; null = told per file from its first record"},
    {"skip_bad_lines", OPT_BOOL, F(skip_bad_lines), "false", 0, 0, NULL, 0,
     "drop and count malformed lines instead of stopping at the first (file:line)"},
    {"text", OPT_CHOICE, F(text), "reply", 0, 0, "reply|all", 0,
     "text the rules read: reply = what training learns (output, assistant turns, chosen and rejected; "
     "mcq: question and choices), all = every field"},
    OPT_END,
};

static const opt_key DEDUP_KEYS[] = {
    {"exact", OPT_BOOL, F(exact), "true", 0, 0, NULL, 0, "drop records whose normalised text came earlier"},
    {"near", OPT_CHOICE, F(near), "simhash", 0, 0, "simhash|minhash|off", 0, "near-duplicate method"},
    {"similarity", OPT_FLOAT, F(similarity), "0.9", 0, 1, NULL, OPT_MIN_OPEN,
     "near when this similar: simhash = share of the 64 bits equal (0.9 = at most 6 differ), minhash = Jaccard"},
    {"shingle", OPT_INT, F(shingle), "3", 1, 32, NULL, 0, "words per shingle"},
    {"minhash_hashes", OPT_INT, F(minhash_hashes), "128", 16, 1024, NULL, 0, "MinHash signature length"},
    OPT_END,
};

static const opt_key LENGTH_KEYS[] = {
    {"min_words", OPT_INT, F(min_words), "null", 0, INT_MAX_KEY, NULL, OPT_NULLABLE,
     "fewest words; null = the type's default (text 10, mcq 5, preference 2, others 1); 0 = none"},
    {"max_words", OPT_INT, F(max_words), "null", 0, INT_MAX_KEY, NULL, OPT_NULLABLE,
     "most words; null = the type's default (messages 1024, preference 512, others 256); 0 = no limit"},
    {"min_chars", OPT_INT, F(min_chars), "0", 0, INT_MAX_KEY, NULL, 0, "fewest characters; 0 = none"},
    {"max_chars", OPT_INT, F(max_chars), "0", 0, INT_MAX_KEY, NULL, 0, "most characters; 0 = no limit"},
    {"min_tokens", OPT_INT, F(min_tokens), "0", 0, INT_MAX_KEY, NULL, 0, "fewest tokens (needs --tokenizer); 0 = none"},
    {"max_tokens", OPT_INT, F(max_tokens), "0", 0, INT_MAX_KEY, NULL, 0,
     "most tokens (needs --tokenizer); 0 = no limit"},
    OPT_END,
};

static const opt_key REPETITION_KEYS[] = {
    {"min_words", OPT_INT, F(repetition_min_words), "50", 0, INT_MAX_KEY, NULL, 0,
     "a piece is checked from this many words (Gopher's documents have 50 or more)"},
    {"max_dup_line_share", OPT_FLOAT, F(max_dup_line_share), "0.3", 0, 1, NULL, 0,
     "lines repeating an earlier line, of all lines; 1 = off"},
    {"max_dup_line_char_share", OPT_FLOAT, F(max_dup_line_char_share), "0.2", 0, 1, NULL, 0,
     "their characters, of all; 1 = off"},
    {"max_top_ngram_share", OPT_FLOAT, F(max_top_ngram_share), "0.2", 0, 1, NULL, 0,
     "characters in the most frequent repeated 2-gram (3-, 4-gram: 0.02, 0.04 less); 1 = off"},
    {"max_dup_ngram_share", OPT_FLOAT, F(max_dup_ngram_share), "0.15", 0, 1, NULL, 0,
     "characters in repeated 5-grams (6..10-grams: 0.01 less per word); 1 = off"},
    OPT_END,
};

static const opt_key CHARSET_KEYS[] = {
    {"script", OPT_CHOICE, F(script), "any", 0, 0, CLEAN_SCRIPT_CHOICES, 0,
     "the script the letters should be in; any = no check"},
    {"min_script_share", OPT_FLOAT, F(min_script_share), "0.8", 0, 1, NULL, 0,
     "share of the letters in that script"},
    {"min_alpha_word_share", OPT_FLOAT, F(min_alpha_word_share), "0.5", 0, 1, NULL, 0,
     "share of words with a letter (lab values and doses are words without one)"},
    {"max_bad_char_share", OPT_FLOAT, F(max_bad_char_share), "0.01", 0, 1, NULL, 0,
     "share of U+FFFD and control characters (mojibake)"},
    OPT_END,
};

#define PII_KEY(name, id)                                                                                   \
    {#name, OPT_CHOICE, F(pii[id]), "mask", 0, 0, "off|mask|drop", 0, "off, mask (typed placeholder) or drop the record"}
static const opt_key PII_KEYS[] = {CLEAN_PII_CATEGORIES(PII_KEY, DS_COMMA), OPT_END};
#undef PII_KEY

static const opt_key CONTAMINATION_KEYS[] = {
    {"ngram", OPT_INT, F(ngram), "13", 1, 63, NULL, 0, "words per n-gram shared with an eval item"},
    {"action", OPT_CHOICE, F(contamination), "warn", 0, 0, "warn|drop|off", 0,
     "warn (count and show examples), drop the training record, or off"},
    {"eval", OPT_STRING_LIST, F(eval), NULL, 0, 0, NULL, 0, "evaluation files (besides --eval)"},
    {"examples", OPT_INT, F(examples), "5", 0, 1000, NULL, 0, "contaminated records shown in the report"},
    OPT_END,
};

static const opt_key QUALITY_KEYS[] = {
    {"keep_fraction", OPT_FLOAT, F(keep_fraction), "0", 0, 1, NULL, 0,
     "keep this best fraction by the language model's score (0.8 as the seeds say); 0 = off"},
    {"model", OPT_STRING, F(quality_model), "null", 0, 0, NULL, OPT_NULLABLE,
     "the scoring model's folder; null = the recipe's base model (ds-ft clean: --model)"},
    OPT_END,
};

static const clean_section SECTIONS[] = {
    {"input", INPUT_KEYS, "what the records are"},
    {"dedup", DEDUP_KEYS, "exact and near duplicates"},
    {"length", LENGTH_KEYS, "length of the counted text"},
    {"repetition", REPETITION_KEYS, "Gopher's repetition rules"},
    {"charset", CHARSET_KEYS, "characters and script"},
    {"pii", PII_KEYS, "personal information"},
    {"contamination", CONTAMINATION_KEYS, "n-grams shared with evaluation sets"},
    {"quality", QUALITY_KEYS, "language-model quality cut"},
    {NULL, NULL, NULL},
};

const clean_section *clean_config_sections(void) { return SECTIONS; }

void clean_config_free(clean_config *cfg)
{
    for (const clean_section *s = SECTIONS; s->name; s++) opt_free(s->keys, cfg);
}

int clean_config_defaults(clean_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (const clean_section *s = SECTIONS; s->name; s++)
        for (const opt_key *k = s->keys; k->name; k++) {
            if (!k->def) continue;
            char key[96];
            snprintf(key, sizeof key, "%s.%s", s->name, k->name);
            int rc = clean_config_set(cfg, key, k->def, "defaults", 0);
            if (rc) return rc;
        }
    return DS_OK;
}

/* ---- one key ---- */

static void where(char *at, size_t n, const char *src, int line);

static int key_fail(const char *src, int line, const char *key, const char *fmt, const char *value)
{
    char at[600];
    where(at, sizeof at, src, line);
    char msg[300];
    snprintf(msg, sizeof msg, fmt, value);
    return ds_fail(DS_ECONFIG, "%s: clean.%s: %s", at, key, msg);
}

static bool is_null(const char *v) { return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL"); }

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    for (int i = 0; i < 9; i++) {
        if (!strcmp(v, yes[i])) return *out = true, true;
        if (!strcmp(v, no[i])) return *out = false, true;
    }
    return false;
}

static bool in_range(const opt_key *k, double x)
{
    if (k->min > k->max) return true;
    bool lo = (k->flags & OPT_MIN_OPEN) ? x > k->min : x >= k->min;
    bool hi = (k->flags & OPT_MAX_OPEN) ? x < k->max : x <= k->max;
    return lo && hi;
}

/* "src:line" or "src". */
static void where(char *at, size_t n, const char *src, int line)
{
    if (line > 0) snprintf(at, n, "%s:%d", src, line);
    else snprintf(at, n, "%s", src);
}

/* The key of "section.key", or DS_ECONFIG naming it and the keys there are. */
static int find_key(const char *dotted, const char *src, int line, const opt_key **key)
{
    char at[600], names[400] = "";
    where(at, sizeof at, src, line);
    const char *dot = strchr(dotted, '.');
    for (const clean_section *s = SECTIONS; dot && s->name; s++)
        if (strlen(s->name) == (size_t)(dot - dotted) && !strncmp(s->name, dotted, (size_t)(dot - dotted))) {
            if ((*key = opt_find(s->keys, dot + 1))) return DS_OK;
            for (const opt_key *k = s->keys; k->name; k++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", k->name);
            return ds_fail(DS_ECONFIG, "%s: clean.%s: unknown key (%s keys: %s)", at, dotted, s->name, names);
        }
    for (const clean_section *s = SECTIONS; s->name; s++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", names[0] ? ", " : "", s->name);
    return ds_fail(DS_ECONFIG, "%s: clean.%s: unknown section (sections: %s)", at, dotted, names);
}

int clean_config_set(clean_config *cfg, const char *key, const char *value, const char *src, int line)
{
    const opt_key *k;
    int rc = find_key(key, src, line, &k);
    if (rc) return rc;
    char *field = (char *)cfg + k->offset;
    char *end;
    switch (k->type) {
    case OPT_BOOL:
        if (!parse_bool(value, (bool *)field)) return key_fail(src, line, key, "expected true or false, got '%s'", value);
        return DS_OK;
    case OPT_INT: {
        if ((k->flags & OPT_NULLABLE) && is_null(value)) {
            *(int64_t *)field = -1;
            return DS_OK;
        }
        errno = 0;
        long long x = strtoll(value, &end, 10);
        if (end == value || *end || errno) return key_fail(src, line, key, "expected a whole number, got '%s'", value);
        if (!in_range(k, (double)x)) return key_fail(src, line, key, "'%s' is out of range", value);
        *(int64_t *)field = x;
        return DS_OK;
    }
    case OPT_FLOAT: {
        errno = 0;
        double x = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(x) || isspace((unsigned char)*value))
            return key_fail(src, line, key, "expected a number, got '%s'", value);
        if (!in_range(k, x)) return key_fail(src, line, key, "'%s' is out of range", value);
        *(double *)field = x;
        return DS_OK;
    }
    case OPT_CHOICE:
    case OPT_STRING: {
        char **s = (char **)field;
        if ((k->flags & OPT_NULLABLE) && is_null(value)) {
            free(*s);
            *s = NULL;
            return DS_OK;
        }
        if (k->type == OPT_CHOICE && !opt_in_choices(k->choices, value)) {
            char fmt[400];
            snprintf(fmt, sizeof fmt, "expected one of %s, got '%%s'", k->choices);
            return key_fail(src, line, key, fmt, value);
        }
        if (!*value) return key_fail(src, line, key, "must not be empty%s", "");
        char *copy = ds_strdup(value);
        if (!copy) return DS_ENOMEM;
        free(*s);
        *s = copy;
        return DS_OK;
    }
    case OPT_STRING_LIST: {
        opt_strings *l = (opt_strings *)field;
        if (!*value) return key_fail(src, line, key, "a file name must not be empty%s", "");
        size_t cap = (size_t)l->n;   /* opt_strings keeps no capacity: room for its n items */
        char *copy = ds_strdup(value);
        if (!copy || ds_grow(&l->items, &cap, (size_t)l->n + 1, sizeof *l->items)) {
            free(copy);
            return DS_ENOMEM;
        }
        l->items[l->n] = copy;
        l->n++;
        return DS_OK;
    }
    default:
        return ds_fail(DS_EINTERNAL, "clean.%s: a key of an unknown kind", key);
    }
}

int clean_config_check(const clean_config *cfg)
{
    if (!strcmp(cfg->near, "simhash") && clean_simhash_max_distance(cfg->similarity) > 12)
        return ds_fail(DS_ECONFIG, "clean.dedup.similarity: %g is below what a 64-bit SimHash tells apart (0.8 at "
                       "least); use dedup.near: minhash for looser matches", cfg->similarity);
    static const struct { const char *name; size_t lo, hi; } pairs[] = {
        {"words", F(min_words), F(max_words)}, {"chars", F(min_chars), F(max_chars)},
        {"tokens", F(min_tokens), F(max_tokens)}};
    for (int i = 0; i < 3; i++) {
        int64_t lo = *(const int64_t *)((const char *)cfg + pairs[i].lo);
        int64_t hi = *(const int64_t *)((const char *)cfg + pairs[i].hi);
        if (lo > 0 && hi > 0 && lo > hi)
            return ds_fail(DS_ECONFIG, "clean.length.min_%s (%lld) is above clean.length.max_%s (%lld)", pairs[i].name,
                           (long long)lo, pairs[i].name, (long long)hi);
    }
    return DS_OK;
}

void clean_config_print_keys(FILE *f)
{
    for (const clean_section *s = SECTIONS; s->name; s++) {
        fprintf(f, "  %s: %s\n", s->name, s->help);
        for (const opt_key *k = s->keys; k->name; k++) {
            char left[64];
            snprintf(left, sizeof left, "%s.%s: %s", s->name, k->name, k->def ? k->def : "[]");
            fprintf(f, "    %-40s %s\n", left, k->help);
        }
    }
}
