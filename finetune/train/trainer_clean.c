/* finetune/train/trainer_clean.c - the recipe's `clean:` section applied to
 * the training data before tokenization (data/clean/clean.h).
 *
 * Each training dataset is cleaned on its own (its records are one type),
 * checked against every eval dataset of the recipe (and clean.contamination.
 * eval). Without a `clean:` mapping only the contamination check runs: it
 * warns (counts and examples), every other rule is off and no data is
 * written. With a mapping every rule runs (contamination.action: drop
 * removes the contaminated records, off skips the check), and the kept
 * records go to OUTPUT_DIR/cache/train-N.clean.jsonl, which
 * is then tokenized (so the token cache keys on them); the key of the
 * cleaning (clean_job_key: the config, the files, the scorer's model) is
 * kept beside it, and a run with the same key reuses the file and its
 * report instead of cleaning again. A check that only warns writes no data.
 *
 * The report of every dataset goes to OUTPUT_DIR/clean_report.json once the
 * output folder is ready (trainer_clean_write_report), and a summary with the
 * contamination found, and examples, to train.log.
 */
#include "trainer.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/clean/clean.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The recipe's config for dataset d (a shallow copy: its strings stay the
 * recipe's); with no clean: mapping every rule but contamination is off. */
static clean_config dataset_config(const recipe *r, const recipe_dataset *d)
{
    clean_config c = *r->clean.cfg;
    c.type = d->type;
    c.skip_bad_lines = r->data.skip_bad_lines;
    if (r->clean.rules) return c;
    static char off[] = "off", any[] = "any", all[] = "all";
    c.text = all;   /* "empty" then means a record without a word in any field: nothing to train on */
    c.exact = false;
    c.near = off;
    c.min_words = c.max_words = c.min_chars = c.max_chars = c.min_tokens = c.max_tokens = 0;
    c.max_dup_line_share = c.max_dup_line_char_share = c.max_top_ngram_share = c.max_dup_ngram_share = 1;
    c.script = any;
    c.min_alpha_word_share = 0;
    c.max_bad_char_share = 1;
    for (int k = 0; k < CLEAN_PII_NCAT; k++) c.pii[k] = off;
    c.keep_fraction = 0;
    return c;
}

/* Whether the cleaning of this config writes data (else it only reports). */
static bool writes_data(const recipe *r, const clean_config *c)
{
    return r->clean.rules || !strcmp(c->contamination, "drop");
}

/* ---- the quality scorer: the base model, or clean.quality.model ---- */

typedef struct {
    ds_run own;            /* clean.quality.model's context (empty with the base model) */
    text_scorer *ts;
    clean_scorer sc;
} scorer;

static int scorer_open(trainer *x, scorer *s)
{
    const recipe *r = x->r;
    const char *model = r->clean.cfg->quality_model;
    backend *be = x->ctx.be;
    const llama_model *m = x->ctx.model;
    const tokenizer *tok = x->ctx.tok;
    if (model) {
        /* on the run's device, at the run's precision */
        ds_run_opts o = {.device = x->ctx.be->kind, .model_dir = model, .load_in_4bit = r->quant.load_in_4bit,
                         .double_quant = r->quant.double_quant};
        int rc = ds_run_open(&o, &s->own);
        if (rc) return ds_fail_context(rc, "%s: clean.quality.model: ", r->file);
        be = s->own.be;
        m = s->own.model;
        tok = s->own.tok;
    }
    int batch = r->plan.eval_rows > 0 ? r->plan.eval_rows : 1;
    int rc = text_scorer_open(be, m, tok, r->plan.seq_len, batch, &s->ts);
    if (rc) return rc;
    s->sc = (clean_scorer){text_scorer_score, s->ts, model ? model : r->base_model, batch};
    tlog_say(&x->log, "clean: scoring with %s on %s", s->sc.name, be_name(be));
    return DS_OK;
}

/* What the cache key adds for the scorer, known before it is opened (a hit
 * needs no model): the model's folder, and for the base model the run's
 * tokenizer; the precision and the tokens scored. */
