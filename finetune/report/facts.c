/* finetune/report/facts.c - the run facts (run_info.json: machine, version,
 * fingerprints, wall-clock breakdown), the resolved recipes (and, comparing
 * runs, the keys where they differ), the end of train.log, and the data
 * cleaning report (clean_report.json) when a run has one. */
#include "report_internal.h"

#include "core/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *str_at(const json_t *o, const char *a, const char *b)
{
    const json_t *v = json_object_get(o, a);
    if (b) v = json_object_get(v, b);
    return json_string_value(v);
}

static void cell_text(sbuf *b, const char *s)
{
    sb_put(b, "<td>");
    sb_html(b, s ? s : "-");
    sb_put(b, "</td>");
}

/* A row of the facts table: one cell per run. */
static void fact_row(sbuf *b, const char *name, const rep_run *runs, int n, const char *a, const char *k)
{
    sb_put(b, "<tr><th>");
    sb_html(b, name);
    sb_put(b, "</th>");
    for (int r = 0; r < n; r++) cell_text(b, str_at(runs[r].info, a, k));
    sb_put(b, "</tr>\n");
}

static void fingerprint_cell(sbuf *b, const json_t *fp)
{
    sb_put(b, "<td>");
    if (!json_is_object(fp)) {
        sb_put(b, "-</td>");
        return;
    }
    sb_html(b, str_at(fp, "path", NULL) ? str_at(fp, "path", NULL) : "");
    sb_put(b, "<br><code>");
    sb_html(b, str_at(fp, "sha256", NULL) ? str_at(fp, "sha256", NULL) : "");
    sb_put(b, "</code><details><summary>what is hashed</summary><ul>");
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(fp, "files"), i, f) {
        char bytes[32];
        fmt_num(bytes, sizeof bytes, json_number_value(json_object_get(f, "bytes")));
        sb_put(b, "<li>");
        sb_html(b, str_at(f, "name", NULL) ? str_at(f, "name", NULL) : "?");
        sb_printf(b, " (%s bytes): ", bytes);
        sb_html(b, str_at(f, "hashed", NULL) ? str_at(f, "hashed", NULL) : "");
        if (str_at(f, "sha256", NULL)) {
            sb_put(b, " <code>");
            sb_html(b, str_at(f, "sha256", NULL));
            sb_put(b, "</code>");
        }
        sb_put(b, "</li>");
    }
    sb_put(b, "</ul></details></td>");
}

static void machine_cell(sbuf *b, const json_t *info)
{
    const json_t *m = json_object_get(info, "machine");
    if (!json_is_object(m)) {
        sb_put(b, "<td>-</td>");
        return;
    }
    char mem[32];
    fmt_num(mem, sizeof mem, json_number_value(json_object_get(m, "memory_bytes")) / (1024.0 * 1024 * 1024));
    sb_put(b, "<td>");
    sb_html(b, str_at(m, "cpu", NULL) ? str_at(m, "cpu", NULL) : "?");
    sb_printf(b, ", %lld cores, %s GiB memory<br>", (long long)json_integer_value(json_object_get(m, "cores")), mem);
    sb_html(b, str_at(m, "os", NULL) ? str_at(m, "os", NULL) : "");
    sb_put(b, ", host ");
    sb_html(b, str_at(m, "host", NULL) ? str_at(m, "host", NULL) : "?");
    sb_put(b, "</td>");
}

static void data_cell(sbuf *b, const json_t *info)
{
    const json_t *d = json_object_get(info, "data");
    sb_put(b, "<td>");
    if (!json_array_size(d)) sb_put(b, "-");
    size_t i;
    json_t *f;
    json_array_foreach(d, i, f) {
        char bytes[32];
        fmt_num(bytes, sizeof bytes, json_number_value(json_object_get(f, "bytes")));
        sb_html(b, str_at(f, "role", NULL) ? str_at(f, "role", NULL) : "");
        sb_put(b, ": ");
        sb_html(b, str_at(f, "path", NULL) ? str_at(f, "path", NULL) : "");
        sb_printf(b, " (%s bytes)<br><code>", bytes);
        sb_html(b, str_at(f, "sha256", NULL) ? str_at(f, "sha256", NULL) : "");
        sb_put(b, "</code><br>");
    }
    sb_put(b, "</td>");
}

