/* core/options.h - declarative option tables.
 *
 * A table of opt_key describes the keys of a config struct: name, type,
 * where it lives (offsetof), its default, its range and a help line. The
 * recipe loader (finetune/recipe/recipe.c) reads YAML through these tables, checks
 * types and ranges, fills defaults, suggests a key for a typo, and prints
 * `ds-ft --help`'s key list from them. Loss modules declare their own tables
 * for their section of the recipe, so the loader knows no loss by name.
 */
#ifndef DS_CORE_OPTIONS_H
#define DS_CORE_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    OPT_BOOL,        /* bool */
    OPT_INT,         /* int64_t; with OPT_NULLABLE, null is stored as -1 */
    OPT_FLOAT,       /* double */
    OPT_STRING,      /* char * (malloc'd; NULL when absent and no default) */
    OPT_CHOICE,      /* char * restricted to opt_key.choices ("a|b|c") */
    OPT_STRING_LIST, /* opt_strings */
    OPT_INT_LIST,    /* opt_ints */
} opt_type;

enum {
    OPT_NULLABLE = 1,
    OPT_REQUIRED = 2,
    OPT_MIN_OPEN = 4,   /* the range excludes min: x > min */
    OPT_MAX_OPEN = 8,   /* the range excludes max: x < max */
};

typedef struct {
    const char *name;     /* key within its section: "learning_rate" */
    opt_type type;
    size_t offset;        /* offsetof(struct, field) */
    const char *def;      /* default as YAML text ("2.0e-4", "true", "null"); NULL = none */
    double min, max;      /* range for OPT_INT / OPT_FLOAT, inclusive unless OPT_MIN_OPEN / OPT_MAX_OPEN
                             (ignored when min > max) */
    const char *choices;  /* OPT_CHOICE: "cosine|linear|constant" */
    unsigned flags;       /* OPT_NULLABLE, OPT_REQUIRED, OPT_MIN_OPEN, OPT_MAX_OPEN */
    const char *help;     /* one line for --help */
} opt_key;

typedef struct {
    char **items;
    int n;
} opt_strings;

typedef struct {
    int64_t *items;
    int n;
} opt_ints;

#define OPT_END {NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL}

/* Whether s is one of the choices "a|b|c" (whole names). */
bool opt_in_choices(const char *choices, const char *s);
/* The key called `name`, or NULL. */
const opt_key *opt_find(const opt_key *keys, const char *name);
/* Free the strings and lists a table's keys own in cfg. */
void opt_free(const opt_key *keys, void *cfg);
#endif