static char *scorer_id(const trainer *x)
{
    const recipe *r = x->r;
    const char *model = r->clean.cfg->quality_model;
    return ds_strdupf("model %s, tokenizer %s, 4-bit %d, max %d tokens", model ? model : r->base_model,
                      model ? "its own" : tok_digest(x->ctx.tok), r->quant.load_in_4bit, r->plan.seq_len);
}

static void scorer_close(scorer *s)
{
    text_scorer_free(s->ts);
    ds_run_close(&s->own);
    memset(s, 0, sizeof *s);
}

/* ---- the log ---- */

static json_int_t num(const json_t *o, const char *key) { return json_integer_value(json_object_get(o, key)); }

static void log_report(trainer *x, const char *name, const json_t *rep, bool hit)
{
    char drops[512] = "";
    size_t k = 0;
    const json_t *rule;
    size_t i;
    json_array_foreach(json_object_get(rep, "rules"), i, rule) {
        json_int_t n = num(rule, "dropped");
        const char *what = json_string_value(json_object_get(rule, "rule"));
        if (n > 0 && what && k < sizeof drops)
            k += (size_t)snprintf(drops + k, sizeof drops - k, "%s%s %lld", k ? ", " : "", what, (long long)n);
    }
    if (x->r->clean.rules)
        tlog_say(&x->log, "clean: %s: %lld records in, %lld kept%s%s%s%s", name, (long long)num(rep, "records_in"),
                 (long long)num(rep, "records_out"), *drops ? " (dropped: " : "", drops, *drops ? ")" : "",
                 hit ? " (cached)" : "");
    const json_t *c = json_object_get(rep, "contamination");
    if (!json_is_object(c)) {
        tlog_say(&x->log, "contamination: %s: no eval datasets to check against", name);
        return;
    }
    const char *action = json_string_value(json_object_get(c, "action"));
    json_int_t hits = num(c, "records");
    tlog_say(&x->log, "contamination: %s: %lld records share a %lld-gram with %lld of %lld eval items%s%s", name,
             (long long)hits, (long long)num(c, "ngram"), (long long)num(c, "eval_items_hit"),
             (long long)num(c, "eval_items"),
             !hits ? "" : action && !strcmp(action, "drop") ? "; dropped"
                                                             : "; warning: kept (clean.contamination.action: drop "
                                                               "removes them)",
             hit && !x->r->clean.rules ? " (cached)" : "");
    const json_t *ex;
    json_array_foreach(json_object_get(c, "examples"), i, ex) {
        const char *ngram = json_string_value(json_object_get(ex, "ngram"));
        char shown[400];
        size_t n = 0;
        for (const char *p = ngram ? ngram : ""; *p && n + 1 < sizeof shown; p++)   /* one line in the log */
            shown[n++] = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
        shown[n] = '\0';
        tlog_say(&x->log, "contamination:   %s matches %s: \"%s\"", json_string_value(json_object_get(ex, "at")),
                 json_string_value(json_object_get(ex, "eval_item")), shown);
    }
}

/* ---- one dataset ---- */

/* Clean dataset i into cache/train-I.clean.jsonl (or only check it): *rep
 * its report, *cleaned the file to tokenize (NULL: the original). */