/* Phases in first-seen order over the runs; seconds and share of each run's total. */
static void phases_table(sbuf *b, const rep_run *runs, int n)
{
    json_t *names = json_object();   /* an ordered set */
    for (int r = 0; r < n; r++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(runs[r].info, "phases"), k, v) json_object_set_new(names, k, json_true());
    }
    json_object_set_new(names, "total", json_true());   /* the last row */
    if (json_object_size(names) > 1) {
        sb_put(b, "<h3>Where the wall-clock time went</h3>\n<table class=\"phases\"><tr><th>phase</th>");
        for (int r = 0; r < n; r++) {
            sb_put(b, "<th colspan=\"2\">");
            sb_html(b, n > 1 ? runs[r].label : "time");
            sb_put(b, "</th>");
        }
        sb_put(b, "</tr>\n");
        double *total = ds_calloc(n > 0 ? (size_t)n : 1, sizeof *total, "phase totals");
        b->oom |= !total;
        for (int r = 0; total && r < n; r++) {
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(runs[r].info, "phases"), k, v) total[r] += json_number_value(v);
        }
        const char *name;
        json_t *nm;
        json_object_foreach(names, name, nm) {
            bool sum = !strcmp(name, "total");
            if (!total) break;
            sb_put(b, sum ? "<tr class=\"total\"><th>" : "<tr><th>");
            sb_html(b, name);
            sb_put(b, "</th>");
            for (int r = 0; r < n; r++) {
                json_t *v = json_object_get(json_object_get(runs[r].info, "phases"), name);
                double s = sum ? total[r] : json_number_value(v), share = total[r] > 0 ? s / total[r] : 0;
                char t[32];
                fmt_seconds(t, sizeof t, s);
                if (!sum && !v) sb_put(b, "<td>-</td><td></td>");
                else sb_printf(b, "<td class=\"num\">%s</td><td><span class=\"bar\" style=\"width:%.0fpx\"></span> "
                                  "%.0f%%</td>", t, 100 * share, 100 * share);
            }
            sb_put(b, "</tr>\n");
        }
        free(total);
        sb_put(b, "</table>\n<p class=\"note\">Phases of all the sessions of a run (a resumed run adds to them). "
                  "train includes the steps only; checkpoints and evaluations during training are their own rows.</p>\n");
    }
    json_decref(names);
}

/* recipe.resolved.yaml as {"section.key": "value", "data.datasets[0].path": ...}:
 * a stack of the open sections and list items, by indentation. */
static json_t *recipe_keys(const char *yaml)
{
    enum { DEPTH = 8, NAME = 256 };
    int indents[DEPTH], items[DEPTH], depth = 0;
    char prefix[DEPTH][NAME];
    json_t *out = json_object();
    for (const char *p = yaml; p && *p;) {
        const char *nl = strchr(p, '\n'), *end = nl ? nl : p + strlen(p);
        int indent = 0;
        while (p + indent < end && p[indent] == ' ') indent++;
        const char *s = p + indent;
        p = nl ? nl + 1 : end;
        if (s == end || *s == '#') continue;
        while (depth > 0 && indents[depth - 1] >= indent) depth--;
        if (s[0] == '-' && end - s > 1 && s[1] == ' ' && depth > 0 && depth < DEPTH) {   /* a list item */
            char item[NAME];
            snprintf(item, NAME, "%.*s[%d]", NAME - 16, prefix[depth - 1], items[depth - 1]++);
            memcpy(prefix[depth], item, NAME);
            indents[depth] = indent + 1;
            items[depth++] = 0;
            s += 2;
        }
        const char *colon = memchr(s, ':', (size_t)(end - s));
        if (!colon) continue;
        char key[NAME];
        snprintf(key, NAME, "%.*s%s%.*s", depth ? NAME / 2 : 0, depth ? prefix[depth - 1] : "", depth ? "." : "",
                 (int)(colon - s) < NAME / 2 ? (int)(colon - s) : NAME / 2, s);
        const char *v = colon + 1;
        while (v < end && *v == ' ') v++;
        if (v < end) json_object_set_new(out, key, json_stringn(v, (size_t)(end - v)));
        else if (depth < DEPTH) {   /* a section or a list: the lines below belong to it */
            memcpy(prefix[depth], key, NAME);
            indents[depth] = indent;
            items[depth++] = 0;
        }
    }
    json_object_del(out, "output_dir");
    return out;
}

