/* finetune/recipe/recipe_clean.c - the recipe's `clean:` section: the
 * cleaning of the training data before tokenization (data/clean/clean.h).
 *
 *   no clean: key   the contamination check only (warn, 13-gram), every
 *                   training set against every eval set
 *   clean: off      no cleaning, no check
 *   clean: {...}    every rule, with the keys of clean.yaml (sections dedup,
 *                   length, repetition, charset, pii, contamination,
 *                   quality, input), read through their option tables like
 *                   any other section: unknown keys are refused by name
 *                   with file:line
 *
 * input.type and input.skip_bad_lines are each dataset's type and
 * data.skip_bad_lines in a recipe, so they are refused here.
 */
#include "recipe_internal.h"

#include "core/mem.h"
#include "core/status.h"
#include "data/clean/clean.h"

#include <stdlib.h>
#include <string.h>

void recipe_clean_free(recipe *r)
{
    if (r->clean.cfg) clean_config_free(r->clean.cfg);
    free(r->clean.cfg);
    r->clean.cfg = NULL;
}

/* `clean: off` (or false): no cleaning at all. */
static bool says_off(const ynode *v)
{
    return v->kind == YN_SCALAR && !v->quoted && (!strcmp(v->text, "off") || !strcmp(v->text, "false"));
}

static int read_sections(rctx *c, const ynode *map, clean_config *cfg)
{
    const clean_section *secs = clean_config_sections();
    const char *names[24];
    int nn = 0;
    for (const clean_section *s = secs; s->name && nn < 23; s++) names[nn++] = s->name;
    names[nn] = NULL;
    char prefix[64], shown[64];
    for (int i = 0; i < map->n; i++) {
        const clean_section *sec = NULL;
        for (const clean_section *s = secs; s->name; s++)
            if (!strcmp(s->name, map->keys[i])) sec = s;
        if (!sec) return recipe_unknown_key(c, map->key_lines[i], "clean", map->keys[i], NULL, names);
        const ynode *v = map->kids[i];
        snprintf(prefix, sizeof prefix, "clean.%s", sec->name);
        if (ynode_is_null(v)) continue;
        if (v->kind != YN_MAP)
            return rctx_fail(c, v->line, prefix, "expected a mapping of %s keys, got %s", sec->name,
                             recipe_show(v, shown, sizeof shown));
        if (!strcmp(sec->name, "input"))
            for (int k = 0; k < v->n; k++)
                if (!strcmp(v->keys[k], "type") || !strcmp(v->keys[k], "skip_bad_lines"))
                    return rctx_fail(c, v->key_lines[k], prefix, "%s is set by %s in a recipe", v->keys[k],
                                     !strcmp(v->keys[k], "type") ? "each dataset's type (data.datasets[].type)"
                                                                 : "data.skip_bad_lines");
        int rc = recipe_apply_table(c, sec->keys, cfg, v, v->line, prefix, NULL);
        if (rc) return rc;
    }
    return DS_OK;
}

int recipe_read_clean(rctx *c, const ynode *root)
{
    recipe *r = c->r;
    int i = ynode_find(root, "clean");
    const ynode *v = i >= 0 ? root->kids[i] : NULL;
    char shown[64];
    if (v && says_off(v)) return DS_OK;
    if (v && !ynode_is_null(v) && v->kind != YN_MAP)
        return rctx_fail(c, v->line, "clean", "expected a mapping of sections (dedup, length, pii, contamination, "
                         "quality, ...) or off, got %s", recipe_show(v, shown, sizeof shown));
    r->clean.cfg = ds_calloc(1, sizeof *r->clean.cfg, "the cleaning settings");
    if (!r->clean.cfg) return DS_ENOMEM;
    int rc = clean_config_defaults(r->clean.cfg);
    if (rc || !v || v->kind != YN_MAP) return rc;
    r->clean.rules = true;
    rc = read_sections(c, v, r->clean.cfg);
    if (!rc && (rc = clean_config_check(r->clean.cfg))) {
        char at[600];
        rctx_where(c, v->line, at, sizeof at);
        rc = ds_fail_context(rc, "%s: ", at);
    }
    return rc;
}

void recipe_clean_put(FILE *f, const recipe *r)
{
    if (!r->clean.cfg) {
        fputs("\nclean: off\n", f);
        return;
    }
    if (!r->clean.rules) {
        fputs("\n# clean: not set: the training data is only checked for contamination by the eval datasets\n", f);
        return;
    }
    fputs("\nclean:\n", f);
    for (const clean_section *s = clean_config_sections(); s->name; s++) {
        fprintf(f, "  %s:\n", s->name);
        for (const opt_key *k = s->keys; k->name; k++) {
            if (!strcmp(s->name, "input") && (!strcmp(k->name, "type") || !strcmp(k->name, "skip_bad_lines")))
                continue;
            const opt_key one[] = {*k, OPT_END};
            recipe_put_keys(f, one, r->clean.cfg, "    ", NULL);
        }
    }
}

void recipe_clean_print_keys(FILE *f)
{
    fputs("  clean (not set: only the contamination check of the training data against the eval datasets; off: "
          "nothing; a mapping: every rule, with these keys)\n",
          f);
    for (const clean_section *s = clean_config_sections(); s->name; s++)
        for (const opt_key *k = s->keys; k->name; k++) {
            if (!strcmp(s->name, "input") && (!strcmp(k->name, "type") || !strcmp(k->name, "skip_bad_lines")))
                continue;   /* each dataset's type, data.skip_bad_lines */
            fprintf(f, "    clean.%s.%s: %s - %s", s->name, k->name, k->def ? k->def : "[]", k->help);
            if (k->choices) fprintf(f, " (%s)", k->choices);
            fputc('\n', f);
        }
}