static int clean_dataset(trainer *x, int i, const char *cache_dir, scorer *sc, json_t **rep, char **cleaned)
{
    const recipe *r = x->r;
    const recipe_dataset *d = &r->data.datasets[i];
    clean_config cfg = dataset_config(r, d);
    const char **evals = ds_calloc((size_t)r->eval.n_datasets + 1, sizeof *evals, "the eval file list");
    if (!evals) return DS_ENOMEM;
    for (int k = 0; k < r->eval.n_datasets; k++) evals[k] = r->eval.datasets[k].path;
    bool write = writes_data(r, &cfg);
    char *out = ds_strdupf("%s/train-%d.clean.jsonl", cache_dir, i);
    char *key_path = ds_strdupf("%s/train-%d.clean.key", cache_dir, i);
    char *rep_path = ds_strdupf("%s/train-%d.clean_report.json", cache_dir, i);
    clean_job job = {(const char *const *)&d->path, 1, evals, r->eval.n_datasets, write ? out : NULL, true,
                     cfg.min_tokens > 0 || cfg.max_tokens > 0 ? x->ctx.tok : NULL, NULL};
    int rc = !out || !key_path || !rep_path ? ds_fail(DS_ENOMEM, "out of memory") : DS_OK;
    char key[65], *old = NULL, *id = cfg.keep_fraction > 0 ? scorer_id(x) : NULL;
    size_t len;
    if (!rc && cfg.keep_fraction > 0 && !id) rc = ds_fail(DS_ENOMEM, "out of memory");
    if (!rc) rc = clean_job_key(&cfg, &job, id, key);
    free(id);
    bool hit = !rc && ds_exists(key_path) && ds_exists(rep_path) && (!write || ds_exists(out)) &&
               ds_read_file(key_path, &old, &len) == DS_OK && len == 64 && !memcmp(old, key, 64);
    free(old);
    json_error_t err;
    if (hit && !(*rep = json_load_file(rep_path, 0, &err))) hit = false;   /* unreadable: clean again */
    if (!rc && !hit) {
        clean_report *cr = NULL;
        if (cfg.keep_fraction > 0 && !sc->ts) rc = scorer_open(x, sc);
        if (cfg.keep_fraction > 0) job.scorer = &sc->sc;
        if (!rc) rc = clean_run(&cfg, &job, &cr);
        char *text = !rc ? clean_report_json(cr) : NULL;
        if (!rc && !text) rc = DS_ENOMEM;
        if (!rc && !(*rep = json_loads(text, 0, &err))) rc = ds_fail(DS_EINTERNAL, "clean report: %s", err.text);
        if (!rc) rc = ds_write_file(rep_path, text, strlen(text));
        if (!rc) rc = ds_write_file(key_path, key, 64);
        free(text);
        clean_report_free(cr);
        if (rc) rc = ds_fail_context(rc, "%s: data.datasets[%d]: cleaning %s: ", r->file, i, d->path);
    }
    if (!rc) {
        char name[600];
        snprintf(name, sizeof name, "data.datasets[%d] %s", i, d->path);
        log_report(x, name, *rep, hit);
    }
    if (!rc && write && num(*rep, "records_out") == 0)
        rc = ds_fail(DS_EDATA, "%s: data.datasets[%d]: cleaning kept none of the %lld records of %s (train.log and "
                     "the report in %s say why); loosen the clean: section", r->file, i,
                     (long long)num(*rep, "records_in"), d->path, rep_path);
    if (!rc && write) {
        *cleaned = out;
        out = NULL;
    }
    free(out);
    free(key_path);
    free(rep_path);
    free(evals);
    return rc;
}

/* A cleaned mcq file's answers count as the original file's do: told from
 * all of it, before cleaning (a subset may no longer show its numbering). */
static int pin_answer_base(trainer *x, int i, const data_options *opt)
{
    recipe_dataset *d = &x->clean_src[i];
    clean_config cfg = dataset_config(x->r, d);
    if (!writes_data(x->r, &cfg) || strcmp(d->type, "mcq") || (d->answer_base && strcmp(d->answer_base, "auto")))
        return DS_OK;
    int base;
    int rc = ds_answer_base(&x->r->data.datasets[i], opt, &base);
    if (!rc) d->answer_base = base ? "1" : "0";   /* static strings: clean_src's fields are borrowed */
    return rc;
}

