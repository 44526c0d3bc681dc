/* finetune/recipe/recipe_inputs.c - what a run will read, checked before it
 * writes anything: every path the recipe names exists and is of the right
 * kind, each failure naming the recipe key; and which numeric keys a recipe
 * left at their defaults. */
#include "recipe_internal.h"

#include "core/files.h"
#include "core/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* DS_ENOINPUT "FILE: KEY: PATH: no such WHAT" unless PATH is a folder
 * (want_dir) or a readable file. */
static int check_path(const recipe *r, const char *key, const char *path, bool want_dir, const char *what)
{
    struct stat st;
    bool ok = stat(path, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
    if (ok && !want_dir && access(path, R_OK) != 0) ok = false;
    if (ok) return DS_OK;
    return ds_fail(DS_ENOINPUT, "%s: %s: %s: no such %s", r->file, key, path, what);
}

static int check_datasets(const recipe *r, const char *section, const recipe_dataset *d, int n)
{
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s.datasets[%d].path", section, i);
        int rc = check_path(r, key, d[i].path, false, "data file");
        if (rc) return rc;
    }
    return DS_OK;
}

int recipe_check_inputs(const recipe *r)
{
    int rc = check_path(r, "base_model", r->base_model, true, "model folder");
    if (!rc && strcmp(r->tokenizer, r->base_model)) rc = check_path(r, "tokenizer", r->tokenizer, true, "tokenizer folder");
    if (!rc && r->adapter.init_from) rc = check_path(r, "adapter.init_from", r->adapter.init_from, true, "adapter folder");
    if (!rc) rc = check_datasets(r, "data", r->data.datasets, r->data.n_datasets);
    if (!rc) rc = check_datasets(r, "eval", r->eval.datasets, r->eval.n_datasets);
    return rc;
}

bool recipe_at_default(const recipe *r, const char *section, const char *key)
{
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++) {
        if (strcmp(s->name, section) || !s->keys) continue;
        const opt_key *k = opt_find(s->keys, key);
        if (!k || !k->def) return false;
        const char *field = (const char *)r + k->offset;
        double def = strtod(k->def, NULL);
        if (k->type == OPT_INT) return *(const int64_t *)field == (int64_t)def;
        if (k->type == OPT_FLOAT) return *(const double *)field == def;
        if (k->type == OPT_BOOL) return *(const bool *)field == !strcmp(k->def, "true");
        return false;
    }
    return false;
}
