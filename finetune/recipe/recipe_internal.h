/* finetune/recipe/recipe_internal.h - what the recipe loader's files share
 * (recipe.c: the tables and the loader; recipe_yaml.c: the YAML tree;
 * recipe_keys.c: typed values; recipe_alias.c: aliases and overrides;
 * recipe_write.c: YAML out and --help): a small YAML document tree that keeps
 * the line of every key and value, and the recipe's option tables.
 *
 * Lines: > 0 is a line of the recipe file, RLINE_CMDLINE marks a value that
 * came from a `key=value` override, RLINE_NONE a default (no position).
 */
#ifndef DS_FINETUNE_RECIPE_INTERNAL_H
#define DS_FINETUNE_RECIPE_INTERNAL_H

#include "recipe.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { RLINE_CMDLINE = 0, RLINE_NONE = -1 };

typedef enum { YN_SCALAR, YN_SEQ, YN_MAP } ynode_kind;

typedef struct ynode ynode;
struct ynode {
    ynode_kind kind;
    int line;
    char *text;        /* YN_SCALAR: the value, NUL-free */
    bool quoted;       /* YN_SCALAR: quoted or tagged !!str: never null */
    int n, cap;        /* YN_SEQ / YN_MAP: entries */
    ynode **kids;      /* (n) values */
    char **keys;       /* (n) YN_MAP: key names */
    int *key_lines;    /* (n) YN_MAP: line of each key */
};

/* Parse one YAML document into a tree; an empty document gives *root = NULL.
 * `src` names the text in messages. With `cmdline` (an override's value)
 * every node carries RLINE_CMDLINE instead of a file line. Aliases (*x) are
 * refused, so a small text never expands into a huge tree. */
int ynode_parse(const char *text, size_t len, const char *src, bool cmdline, ynode **root);
void ynode_free(ynode *n);
/* A new empty node, or a scalar holding a copy of text. NULL: out of memory
 * (message set, status DS_ENOMEM). */
ynode *ynode_new(ynode_kind kind, int line);
ynode *ynode_scalar(const char *text, bool quoted, int line);
int ynode_find(const ynode *map, const char *key);          /* index or -1 */
/* Append value (under key, for a mapping); it is taken in every case, and a
 * NULL value (its making ran out of memory) is that failure.
 * @return DS_OK or DS_ENOMEM (message set). */
int ynode_append(ynode *map_or_seq, const char *key, int key_line, ynode *value);
ynode *ynode_take(ynode *map, int i);                        /* remove entry i, return its value */
bool ynode_is_null(const ynode *n);                         /* plain null, ~, or empty */

/* ---- reading values through option tables (recipe_keys.c) ---- */
typedef struct {
    const char *src;          /* the recipe's path, for messages */
    FILE *notices;            /* alias notices (may be NULL) */
    recipe *r;
} rctx;

/* "recipe.yaml:12", "command line" or "recipe.yaml" (no line). */
void rctx_where(const rctx *c, int line, char *buf, size_t n);
/* DS_ECONFIG with "where: key: problem". */
int rctx_fail(const rctx *c, int line, const char *key, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Notice "where: message" to c->notices. */
void rctx_notice(const rctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Fill the fields of `base` that `keys` describe from the mapping `map`
 * (NULL = empty): check every value, apply defaults, refuse unknown and
 * missing required keys. Keys in `extra` are skipped (the caller reads
 * them). `prefix` is the dotted name of the mapping ("train",
 * "data.datasets[0]", "" for the top level); `line` locates a missing key. */
int recipe_apply_table(rctx *c, const opt_key *keys, void *base, const ynode *map, int line, const char *prefix,
                       const char *const *extra);
/* Free the strings and lists of `base` that `keys` describe. */
/* The "unknown key" error, with a suggestion from the keys of that mapping
 * (`keys`, `extra`) and from every key of the recipe. */
int recipe_unknown_key(const rctx *c, int line, const char *prefix, const char *key, const opt_key *keys,
                       const char *const *extra);
/* "a.b" into buf ("b" when prefix is ""). */
const char *recipe_join(char *buf, size_t n, const char *prefix, const char *key);
/* A value as shown in messages: 'text', null, a list, a mapping. */
const char *recipe_show(const ynode *v, char *buf, size_t n);

/* ---- aliases and overrides (recipe_alias.c) ---- */
/* Move aliased keys of the file (lora_rank, cutoff_len, axolotl's flat
 * names, ...) to their grouped place, with a notice each. */
int recipe_resolve_aliases(rctx *c, ynode *root);
/* Merge one `a.b=value` override into the tree (creating mappings). */
int recipe_apply_override(rctx *c, ynode *root, const char *arg);

/* ---- the option tables (recipe.c) ---- */
typedef struct {
    const char *name;         /* "train"; "" for the top level */
    const opt_key *keys;      /* offsets into recipe */
    const char *const *extra; /* keys handled by code (datasets, ...), NULL-terminated */
} recipe_section;

extern const recipe_section RECIPE_SECTIONS[];   /* terminated by name == NULL */
extern const opt_key RECIPE_DATASET_KEYS[];      /* offsets into data_source */

typedef struct {
    const char *from;         /* what users type */
    const char *to;           /* the grouped key: "adapter.lora_r" */
    const char *origin;       /* who uses that name (for --help) */
} recipe_alias;
extern const recipe_alias RECIPE_ALIASES[];      /* terminated by from == NULL */

/* Help lines of the keys handled by code, for --help. */
const char *recipe_extra_help(const char *section, const char *key);

/* ---- values as text (recipe_write.c) ---- */
/* Shortest text that reads back as exactly `v` ("0.0002", "1.0", "1e-08"). */
void recipe_fmt_double(char *buf, size_t n, double v);
/* Write a string as a YAML scalar: plain where that reads back as the same
 * string, double-quoted with escapes otherwise. */
void recipe_put_string(FILE *f, const char *s);
/* Every key of a table with its value, one per line: indent, or `first` before the first. */
void recipe_put_keys(FILE *f, const opt_key *keys, const void *base, const char *indent, const char *first);

/* The clean: section into r->clean; recipe_clean_put() writes it back,
 * recipe_clean_free() releases it (recipe_clean.c). */
int recipe_read_clean(rctx *c, const ynode *root);
void recipe_clean_put(FILE *f, const recipe *r);
void recipe_clean_print_keys(FILE *f);
void recipe_clean_free(recipe *r);

/* Fill r->plan from the checked recipe (recipe_plan.c). */
int recipe_make_plan(recipe *r);

#endif
