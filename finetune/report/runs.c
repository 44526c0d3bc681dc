/* finetune/report/runs.c - a run folder as the report reads it:
 * metrics.jsonl (training rows and evaluation rows), eval/NAME.json,
 * run_info.json, clean_report.json, recipe.resolved.yaml and the end of
 * train.log. Only metrics.jsonl is required. */
#include "report_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/json_util.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_TAIL_LINES 200

static int load_metrics(rep_run *r)
{
    char *path = ds_path_join(r->dir, "metrics.jsonl"), *text = NULL;
    size_t len;
    int rc = ds_read_file(path, &text, &len);
    if (rc == DS_ENOINPUT) rc = ds_fail(DS_ENOINPUT, "%s: no metrics.jsonl (is it a ds-ft run folder?)", r->dir);
    r->train_rows = json_array();
    r->eval_rows = json_array();
    int line = 0;
    for (char *p = text, *next; !rc && p && p < text + len; p = next) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        next = nl ? nl + 1 : text + len;
        line++;
        size_t n = (size_t)((nl ? nl : text + len) - p);
        if (strspn(p, " \t\r") >= n) continue;   /* blank line */
        json_error_t err;
        json_t *row = json_loadb(p, n, 0, &err);
        if (!row && !nl) {   /* a last line cut short by a kill: said on the page, not fatal */
            r->torn_last_line = true;
            break;
        }
        if (!row) rc = ds_fail(DS_EDATA, "%s:%d: invalid JSON: %s", path, line, err.text);
        else if (!json_is_object(row)) rc = ds_fail(DS_EDATA, "%s:%d: a row must be a JSON object", path, line);
        else if (!json_is_number(json_object_get(row, "step")))
            rc = ds_fail(DS_EDATA, "%s:%d: the row has no numeric \"step\"", path, line);
        else if (json_object_get(row, "eval") && !json_is_string(json_object_get(row, "eval")))
            rc = ds_fail(DS_EDATA, "%s:%d: \"eval\" must be a string", path, line);
        if (!rc) json_array_append(json_object_get(row, "eval") ? r->eval_rows : r->train_rows, row);
        json_decref(row);
    }
    free(text);
    free(path);
    return rc;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int rep_list_dir(const char *dir, bool (*keep)(const char *dir, const char *name), char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return ds_open_error(dir, "open the folder");
    size_t cap = 0;
    int rc = DS_OK;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        if (e->d_name[0] == '.' || !keep(dir, e->d_name)) continue;
        rc = ds_grow(names, &cap, (size_t)*n + 1, sizeof **names);
        if (!rc && !((*names)[(*n)++] = ds_strdup(e->d_name))) rc = DS_ENOMEM;
    }
    closedir(d);
    if (*n) qsort(*names, (size_t)*n, sizeof **names, by_name);
    return rc;
}

static bool is_json(const char *dir, const char *name)
{
    size_t len = strlen(name);
    return len > 5 && !strcmp(name + len - 5, ".json");
}

/* eval/NAME.json, sorted by name. */
static int load_evals(rep_run *r)
{
    r->evals = json_array();
    char *dir = ds_path_join(r->dir, "eval");
    if (!ds_is_dir(dir)) {
        free(dir);
        return DS_OK;   /* a run without evaluation sets */
    }
    char **names;
    int n, rc = rep_list_dir(dir, is_json, &names, &n);
    for (int i = 0; i < n; i++) {
        char *path = ds_path_join(dir, names[i]);
        json_t *doc = NULL;
        if (!rc) rc = json_file_load(path, 0, &doc);
        if (!rc && !json_is_object(doc)) rc = ds_fail(DS_EDATA, "%s: must be a JSON object", path);
        if (!rc) {
            names[i][strlen(names[i]) - 5] = '\0';
            json_array_append_new(r->evals, json_pack("{s:s, s:O}", "name", names[i], "doc", doc));
        }
        json_decref(doc);
        free(path);
        free(names[i]);
    }
    free(names);
    free(dir);
    return rc;
}

/* An optional JSON file of the run folder. */
static int load_optional_json(const rep_run *r, const char *name, json_t **out)
{
    char *path = ds_path_join(r->dir, name);
    int rc = ds_exists(path) ? json_file_load(path, 0, out) : DS_OK;
    if (!rc && *out && !json_is_object(*out)) rc = ds_fail(DS_EDATA, "%s: must be a JSON object", path);
    free(path);
    return rc;
}

