/* tests/test_clean_recipe.c - the recipe's clean: section (finetune/recipe/
 * recipe_clean.c): its three states, every key read through the clean
 * tables, refusals by name with file:line, the resolved recipe reading back
 * the same keys; and clean_job_key, the key of the cleaned-data cache. */
#include "recipe_helpers.h"

#include "data/clean/clean.h"

static recipe *parse_text(const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text, HEAD DATA "%s", extra);
    return parse_ok(text, NULL, 0);
}

static int refused_rc(const char *extra)
{
    char text[2048];
    snprintf(text, sizeof text, HEAD DATA "%s", extra);
    recipe *r = NULL;
    int rc = parse_with(text, NULL, 0, &r);
    recipe_free(r);
    return rc;
}

Test(clean_recipe, absent_means_the_contamination_check_only)
{
    recipe *r = parse_text("");
    cr_assert_not_null(r->clean.cfg);
    cr_expect(!r->clean.rules);
    cr_expect_str_eq(r->clean.cfg->contamination, "warn");
    cr_expect_eq(r->clean.cfg->ngram, 13);
    recipe_free(r);
}

Test(clean_recipe, off_means_nothing)
{
    recipe *r = parse_text("clean: off\n");
    cr_expect_null(r->clean.cfg);
    recipe_free(r);
    r = parse_text("clean: false\n");
    cr_expect_null(r->clean.cfg);
    recipe_free(r);
}

Test(clean_recipe, a_mapping_sets_keys_over_the_defaults)
{
    recipe *r = parse_text("clean:\n  dedup: {similarity: 0.95, near: minhash}\n  length: {min_words: 3}\n"
                           "  pii: {email: drop}\n  contamination: {action: drop, eval: [extra.jsonl]}\n"
                           "  quality: {keep_fraction: 0.8, model: models/tiny}\n  repetition:\n");
    const clean_config *c = r->clean.cfg;
    cr_assert(r->clean.rules);
    cr_expect_eq(c->similarity, 0.95);
    cr_expect_str_eq(c->near, "minhash");
    cr_expect_eq(c->min_words, 3);
    cr_expect_eq(c->max_words, -1, "the type's default stays");
    cr_expect_str_eq(c->pii[CLEAN_PII_EMAIL], "drop");
    cr_expect_str_eq(c->pii[CLEAN_PII_PHONE], "mask");
    cr_expect_str_eq(c->contamination, "drop");
    cr_expect_eq(c->eval.n, 1);
    cr_expect_str_eq(c->eval.items[0], "extra.jsonl");
    cr_expect_eq(c->keep_fraction, 0.8);
    cr_expect_str_eq(c->quality_model, "models/tiny");
    cr_expect(c->exact);
    recipe_free(r);
}

Test(clean_recipe, overrides_reach_the_section)
{
    const char *ov[] = {"clean.dedup.similarity=0.92", "clean.contamination.action=off"};
    char text[512];
    snprintf(text, sizeof text, HEAD DATA);
    recipe *r = parse_ok(text, ov, 2);
    cr_expect(r->clean.rules);
    cr_expect_eq(r->clean.cfg->similarity, 0.92);
    cr_expect_str_eq(r->clean.cfg->contamination, "off");
    recipe_free(r);
}

Test(clean_recipe, keys_are_refused_by_name_with_their_line)
{
    cr_expect_eq(refused_rc("clean:\n  dedup:\n    simlarity: 0.9\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "t.yaml:7: clean.dedup.simlarity: unknown key; did you mean 'similarity'?"), "%s",
              ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  dedupe: {}\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "t.yaml:6: clean.dedupe: unknown key"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  dedup: {similarity: 1.5}\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "clean.dedup.similarity"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  input: {type: text}\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "clean.input: type is set by each dataset's type"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  input: {skip_bad_lines: true}\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "data.skip_bad_lines"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean: [dedup]\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "clean: expected a mapping of sections"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  dedup: 3\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "clean.dedup: expected a mapping of dedup keys"), "%s", ds_errmsg());
    cr_expect_eq(refused_rc("clean:\n  length: {min_words: 20, max_words: 10}\n"), DS_ECONFIG);
    cr_expect(strstr(ds_errmsg(), "t.yaml:6: clean.length.min_words (20) is above clean.length.max_words"), "%s",
              ds_errmsg());
}

