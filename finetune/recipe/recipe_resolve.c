/* finetune/recipe/recipe_resolve.c - what a run reads, found before it starts:
 * base_model and tokenizer as folders (a Hugging Face model id is looked up in
 * the local Hub cache, data/hub/hub.h), and every dataset file present. Each
 * failure names the recipe key that pointed at the missing input. */
#include "recipe_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/hub/hub.h"

#include <stdlib.h>
#include <string.h>

static void say_found(FILE *notices, const char *key, const char *name, const char *dir, const hub_found *f)
{
    if (notices && f->from_cache)
        fprintf(notices, "%s: %s -> %s (Hugging Face cache, revision %s, commit %.12s)\n", key, name, dir,
                f->revision, f->commit);
}

static int check_datasets(const recipe *r, const char *section, const recipe_dataset *d, int n)
{
    for (int i = 0; i < n; i++) {
        char where[512];
        if (d[i].line > 0) snprintf(where, sizeof where, "%s:%d", r->file, d[i].line);
        else snprintf(where, sizeof where, "%s", r->file);
        if (ds_is_dir(d[i].path))
            return ds_fail(DS_ENOINPUT, "%s: %s.datasets[%d].path: %s is a folder; give the data file (JSONL, JSON or .zst)",
                           where, section, i, d[i].path);
        if (!ds_exists(d[i].path))
            return ds_fail(DS_ENOINPUT, "%s: %s.datasets[%d].path: %s: no such file", where, section, i, d[i].path);
    }
    return DS_OK;
}

int recipe_resolve_inputs(recipe *r, FILE *notices)
{
    if (r->base_model_name) return DS_OK;   /* resolved already */
    hub_found f;
    char *model = NULL, *tok = NULL;
    int rc = hub_resolve(r->base_model, "base_model", HUB_MODEL, &model, &f);
    if (!rc) say_found(notices, "base_model", r->base_model, model, &f);
    bool same = !strcmp(r->tokenizer, r->base_model);
    if (!rc) {
        if (same) tok = ds_strdup(model);
        else if (!(rc = hub_resolve(r->tokenizer, "tokenizer", HUB_TOKENIZER, &tok, &f)))
            say_found(notices, "tokenizer", r->tokenizer, tok, &f);
        if (!rc && !tok) rc = DS_ENOMEM;
    }
    if (!rc) rc = check_datasets(r, "data", r->data.datasets, r->data.n_datasets);
    if (!rc) rc = check_datasets(r, "eval", r->eval.datasets, r->eval.n_datasets);
    if (rc) {
        free(model);
        free(tok);
        if (rc == DS_ENOINPUT && strncmp(ds_errmsg(), r->file, strlen(r->file))) ds_fail_context(rc, "%s: ", r->file);
        return rc;
    }
    r->base_model_name = r->base_model;   /* as written: the adapter's base_model_name_or_path */
    r->base_model = model;
    free(r->tokenizer);
    r->tokenizer = tok;
    r->plan.data.template_dir = r->tokenizer;
    return DS_OK;
}
