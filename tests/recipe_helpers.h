/* tests/recipe_helpers.h - helpers shared by the test_recipe suites. */
#ifndef TESTS_RECIPE_HELPERS_H
#define TESTS_RECIPE_HELPERS_H
#define _GNU_SOURCE
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "finetune/recipe/recipe.h"
#include "finetune/recipe/recipe_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "base_model: models/tiny\noutput_dir: runs/t\n"
#define DATA "data:\n  datasets: [{path: d.jsonl, type: text}]\n"

/* ---- helpers ---- */

static char g_notices[4096];

static inline int parse_with(const char *text, const char *const *ov, int n, recipe **r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = recipe_parse(text, strlen(text), "t.yaml", (char *const *)ov, n, f, r);
    fclose(f);
    snprintf(g_notices, sizeof g_notices, "%s", buf ? buf : "");
    free(buf);
    return rc;
}

static inline recipe *parse_ok(const char *text, const char *const *ov, int n)
{
    recipe *r = NULL;
    int rc = parse_with(text, ov, n, &r);
    cr_assert_eq(rc, DS_OK, "recipe refused: %s\n---\n%s", ds_errmsg(), text);
    cr_assert_not_null(r);
    return r;
}

/* Refused with DS_ECONFIG and a message containing every needle (NULL-terminated). */
static inline void refused_ov(const char *text, const char *const *ov, int n, const char *needle, const char *needle2)
{
    recipe *r = NULL;
    int rc = parse_with(text, ov, n, &r);
    cr_expect_eq(rc, DS_ECONFIG, "expected DS_ECONFIG (78), got %d (%s)\n---\n%s", rc, ds_errmsg(), text);
    cr_expect_null(r);
    cr_expect(strstr(ds_errmsg(), needle) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle);
    if (needle2) cr_expect(strstr(ds_errmsg(), needle2) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle2);
    recipe_free(r);
}

static inline void refused(const char *text, const char *needle, const char *needle2)
{
    refused_ov(text, NULL, 0, needle, needle2);
}

static inline const opt_key *module_key(const loss_module *m, const char *name)
{
    for (const opt_key *k = m->keys; k && k->name; k++)
        if (!strcmp(k->name, name)) return k;
    cr_assert_fail("loss %s has no key %s", m->name, name);
    return NULL;
}

static inline double cfg_double(const recipe_loss *l, const char *name)
{
    return *(const double *)((const char *)l->cfg + module_key(l->module, name)->offset);
}

static inline const char *cfg_string(const recipe_loss *l, const char *name)
{
    return *(char *const *)((const char *)l->cfg + module_key(l->module, name)->offset);
}

static inline const void *cfg_field(const recipe_loss *l, const char *name)
{
    return (const char *)l->cfg + module_key(l->module, name)->offset;
}

static inline char *source_path(const char *rel) { return tu_source_path(rel); }

/* ---- comparing two recipes key by key ---- */

static inline void expect_same_keys(const opt_key *keys, const void *a, const void *b, const char *where)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        switch (k->type) {
        case OPT_BOOL:
            cr_expect_eq(*(const bool *)fa, *(const bool *)fb, "%s.%s", where, k->name);
            break;
        case OPT_INT:
            cr_expect_eq(*(const int64_t *)fa, *(const int64_t *)fb, "%s.%s", where, k->name);
            break;
        case OPT_FLOAT:
            cr_expect(*(const double *)fa == *(const double *)fb, "%s.%s: %.17g vs %.17g", where, k->name,
                      *(const double *)fa, *(const double *)fb);
            break;
        case OPT_STRING:
        case OPT_CHOICE: {
            const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
            cr_expect((!sa && !sb) || (sa && sb && !strcmp(sa, sb)), "%s.%s: '%s' vs '%s'", where, k->name,
                      sa ? sa : "(null)", sb ? sb : "(null)");
            break;
        }
        case OPT_STRING_LIST: {
            const opt_strings *la = fa, *lb = fb;
            cr_assert_eq(la->n, lb->n, "%s.%s: %d vs %d items", where, k->name, la->n, lb->n);
            for (int i = 0; i < la->n; i++)
                cr_expect_str_eq(la->items[i], lb->items[i], "%s.%s[%d]", where, k->name, i);
            break;
        }
        case OPT_INT_LIST: {
            const opt_ints *la = fa, *lb = fb;
            cr_assert_eq(la->n, lb->n, "%s.%s: %d vs %d items", where, k->name, la->n, lb->n);
            for (int i = 0; i < la->n; i++) cr_expect_eq(la->items[i], lb->items[i], "%s.%s[%d]", where, k->name, i);
            break;
        }
        }
    }
}

static inline void expect_same_loss(const recipe_loss *a, const recipe_loss *b, const char *where)
{
    cr_assert_eq(a->module, b->module, "%s: loss %s vs %s", where, a->module->name, b->module->name);
    expect_same_keys(a->module->keys, a->cfg, b->cfg, where);
}

static inline void expect_same_recipe(const recipe *a, const recipe *b)
{
    for (const recipe_section *s = RECIPE_SECTIONS; s->name; s++)
        if (s->keys) expect_same_keys(s->keys, a, b, *s->name ? s->name : "top");
    cr_assert_eq(a->data.n_datasets, b->data.n_datasets);
    for (int i = 0; i < a->data.n_datasets; i++)
        expect_same_keys(RECIPE_DATASET_KEYS, &a->data.datasets[i], &b->data.datasets[i], "data.datasets[]");
    cr_assert_eq(a->eval.n_datasets, b->eval.n_datasets);
    for (int i = 0; i < a->eval.n_datasets; i++)
        expect_same_keys(RECIPE_DATASET_KEYS, &a->eval.datasets[i], &b->eval.datasets[i], "eval.datasets[]");
    expect_same_loss(&a->loss.main, &b->loss.main, "loss");
    cr_assert_eq(a->loss.n_penalties, b->loss.n_penalties);
    for (int i = 0; i < a->loss.n_penalties; i++)
        expect_same_loss(&a->loss.penalties[i], &b->loss.penalties[i], "loss.penalties[]");
}

/* Write r, load it back, compare; also the text written twice is the same. */
static inline void expect_round_trip(const recipe *r)
{
    char *dir = tu_tmpdir();
    char *path = ds_path_join(dir, "recipe.resolved.yaml");
    cr_assert_eq(recipe_write(r, path), DS_OK, "%s", ds_errmsg());
    recipe *back = NULL;
    cr_assert_eq(recipe_load(path, NULL, 0, NULL, &back), DS_OK, "written recipe refused: %s", ds_errmsg());
    expect_same_recipe(r, back);

    char *t1 = NULL, *t2 = NULL;
    size_t n1 = 0, n2 = 0;
    FILE *f1 = open_memstream(&t1, &n1), *f2 = open_memstream(&t2, &n2);
    recipe_print(r, f1);
    recipe_print(back, f2);
    fclose(f1);
    fclose(f2);
    cr_expect_str_eq(t1, t2, "the written recipe does not print the same");
    char *disk;
    size_t nd;
    cr_assert_eq(ds_read_file(path, &disk, &nd), DS_OK);
    cr_expect_str_eq(disk, t1, "recipe_write and recipe_print differ");
    free(disk);
    free(t1);
    free(t2);
    recipe_free(back);
    ds_remove_tree(dir);
    free(path);
    free(dir);
}
#endif