static void recipe_differences(sbuf *b, const rep_run *runs, int n)
{
    json_t **keys = ds_calloc(n > 0 ? (size_t)n : 1, sizeof *keys, "recipe keys"), *all = json_object();
    b->oom |= !keys;
    for (int r = 0; keys && r < n; r++) {
        keys[r] = recipe_keys(runs[r].recipe);
        json_object_update_missing(all, keys[r]);
    }
    int rows = 0;
    const char *k;
    json_t *v;
    json_object_foreach(all, k, v) {
        bool differ = false;
        for (int r = 1; keys && r < n; r++) differ |= !json_equal(json_object_get(keys[r], k), json_object_get(keys[0], k));
        if (!differ) continue;
        if (!rows++) {
            sb_put(b, "<h3>Recipe differences</h3>\n<table><tr><th>key</th>");
            for (int r = 0; r < n; r++) {
                sb_put(b, "<th>");
                sb_html(b, runs[r].label);
                sb_put(b, "</th>");
            }
            sb_put(b, "</tr>\n");
        }
        sb_put(b, "<tr><th>");
        sb_html(b, k);
        sb_put(b, "</th>");
        for (int r = 0; r < n; r++) cell_text(b, json_string_value(json_object_get(keys[r], k)));
        sb_put(b, "</tr>\n");
    }
    if (rows) sb_put(b, "</table>\n");
    else if (n > 1) sb_put(b, "<p>The resolved recipes have the same keys and values (output_dir aside).</p>\n");
    for (int r = 0; keys && r < n; r++) json_decref(keys[r]);
    free(keys);
    json_decref(all);
}

void section_facts(sbuf *b, const rep_run *runs, int n)
{
    sb_put(b, "<section id=\"facts\"><h2>Run facts</h2>\n<table class=\"facts\">\n<tr><th>run</th>");
    for (int r = 0; r < n; r++) cell_text(b, runs[r].dir);
    sb_put(b, "</tr>\n");
    fact_row(b, "state", runs, n, "state", NULL);
    fact_row(b, "started (UTC)", runs, n, "started", NULL);
    fact_row(b, "updated (UTC)", runs, n, "updated", NULL);
    fact_row(b, "ds-ft", runs, n, "ds_ft", "version");
    fact_row(b, "build", runs, n, "ds_ft", "build");
    sb_put(b, "<tr><th>machine</th>");
    for (int r = 0; r < n; r++) machine_cell(b, runs[r].info);
    sb_put(b, "</tr>\n");
    fact_row(b, "device", runs, n, "device", "name");
    sb_put(b, "<tr><th>model</th>");
    for (int r = 0; r < n; r++) fingerprint_cell(b, json_object_get(runs[r].info, "model"));
    sb_put(b, "</tr>\n<tr><th>tokenizer</th>");
    for (int r = 0; r < n; r++) {
        const json_t *t = json_object_get(runs[r].info, "tokenizer");
        if (t) fingerprint_cell(b, t);
        else cell_text(b, runs[r].info ? "the model folder's" : NULL);
    }
    sb_put(b, "</tr>\n<tr><th>data</th>");
    for (int r = 0; r < n; r++) data_cell(b, runs[r].info);
    sb_put(b, "</tr>\n</table>\n");
    for (int r = 0; r < n; r++)
        if (!runs[r].info) {
            sb_put(b, "<p class=\"note\">");
            sb_html(b, runs[r].label);
            sb_put(b, " has no run_info.json (made by an older ds-ft, or it stopped before its first checkpoint).</p>\n");
        }
    phases_table(b, runs, n);
    if (n > 1) recipe_differences(b, runs, n);
    for (int r = 0; r < n; r++) {
        const char *what[2] = {"Resolved recipe", "End of train.log"};
        const char *text[2] = {runs[r].recipe, runs[r].log_tail};
        for (int w = 0; w < 2; w++) {
            if (!text[w]) continue;
            sb_printf(b, "<details><summary>%s", what[w]);
            if (n > 1) {
                sb_put(b, " of ");
                sb_html(b, runs[r].label);
            }
            sb_put(b, "</summary><pre>");
            sb_html(b, text[w]);
            sb_put(b, "</pre></details>\n");
        }
    }
    sb_put(b, "</section>\n");
}

/* ------------------------------------------------------------ clean_report.json */

/* Numbers at any depth as "a.b.c" rows; the numbers of an object that has
 * two or more (the records per rule, say) as a bar chart. */