static char *write_tmp(const char *name, const char *text)
{
    char *dir = tu_tmpdir(), *path = ds_path_join(dir, name);
    cr_assert_eq(ds_write_file(path, text, strlen(text)), DS_OK);
    free(dir);
    return path;
}

/* The resolved recipe holds every key of the section and reads back to the same values. */
static void round_trip(const char *extra)
{
    recipe *r = parse_text(extra);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(recipe_print(r, f), DS_OK);
    fclose(f);
    recipe *back = parse_ok(buf, NULL, 0);
    cr_expect_eq(back->clean.rules, r->clean.rules, "%s", buf);
    cr_expect_eq(back->clean.cfg == NULL, r->clean.cfg == NULL, "%s", buf);
    if (r->clean.cfg) {
        const opt_strings *x = &r->clean.cfg->eval, *y = &back->clean.cfg->eval;
        cr_assert_eq(x->n, y->n, "%s", buf);
        for (int i = 0; i < x->n; i++) cr_expect_str_eq(x->items[i], y->items[i]);
        opt_strings files = *x;
        r->clean.cfg->eval.n = back->clean.cfg->eval.n = 0;   /* the key would read them */
        char a[65], b[65], *data = write_tmp("r.jsonl", "{\"text\": \"x\"}\n");
        const char *in[] = {data};
        clean_job job = {in, 1, NULL, 0, NULL, false, NULL, NULL};
        cr_assert_eq(clean_job_key(r->clean.cfg, &job, NULL, a), DS_OK);
        cr_assert_eq(clean_job_key(back->clean.cfg, &job, NULL, b), DS_OK);
        cr_expect_str_eq(a, b, "every key reads back the same:\n%s", buf);
        r->clean.cfg->eval = files;
        back->clean.cfg->eval.n = files.n;
        free(data);
    }
    free(buf);
    recipe_free(back);
    recipe_free(r);
}

Test(clean_recipe, the_resolved_recipe_reads_back)
{
    round_trip("");
    round_trip("clean: off\n");
    round_trip("clean:\n  dedup: {similarity: 0.95}\n  contamination: {eval: [a.jsonl, \"b c.jsonl\"]}\n"
               "  quality: {keep_fraction: 0.25, model: \"models/x y\"}\n  charset: {script: latin}\n");
}

Test(clean_key, changes_with_every_input_of_the_result)
{
    clean_config cfg;
    cr_assert_eq(clean_config_defaults(&cfg), DS_OK);
    char *data = write_tmp("k.jsonl", "{\"text\": \"one two three\"}\n");
    char *ev = write_tmp("e.jsonl", "{\"text\": \"four five six\"}\n");
    const char *in[] = {data}, *evals[] = {ev};
    clean_job job = {in, 1, evals, 1, NULL, false, NULL, NULL};
    char k0[65], k[65];
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k0), DS_OK);
    cr_expect_eq(strlen(k0), 64);
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k), DS_OK);
    cr_expect_str_eq(k, k0, "the same inputs give the same key");
    cr_assert_eq(clean_job_key(&cfg, &job, "model a", k), DS_OK);
    cr_expect_str_neq(k, k0, "the scorer's model counts");
    cr_assert_eq(clean_config_set(&cfg, "dedup.similarity", "0.95", "t", 0), DS_OK);
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k), DS_OK);
    cr_expect_str_neq(k, k0, "a key counts");
    cr_assert_eq(clean_config_set(&cfg, "dedup.similarity", "0.9", "t", 0), DS_OK);
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k), DS_OK);
    cr_expect_str_eq(k, k0, "set back, the same key");
    cr_assert_eq(ds_write_file(ev, "{\"text\": \"four five seven\"}\n", 28), DS_OK);
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k), DS_OK);
    cr_expect_str_neq(k, k0, "an eval file's bytes count");
    job.nevals = 0;
    char k1[65];
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k1), DS_OK);
    cr_expect_str_neq(k1, k, "which eval files count");
    cr_assert_eq(ds_write_file(data, "{\"text\": \"one two four\"}\n", 25), DS_OK);
    cr_assert_eq(clean_job_key(&cfg, &job, NULL, k), DS_OK);
    cr_expect_str_neq(k, k1, "the data's bytes count");
    const char *missing[] = {"/nonexistent/x.jsonl"};
    job.inputs = missing;
    cr_expect_eq(clean_job_key(&cfg, &job, NULL, k), DS_ENOINPUT, "%s", ds_errmsg());
    clean_config_free(&cfg);
    free(data);
    free(ev);
}
