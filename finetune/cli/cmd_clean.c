/* finetune/cli/cmd_clean.c - `ds-ft clean INPUT... --out FILE [--config clean.yaml]
 * [--report FILE] [--type TYPE] [--tokenizer DIR] [--eval FILE...]
 * [--skip-bad-lines] [--force]`.
 *
 * Inputs are dataset files (JSONL, JSON, .zst) or folders of them (their
 * *.jsonl, *.json and *.zst files, in name order). The kept records go to
 * --out as JSONL, written under a temporary name; an existing --out or
 * --report is refused (exit 73) unless --force. The summary goes to stderr,
 * the full report (JSON) to --report.
 */
#include "commands.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/clean/clean.h"
#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

void cmd_clean_help(FILE *f)
{
    fprintf(f, "\noptions:\n"
               "  --out FILE          the kept records, JSONL (zstd when FILE ends in .zst); required\n"
               "  --config FILE       clean.yaml: the keys below (a file holding only `clean:` works too)\n"
               "  --report FILE       the full report as JSON (rules, duplicate clusters, PII, histograms)\n"
               "  --type TYPE         dataset type of every input (default: told from each file's first record)\n"
               "  --tokenizer DIR     for length.min_tokens / max_tokens\n"
               "  --eval FILE...      evaluation files for the contamination check (with contamination.eval)\n"
               "  --skip-bad-lines    drop and count malformed lines instead of stopping (input.skip_bad_lines)\n"
               "  --force             replace an existing --out or --report\n"
               "\nconfig keys (section.key: default - help):\n");
    clean_config_print_keys(f);
}

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

/* Take s (malloc'd; NULL = out of memory) into the list. */
static int list_add(list *l, char *s)
{
    if (!s) return ds_fail(DS_ENOMEM, "out of memory");
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
        return list_add(l, strdup(path));
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

typedef struct {
    const char *out, *config, *report, *type, *tokenizer;
    bool force, skip_bad_lines;
    list inputs, evals;
} clean_args;

static int parse_args(int argc, char **argv, clean_args *a)
{
    static const char *const with_value[] = {"--out", "--config", "--report", "--type", "--tokenizer"};
    const char **slots[] = {&a->out, &a->config, &a->report, &a->type, &a->tokenizer};
    int rc = DS_OK;
    for (int i = 0; i < argc && !rc; i++) {
        const char *s = argv[i];
        int k = 0;
        while (k < 5 && strcmp(s, with_value[k])) k++;
        if (k < 5) {
            if (i + 1 >= argc) return ds_fail(DS_EUSAGE, "clean: %s needs a value", s);
            if (*slots[k]) return ds_fail(DS_EUSAGE, "clean: %s given twice", s);
            *slots[k] = argv[++i];
        } else if (!strcmp(s, "--eval")) {
            int n = 0;
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) && !rc) rc = add_input(&a->evals, argv[++i]), n++;
            if (!rc && n == 0) return ds_fail(DS_EUSAGE, "clean: --eval needs at least one file");
        } else if (!strcmp(s, "--force")) {
            a->force = true;
        } else if (!strcmp(s, "--skip-bad-lines")) {
            a->skip_bad_lines = true;
        } else if (!strncmp(s, "--", 2)) {
            return ds_fail(DS_EUSAGE, "clean: unknown option '%s' (see ds-ft clean --help)", s);
        } else {
            rc = add_input(&a->inputs, s);
        }
    }
    if (rc) return rc;
    if (!a->out) return ds_fail(DS_EUSAGE, "clean: missing --out FILE (usage: ds-ft clean INPUT... --out FILE ...)");
    if (a->inputs.n == 0) return ds_fail(DS_EUSAGE, "clean: no input files");
    if (a->report && !a->force && ds_exists(a->report))
        return ds_fail(DS_EEXISTS, "%s exists; pass --force to replace it", a->report);
    return DS_OK;
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

int cmd_clean(int argc, char **argv)
{
    clean_args a = {0};
    clean_config cfg;
    tokenizer *tok = NULL;
    clean_report *rep = NULL;
    int rc = parse_args(argc, argv, &a);
    if (!rc) rc = a.config ? clean_config_load(a.config, &cfg) : clean_config_defaults(&cfg);
    else memset(&cfg, 0, sizeof cfg);
    if (!rc && a.type) rc = clean_config_set(&cfg, "input.type", a.type, "--type", 0);
    if (!rc && a.skip_bad_lines) cfg.skip_bad_lines = true;
    if (!rc && a.tokenizer) rc = load_tokenizer(a.tokenizer, &tok);
    if (!rc) {
        clean_job job = {(const char *const *)a.inputs.items, a.inputs.n, (const char *const *)a.evals.items,
                         a.evals.n, a.out, a.force, tok, NULL};
        rc = clean_run(&cfg, &job, &rep);
    }
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
    list_free(&a.inputs);
    list_free(&a.evals);
    return rc;
}