static int load_optional_text(const rep_run *r, const char *name, char **out)
{
    char *path = ds_path_join(r->dir, name);
    size_t len;
    int rc = ds_exists(path) ? ds_read_file(path, out, &len) : DS_OK;
    free(path);
    return rc;
}

static void keep_tail(char *text, int lines)
{
    size_t len = strlen(text);
    int seen = 0;
    for (size_t i = len; i > 0; i--)
        if (text[i - 1] == '\n' && i != len && ++seen == lines) {
            memmove(text, text + i, len - i + 1);
            return;
        }
}

int rep_run_load(const char *dir, rep_run *r)
{
    memset(r, 0, sizeof *r);
    if (!ds_is_dir(dir)) return ds_fail(DS_ENOINPUT, "%s: no such run folder", dir);
    r->dir = ds_strdup(dir);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    const char *base = dir + n;
    while (base > dir && base[-1] != '/') base--;
    r->label = ds_strdupf("%.*s", (int)(dir + n - base), base);
    if (!r->dir || !r->label) return r->dir ? ds_oom(0, "a run label") : DS_ENOMEM;
    int rc = load_metrics(r);
    if (!rc) rc = load_evals(r);
    if (!rc) rc = load_optional_json(r, "run_info.json", &r->info);
    if (!rc) rc = load_optional_json(r, "clean_report.json", &r->clean);
    if (!rc) rc = load_optional_text(r, "recipe.resolved.yaml", &r->recipe);
    if (!rc) rc = load_optional_text(r, "train.log", &r->log_tail);
    if (!rc && r->log_tail) keep_tail(r->log_tail, LOG_TAIL_LINES);
    return rc;
}

void rep_run_free(rep_run *r)
{
    free(r->dir);
    free(r->label);
    json_decref(r->train_rows);
    json_decref(r->eval_rows);
    json_decref(r->evals);
    json_decref(r->info);
    json_decref(r->clean);
    free(r->recipe);
    free(r->log_tail);
    memset(r, 0, sizeof *r);
}

int rep_label_runs(rep_run *runs, int n)
{
    bool *clash = ds_calloc(n > 0 ? (size_t)n : 1, sizeof *clash, "run labels");
    int rc = clash ? DS_OK : DS_ENOMEM;
    for (int i = 0; clash && i < n; i++)
        for (int j = 0; j < n; j++) clash[i] |= j != i && !strcmp(runs[i].label, runs[j].label);
    for (int i = 0; clash && i < n; i++) {
        if (!clash[i]) continue;
        char *label = ds_strdup(runs[i].dir);   /* the whole path tells them apart */
        if (!label) {
            rc = DS_ENOMEM;
            break;
        }
        free(runs[i].label);
        runs[i].label = label;
    }
    free(clash);
    return rc;
}

int rep_series(const json_t *rows, const char *key, const char *eval_name, double **x, double **y, bool *oom)
{
    size_t cap = json_array_size(rows);
    *x = ds_malloc(sizeof(double) * (cap ? cap : 1), "a metric's values");
    *y = *x ? ds_malloc(sizeof(double) * (cap ? cap : 1), "a metric's values") : NULL;
    int n = 0;
    size_t i;
    json_t *row;
    if (*y)
        json_array_foreach(rows, i, row) {
            if (eval_name && strcmp(json_string_value(json_object_get(row, "eval")), eval_name) != 0) continue;
            json_t *v = json_object_get(row, key);
            if (!v || !(json_is_number(v) || json_is_null(v))) continue;
            (*x)[n] = json_number_value(json_object_get(row, "step"));
            (*y)[n] = json_is_null(v) ? NAN : json_number_value(v);
            n++;
        }
    else *oom = true;
    if (n == 0) {
        free(*x);
        free(*y);
        *x = *y = NULL;
    }
    return n;
}

json_t *rep_numeric_keys(const rep_run *runs, int n)
{
    json_t *keys = json_object();
    for (int r = 0; r < n; r++) {
        size_t i;
        json_t *row;
        json_array_foreach(runs[r].train_rows, i, row) {
            const char *k;
            json_t *v;
            json_object_foreach(row, k, v)
                if (json_is_number(v)) json_object_set_new(keys, k, json_true());
        }
    }
    return keys;
}
