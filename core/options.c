/* core/options.c - lookups in option tables and freeing what they own.
 * Reading values into tables is the recipe loader's (finetune/recipe/recipe_keys.c). */
#include "options.h"

#include <stdlib.h>
#include <string.h>

bool opt_in_choices(const char *choices, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, s, n)) return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

const opt_key *opt_find(const opt_key *keys, const char *name)
{
    for (const opt_key *k = keys; k && k->name; k++)
        if (!strcmp(k->name, name)) return k;
    return NULL;
}

void opt_free(const opt_key *keys, void *cfg)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        char *field = (char *)cfg + k->offset;
        if (k->type == OPT_STRING || k->type == OPT_CHOICE) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (k->type == OPT_STRING_LIST) {
            opt_strings *l = (opt_strings *)field;
            for (int i = 0; i < l->n; i++) free(l->items[i]);
            free(l->items);
            l->items = NULL;
            l->n = 0;
        } else if (k->type == OPT_INT_LIST) {
            opt_ints *l = (opt_ints *)field;
            free(l->items);
            l->items = NULL;
            l->n = 0;
        }
    }
}