int trainer_clean_data(trainer *x, const char *cache_dir, const data_options *opt, const recipe_dataset **sources)
{
    const recipe *r = x->r;
    *sources = r->data.datasets;
    if (!r->clean.cfg) return DS_OK;   /* clean: off */
    if (!r->clean.rules && !r->eval.n_datasets && !r->clean.cfg->eval.n) {
        tlog_say(&x->log, "contamination: no eval datasets to check the training data against");
        return DS_OK;
    }
    if (!r->clean.rules && !strcmp(r->clean.cfg->contamination, "off")) return DS_OK;
    int n = r->data.n_datasets;
    x->clean_src = ds_calloc((size_t)n + 1, sizeof *x->clean_src, "the cleaned datasets");
    x->clean_paths = ds_calloc((size_t)n + 1, sizeof *x->clean_paths, "the cleaned datasets");
    json_t *all = json_object(), *per = json_object();
    int rc = !x->clean_src || !x->clean_paths || !all || !per ? ds_fail(DS_ENOMEM, "out of memory") : DS_OK;
    if (!rc) {
        json_object_set_new(all, "mode", json_string(r->clean.rules ? "every rule (clean:)" : "contamination check only"));
        json_object_set(all, "datasets", per);
    }
    scorer sc = {0};
    for (int i = 0; !rc && i < n; i++) {
        json_t *rep = NULL;
        x->clean_src[i] = r->data.datasets[i];
        rc = pin_answer_base(x, i, opt);
        if (!rc) rc = clean_dataset(x, i, cache_dir, &sc, &rep, &x->clean_paths[i]);
        char name[64];
        snprintf(name, sizeof name, "data.datasets[%d]", i);
        if (!rc && json_object_set_new(per, name, rep)) rc = ds_fail(DS_ENOMEM, "out of memory");
        else if (rc) json_decref(rep);
        if (x->clean_paths[i]) x->clean_src[i].path = x->clean_paths[i];
    }
    scorer_close(&sc);
    x->n_clean = n;
    if (!rc && !(x->clean_report = json_dumps(all, JSON_INDENT(2)))) rc = ds_fail(DS_ENOMEM, "out of memory");
    json_decref(per);
    json_decref(all);
    if (!rc) *sources = x->clean_src;
    return rc;
}

/* run_info.json's "clean": per dataset the counts, without the clusters and examples. */
static void record_summary(trainer *x)
{
    json_t *all = json_loads(x->clean_report, 0, NULL), *sum = json_object(), *per = json_object();
    const char *name;
    json_t *rep;
    json_object_foreach(json_object_get(all, "datasets"), name, rep) {
        json_t *d = json_object(), *dropped = json_object(), *rule;
        size_t i;
        json_array_foreach(json_object_get(rep, "rules"), i, rule)
            if (json_integer_value(json_object_get(rule, "dropped")) > 0)
                json_object_set(dropped, json_string_value(json_object_get(rule, "rule")), json_object_get(rule, "dropped"));
        json_t *c = json_object_get(rep, "contamination");
        json_t *cs = json_is_object(c) ? json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?}", "action", json_object_get(c, "action"),
                                                   "ngram", json_object_get(c, "ngram"), "records",
                                                   json_object_get(c, "records"), "eval_items_hit",
                                                   json_object_get(c, "eval_items_hit"), "eval_items",
                                                   json_object_get(c, "eval_items"))
                                         : json_null();
        json_object_set_new(d, "records_in", json_incref(json_object_get(rep, "records_in")));
        json_object_set_new(d, "records_out", json_incref(json_object_get(rep, "records_out")));
        json_object_set_new(d, "dropped", dropped);
        json_object_set_new(d, "contamination", cs);
        json_object_set_new(per, name, d);
    }
    json_object_set(sum, "mode", json_object_get(all, "mode"));
    json_object_set_new(sum, "datasets", per);
    json_object_set_new(sum, "report", json_string("clean_report.json"));
    char *text = json_dumps(sum, JSON_COMPACT);
    report_info_clean(x->info, text);
    free(text);
    json_decref(sum);
    json_decref(all);
}

int trainer_clean_write_report(trainer *x)
{
    if (!x->clean_report) return DS_OK;
    record_summary(x);
    char *path = ds_path_join(x->r->output_dir, "clean_report.json");
    int rc = path ? ds_write_file(path, x->clean_report, strlen(x->clean_report)) : DS_ENOMEM;
    if (!rc) tlog_say(&x->log, "clean: report in %s", path);
    free(path);
    return rc;
}

void trainer_clean_free(trainer *x)
{
    for (int i = 0; x->clean_paths && i < x->n_clean; i++) free(x->clean_paths[i]);
    free(x->clean_paths);
    free(x->clean_src);
    free(x->clean_report);
}
