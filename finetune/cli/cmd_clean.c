/* finetune/cli/cmd_clean.c - `ds-ft clean INPUT... --out FILE [--config clean.yaml]
 * [--report FILE] [--type TYPE] [--tokenizer DIR] [--eval FILE...]
 * [--model DIR [--device D] [--seq N]] [--skip-bad-lines] [--force]`.
 *
 * Inputs are dataset files (JSONL, JSON, .zst) or folders of them (their
 * *.jsonl, *.json and *.zst files, in name order). The kept records go to
 * --out as JSONL, written under a temporary name; an existing --out or
 * --report is refused (exit 73) unless --force. The summary goes to stderr,
 * the full report (JSON) to --report. quality.keep_fraction scores the
 * records with the language model of --model (or quality.model) through the
 * engine (finetune/run/run.h: text_scorer), on --device.
 */
#include "commands.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/clean/clean.h"
#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"
#include "finetune/run/run.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static void clean_keys_help(FILE *f)
{
    fprintf(f, "\nconfig keys (section.key: default - help):\n");
    clean_config_print_keys(f);
}

typedef struct {
    const char *out, *config, *report, *type, *tokenizer, *model, *device;
    cli_list eval;
    long seq;
    bool force, skip_bad_lines;
} clean_opts;

static const cli_opt CLEAN_OPTS[] = {
    CLI_OUT(clean_opts, out, "FILE", "the kept records, JSONL (zstd when FILE ends in .zst)"),
    {"--config", ARG_TEXT, offsetof(clean_opts, config), "FILE", "the keys' defaults", 0, 0, NULL, false,
     "clean.yaml: the keys below (a file holding only `clean:` works too)"},
    {"--report", ARG_TEXT, offsetof(clean_opts, report), "FILE", NULL, 0, 0, NULL, false,
     "the full report as JSON (rules, duplicate clusters, PII, histograms)"},
    {"--type", ARG_TEXT, offsetof(clean_opts, type), "TYPE", "told from each file's first record", 0, 0, NULL, false,
     "dataset type of every input (input.type)"},
    CLI_TOKENIZER(clean_opts, tokenizer, false, "none", "for length.min_tokens / max_tokens"),
    {"--eval", ARG_FILES, offsetof(clean_opts, eval), "FILE", NULL, 0, 0, NULL, false,
     "evaluation files for the contamination check (with contamination.eval)"},
    {"--model", ARG_MODEL, offsetof(clean_opts, model), "DIR|ORG/NAME[@REV]", "quality.model", 0, 0, NULL, false,
     "the language model that scores the records for quality.keep_fraction"},
    CLI_DEVICE(clean_opts, device),
    {"--seq", ARG_INT, offsetof(clean_opts, seq), "N", "512", 2, 1048576, NULL, false,
     "tokens of a record the model scores (longer ones: their first N)"},
    {"--skip-bad-lines", ARG_FLAG, offsetof(clean_opts, skip_bad_lines), NULL, "off", 0, 0, NULL, false,
     "drop and count malformed lines instead of stopping (input.skip_bad_lines)"},
    {"--force", ARG_FLAG, offsetof(clean_opts, force), NULL, "off", 0, 0, NULL, false,
     "replace an existing --out or --report"},
    CLI_END,
};

const cli_spec CLEAN_SPEC = {"clean", "INPUT...", 1, -1, NULL,
                             "deduplicate, filter, scrub PII and check contamination; write the kept records",
                             CLEAN_OPTS, clean_keys_help};

static bool data_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && ((n > 6 && !strcmp(name + n - 6, ".jsonl")) || (n > 5 && !strcmp(name + n - 5, ".json")) ||
                              (n > 4 && !strcmp(name + n - 4, ".zst")));
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct {
    char **items;
    int n;
    size_t cap;
} list;

/* Take s (malloc'd; NULL = out of memory, the message set) into the list. */
static int list_add(list *l, char *s)
{
    if (!s) return DS_ENOMEM;
    if (ds_grow(&l->items, &l->cap, (size_t)l->n + 1, sizeof *l->items)) {
        free(s);
        return DS_ENOMEM;
    }
    l->items[l->n++] = s;
    return DS_OK;
}

static void list_free(list *l)
{
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
}

/* A file as it is; a folder as its data files in name order. */
static int add_input(list *l, const char *path)
{
    if (!ds_is_dir(path)) {
        if (!ds_exists(path)) return ds_open_error(path, "read");
        return list_add(l, ds_strdup(path));
    }
    DIR *d = opendir(path);
    if (!d) return ds_open_error(path, "open the folder");
    int first = l->n, rc = DS_OK;
    for (struct dirent *e; !rc && (e = readdir(d));)
        if (data_name(e->d_name)) {
            char *p = ds_path_join(path, e->d_name);
            if (p && ds_is_dir(p)) free(p);
            else rc = list_add(l, p);
        }
    closedir(d);
    if (!rc && l->n == first) rc = ds_fail(DS_ENOINPUT, "%s: no .jsonl, .json or .zst files in this folder", path);
    if (!rc) qsort(l->items + first, (size_t)(l->n - first), sizeof *l->items, by_name);
    return rc;
}

