/* finetune/report/page.c - report.html: one self-contained page (inline CSS
 * and SVG; no script, nothing fetched) from one or more run folders. */
#include "report_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;margin:0 auto;"
    "max-width:1320px;padding:12px 24px;background:#fafafa}\n"
    "h1{font-size:22px;margin:8px 0}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;"
    "margin-top:28px}h3{font-size:15px;margin:18px 0 6px}\n"
    ".plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:10px}\n"
    ".plots.small{grid-template-columns:repeat(auto-fill,minmax(440px,1fr))}\n"
    "figure{margin:0;background:#fff;border:1px solid #e2e2e2;border-radius:4px;padding:4px}\n"
    "figure svg{max-width:100%;height:auto;display:block}figcaption{font-size:12px;color:#a33;padding:2px 6px}\n"
    "svg text{font-size:11px;fill:#333}svg text.title{font-size:13px;font-weight:600}"
    "svg text.axis{fill:#555}\n"
    "table{border-collapse:collapse;margin:6px 0;background:#fff}th,td{border:1px solid #ddd;padding:3px 7px;"
    "text-align:left;vertical-align:top;font-size:13px}th{background:#f0f0f0}td.num{text-align:right;"
    "white-space:nowrap}\n"
    "svg.ci{vertical-align:middle;margin-left:4px}span.ci{color:#666}\n"
    "td.q{white-space:pre-wrap;max-width:640px}table.flips td{font-size:12px}\n"
    "span.bar{display:inline-block;height:8px;background:#1f77b4;vertical-align:middle}\n"
    "pre{white-space:pre-wrap;background:#fff;border:1px solid #e2e2e2;padding:8px;font-size:12px;"
    "max-height:520px;overflow:auto}code{font-size:12px;word-break:break-all}\n"
    "p.note{color:#555;font-size:13px}details{margin:4px 0}summary{cursor:pointer}\n";

/* The last training row's value of key, or NaN. */
static double last_value(sbuf *b, const rep_run *r, const char *key)
{
    double *x, *y, v = NAN;
    int k = rep_series(r->train_rows, key, NULL, &x, &y, &b->oom);
    if (k) v = y[k - 1];
    free(x);
    free(y);
    return v;
}

static void summary(sbuf *b, const rep_run *runs, int n)
{
    sb_put(b, "<table class=\"summary\"><tr><th>run</th><th>state</th><th>last step</th><th>epoch</th>"
              "<th>last loss</th><th>elapsed</th><th>evaluation (base &#8594; adapter)</th></tr>\n");
    for (int r = 0; r < n; r++) {
        const rep_run *x = &runs[r];
        char step[32], epoch[32], loss[32], elapsed[32];
        fmt_num(step, sizeof step, last_value(b, x, "step"));
        fmt_num(epoch, sizeof epoch, last_value(b, x, "epoch"));
        fmt_num(loss, sizeof loss, last_value(b, x, "loss"));
        fmt_seconds(elapsed, sizeof elapsed, last_value(b, x, "elapsed_s"));
        const char *state = json_string_value(json_object_get(x->info, "state"));
        sb_put(b, "<tr><td>");
        sb_html(b, x->label);
        sb_put(b, "</td><td>");
        sb_html(b, state ? state : "-");
        sb_printf(b, "</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td>"
                     "<td class=\"num\">%s</td><td>", step, epoch, loss, elapsed);
        size_t i;
        json_t *e;
        json_array_foreach(x->evals, i, e) {
            const json_t *doc = json_object_get(e, "doc");
            const char *key = json_object_get(json_object_get(doc, "after"), "acc") ||
                                      json_object_get(json_object_get(doc, "before"), "acc") ? "acc" : "loss";
            char before[32], after[32];
            fmt_num(before, sizeof before, json_number_value(json_object_get(json_object_get(doc, "before"), key)));
            fmt_num(after, sizeof after, json_number_value(json_object_get(json_object_get(doc, "after"), key)));
            sb_html(b, json_string_value(json_object_get(e, "name")));
            sb_printf(b, " %s %s &#8594; %s<br>", key, before, after);
        }
        sb_put(b, "</td></tr>\n");
    }
    sb_put(b, "</table>\n");
    for (int r = 0; r < n; r++)
        if (runs[r].torn_last_line) {
            sb_put(b, "<p class=\"note\">");
            sb_html(b, runs[r].dir);
            sb_put(b, "/metrics.jsonl ends in an incomplete line (a write cut short); it is left out.</p>\n");
        }
}

static void page(sbuf *b, const rep_run *runs, int n)
{
    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
    sb_put(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>ds-ft report: ");
    for (int r = 0; r < n; r++) {
        if (r) sb_put(b, ", ");
        sb_html(b, runs[r].label);
    }
    sb_printf(b, "</title>\n<style>\n%s</style></head>\n<body>\n<h1>ds-ft training report</h1>\n"
                 "<p class=\"note\">Written %s from %d run folder%s. Sections: "
                 "<a href=\"#curves\">training curves</a>, <a href=\"#accuracy\">evaluation</a>, "
                 "<a href=\"#facts\">run facts</a>.</p>\n",
              CSS, when, n, n == 1 ? "" : "s");
    summary(b, runs, n);
    section_curves(b, runs, n);
    section_accuracy(b, runs, n);
    section_clean(b, runs, n);
    section_facts(b, runs, n);
    sb_put(b, "</body></html>\n");
}

int report_render(const char *const *run_dirs, int n_runs, sbuf *out)
{
    if (n_runs < 1) return ds_fail(DS_EUSAGE, "report: no run folder given");
    rep_run *runs = ds_calloc((size_t)n_runs, sizeof *runs, "run folders");
    if (!runs) return DS_ENOMEM;
    int rc = DS_OK;
    for (int i = 0; !rc && i < n_runs; i++) rc = rep_run_load(run_dirs[i], &runs[i]);
    if (!rc) rc = rep_label_runs(runs, n_runs);
    if (!rc) {
        page(out, runs, n_runs);
        if (out->oom) rc = DS_ENOMEM;   /* the message was set by the append that failed */
    }
    for (int i = 0; i < n_runs; i++) rep_run_free(&runs[i]);
    free(runs);
    return rc;
}

int report_write_html(const char *const *run_dirs, int n_runs, const char *out_path)
{
    sbuf b = {0};
    int rc = report_render(run_dirs, n_runs, &b);
    if (!rc) rc = ds_write_file(out_path, b.buf.p, b.buf.len);
    sb_free(&b);
    return rc;
}