static void clean_walk(sbuf *table, sbuf *bars, const json_t *v, const char *path, int *rows)
{
    const char *k;
    json_t *c;
    if (json_is_object(v)) {
        int numbers = 0;
        double most = 0;
        json_object_foreach((json_t *)v, k, c) {
            numbers += json_is_number(c);
            if (json_is_number(c)) most = fmax(most, fabs(json_number_value(c)));
        }
        if (numbers >= 2) {
            double H = 16.0 * numbers + 28;
            sb_printf(bars, "<figure class=\"plot small\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 440 %.0f\" "
                            "width=\"440\" height=\"%.0f\" role=\"img\"><text x=\"10\" y=\"16\" class=\"title\">", H, H);
            sb_html(bars, *path ? path : "counts");
            sb_put(bars, "</text>\n");
            int i = 0;
            json_object_foreach((json_t *)v, k, c) {
                if (!json_is_number(c)) continue;
                double x = json_number_value(c), w = most > 0 ? fabs(x) / most * 200 : 0;
                char num[32];
                fmt_num(num, sizeof num, x);
                sb_printf(bars, "<text x=\"170\" y=\"%.1f\" text-anchor=\"end\">", 38.0 + 16 * i);
                sb_html(bars, k);
                sb_printf(bars, "</text><rect x=\"176\" y=\"%.1f\" width=\"%.1f\" height=\"11\" fill=\"#1f77b4\"/>"
                                "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          28.0 + 16 * i, w, 180 + w, 38.0 + 16 * i, num);
                i++;
            }
            sb_put(bars, "</svg></figure>\n");
        }
        json_object_foreach((json_t *)v, k, c) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
            clean_walk(table, bars, c, sub, rows);
        }
    } else if (json_is_array(v)) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s (entries)", path);
        sb_put(table, "<tr><th>");
        sb_html(table, sub);
        sb_printf(table, "</th><td class=\"num\">%zu</td></tr>\n", json_array_size(v));
        (*rows)++;
    } else if (json_is_number(v) && *rows < 400) {
        char num[32];
        fmt_num(num, sizeof num, json_number_value(v));
        sb_put(table, "<tr><th>");
        sb_html(table, path);
        sb_printf(table, "</th><td class=\"num\">%s</td></tr>\n", num);
        (*rows)++;
    }
}

static const char *str_or(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The contamination examples (training record, eval item, shared words) of
 * each cleaned dataset: a run's clean_report.json has them per dataset under
 * "datasets", ds-ft clean's report at its top. */
static void clean_examples(sbuf *b, const json_t *clean)
{
    const json_t *sets = json_object_get(clean, "datasets");
    json_t *one = json_object();
    if (!json_is_object(sets) && one && !json_object_set(one, "", (json_t *)clean)) sets = one;
    const char *name;
    json_t *rep;
    json_object_foreach((json_t *)sets, name, rep) {
        const json_t *ex = json_object_get(json_object_get(rep, "contamination"), "examples");
        if (!json_array_size(ex)) continue;
        sb_put(b, "<p>Training records that share words with evaluation items");
        if (*name) {
            sb_put(b, " (");
            sb_html(b, name);
            sb_put(b, ")");
        }
        sb_put(b, ":</p>\n<ul>");
        size_t i;
        const json_t *e;
        json_array_foreach(ex, i, e) {
            sb_put(b, "<li>");
            sb_html(b, str_or(e, "at"));
            sb_put(b, " matches ");
            sb_html(b, str_or(e, "eval_item"));
            sb_put(b, ": <q>");
            sb_html(b, str_or(e, "ngram"));
            sb_put(b, "</q></li>\n");
        }
        sb_put(b, "</ul>\n");
    }
    json_decref(one);
}

void section_clean(sbuf *b, const rep_run *runs, int n)
{
    bool any = false;
    for (int r = 0; r < n; r++) any |= runs[r].clean != NULL;
    if (!any) return;
    sb_put(b, "<section id=\"clean\"><h2>Data cleaning</h2>\n");
    for (int r = 0; r < n; r++) {
        if (!runs[r].clean) continue;
        sbuf table = {0}, bars = {0};
        int rows = 0;
        clean_walk(&table, &bars, runs[r].clean, "", &rows);
        sb_put(b, "<p>clean_report.json");
        if (n > 1) {
            sb_put(b, " of ");
            sb_html(b, runs[r].label);
        }
        sb_put(b, ":</p>\n<div class=\"plots\">");
        if (bars.buf.p) sb_put(b, bars.buf.p);
        sb_put(b, "</div>\n");
        clean_examples(b, runs[r].clean);
        sb_put(b, "<details><summary>every count</summary><table>");
        if (table.buf.p) sb_put(b, table.buf.p);
        sb_put(b, "</table></details>\n");
        b->oom |= table.oom || bars.oom;
        sb_free(&table);
        sb_free(&bars);
    }
    sb_put(b, "</section>\n");
}