/* The inputs and eval files (folders expanded), and an existing --report refused without --force. */
static int collect_inputs(const clean_opts *o, const cli_parsed *p, list *inputs, list *evals)
{
    int rc = DS_OK;
    for (int i = 0; i < p->nargs && !rc; i++) rc = add_input(inputs, p->args[i]);
    for (int i = 0; i < o->eval.n && !rc; i++) rc = add_input(evals, o->eval.items[i]);
    if (!rc && o->report && !o->force && ds_exists(o->report))
        rc = ds_fail(DS_EEXISTS, "%s exists; pass --force to replace it", o->report);
    return rc;
}

static int load_tokenizer(const char *dir, tokenizer **t)
{
    int rc = tok_load(dir, t);
    if (rc) return rc;
    char *config = ds_path_join(dir, "config.json");
    model_config mc;
    if (config && ds_exists(config)) {
        if (model_config_load(dir, &mc) == DS_OK) tok_set_default_ids(*t, mc.bos_id, mc.eos_id, mc.pad_id);
        else ds_clear_error();   /* lengths do not depend on the special ids */
    }
    free(config);
    return DS_OK;
}

/* The quality scorer: --model (or quality.model) on --device, when keep_fraction asks for one. */
static int open_scorer(const clean_opts *a, const clean_config *cfg, ds_run *model, text_scorer **ts, clean_scorer *sc)
{
    const char *dir = a->model ? a->model : cfg->quality_model;
    if (cfg->keep_fraction <= 0) {
        if (a->model) return ds_fail(DS_EUSAGE, "clean: --model scores records for quality.keep_fraction, which is 0 (off)");
        return DS_OK;
    }
    if (!dir)
        return ds_fail(DS_ECONFIG, "clean.quality.keep_fraction needs a language model to score the records: --model DIR "
                       "(or quality.model)");
    be_kind device;
    int rc = be_kind_parse(a->device, &device);
    ds_run_opts o = {.device = device, .model_dir = dir};
    if (!rc) rc = ds_run_open(&o, model);
    if (!rc) rc = text_scorer_open(model->be, model->model, model->tok, (int)a->seq, 8, ts);
    if (!rc) {
        *sc = (clean_scorer){text_scorer_score, *ts, dir, 8};
        fprintf(stderr, "clean: scoring with %s on %s\n", dir, be_name(model->be));
    }
    return rc;
}

int cmd_clean(int argc, char **argv)
{
    clean_opts a;
    cli_parsed p;
    list inputs = {0}, evals = {0};
    clean_config cfg;
    tokenizer *tok = NULL;
    clean_report *rep = NULL;
    int rc = cli_parse(&CLEAN_SPEC, argc, argv, &a, &p);
    if (!rc) rc = collect_inputs(&a, &p, &inputs, &evals);
    if (!rc) rc = a.config ? clean_config_load(a.config, &cfg) : clean_config_defaults(&cfg);
    else memset(&cfg, 0, sizeof cfg);
    if (!rc && a.type) rc = clean_config_set(&cfg, "input.type", a.type, "--type", 0);
    if (!rc && a.skip_bad_lines) cfg.skip_bad_lines = true;
    if (!rc && a.tokenizer) rc = load_tokenizer(a.tokenizer, &tok);
    ds_run model = {0};
    text_scorer *ts = NULL;
    clean_scorer sc = {0};
    if (!rc) rc = open_scorer(&a, &cfg, &model, &ts, &sc);
    if (!rc) {
        clean_job job = {(const char *const *)inputs.items, inputs.n, (const char *const *)evals.items, evals.n, a.out,
                         a.force, tok, ts ? &sc : NULL};
        rc = clean_run(&cfg, &job, &rep);
    }
    text_scorer_free(ts);
    ds_run_close(&model);
    if (rep && !rc) {
        clean_report_summary(rep, stderr);
        if (a.report && !rc) {
            char *json = clean_report_json(rep);
            rc = json ? ds_write_file(a.report, json, strlen(json)) : ds_fail(DS_ENOMEM, "out of memory");
            free(json);
        }
    }
    clean_report_free(rep);
    clean_config_free(&cfg);
    if (tok) tok_free(tok);
    list_free(&inputs);
    list_free(&evals);
    cli_parsed_free(&p);
    return rc;
}
