/* finetune/report/accuracy.c - domain accuracy before and after training,
 * from eval/NAME.json: acc and acc_norm with 95% Wilson intervals, n, the
 * chance level (1 / number of choices of each question), and the questions
 * whose answer flipped between the base model and the adapter. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QUESTION_CHARS 600   /* longer prompts are cut (with an ellipsis) in the flip tables */
#define FLIPS_SHOWN 300      /* questions listed per table; eval/NAME.json has them all */

void wilson95(long k, long n, double *lo, double *hi)
{
    if (n <= 0) {
        *lo = 0;
        *hi = 1;
        return;
    }
    const double z = 1.959963984540054;
    double p = (double)k / (double)n, z2n = z * z / (double)n;
    double center = (p + z2n / 2) / (1 + z2n);
    double half = z / (1 + z2n) * sqrt(p * (1 - p) / (double)n + z2n / (4.0 * (double)n));
    *lo = fmax(0, center - half);
    *hi = fmin(1, center + half);
}

/* Right answers among the samples under pred key `pred` ("pred_before"...),
 * or -1 when the samples do not have it. */
static long count_right(const json_t *samples, const char *pred, long *n)
{
    long k = 0;
    *n = 0;
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s) {
        json_t *p = json_object_get(s, pred), *a = json_object_get(s, "answer");
        if (!json_is_integer(p) || !json_is_integer(a)) return -1;
        k += json_integer_value(p) == json_integer_value(a);
        (*n)++;
    }
    return *n ? k : -1;
}

/* Mean of 1/choices over the samples; lo_c and hi_c get the fewest and most choices. */
static double chance(const json_t *samples, int *lo_c, int *hi_c)
{
    double sum = 0;
    long n = 0;
    *lo_c = 1 << 30;
    *hi_c = 0;
    size_t i;
    json_t *s;
    json_array_foreach(samples, i, s) {
        json_t *ll = json_object_get(s, "loglik_after");
        if (!json_is_array(ll)) ll = json_object_get(s, "loglik_before");
        int c = (int)json_array_size(ll);
        if (c <= 0) continue;
        sum += 1.0 / c;
        n++;
        *lo_c = c < *lo_c ? c : *lo_c;
        *hi_c = c > *hi_c ? c : *hi_c;
    }
    return n ? sum / (double)n : NAN;
}

/* The interval as a small bar on [0, 1] with the chance level marked. */
static void ci_bar(sbuf *b, double p, double lo, double hi, double chance_level)
{
    const double W = 160, x0 = 4, w = W - 8;
    sb_printf(b, "<svg class=\"ci\" viewBox=\"0 0 %.0f 14\" width=\"%.0f\" height=\"14\">"
                 "<line x1=\"%.1f\" y1=\"7\" x2=\"%.1f\" y2=\"7\" stroke=\"#ddd\"/>",
              W, W, x0, x0 + w);
    if (isfinite(chance_level))
        sb_printf(b, "<line x1=\"%.1f\" y1=\"1\" x2=\"%.1f\" y2=\"13\" stroke=\"#d62728\"/>", x0 + chance_level * w,
                  x0 + chance_level * w);
    sb_printf(b, "<line x1=\"%.1f\" y1=\"7\" x2=\"%.1f\" y2=\"7\" stroke=\"#1f77b4\" stroke-width=\"3\"/>"
                 "<circle cx=\"%.1f\" cy=\"7\" r=\"3\" fill=\"#1f77b4\"/></svg>",
              x0 + lo * w, x0 + hi * w, x0 + p * w);
}

/* One cell: "0.4531 [0.33, 0.58]" and its bar. */
static void acc_cell(sbuf *b, const json_t *scores, const char *key, const json_t *samples, const char *pred,
                     double chance_level)
{
    json_t *v = json_object_get(scores, key);
    json_t *nj = json_object_get(scores, "n");
    if (!json_is_number(v) || !json_is_integer(nj)) {
        sb_put(b, "<td>-</td>");
        return;
    }
    long n = (long)json_integer_value(nj), ns, k = count_right(samples, pred, &ns);
    if (k < 0 || ns != n) k = lround(json_number_value(v) * (double)n);   /* no per-sample predictions */
    double lo, hi, p = n > 0 ? (double)k / (double)n : 0;
    wilson95(k, n, &lo, &hi);
    sb_printf(b, "<td class=\"num\">%.4f <span class=\"ci\">[%.3f, %.3f]</span> ", p, lo, hi);
    ci_bar(b, p, lo, hi, chance_level);
    sb_put(b, "</td>");
}

static void mcq_rows(sbuf *b, const rep_run *run, const json_t *doc, int nruns)
{
    const json_t *samples = json_object_get(doc, "samples");
    int lo_c, hi_c;
    double ch = chance(samples, &lo_c, &hi_c);
    const char *which[2] = {"before", "after"}, *model[2] = {"base", "adapter"};
    for (int w = 0; w < 2; w++) {
        json_t *scores = json_object_get(doc, which[w]);
        if (!json_is_object(scores)) continue;
        char pred[32], pred_norm[32];
        snprintf(pred, sizeof pred, "pred_%s", which[w]);
        snprintf(pred_norm, sizeof pred_norm, "pred_norm_%s", which[w]);
        sb_put(b, "<tr>");
        if (nruns > 1) {
            sb_put(b, "<td>");
            sb_html(b, run->label);
            sb_put(b, "</td>");
        }
        sb_printf(b, "<td>%s</td>", model[w]);
        acc_cell(b, scores, "acc", samples, pred, ch);
        acc_cell(b, scores, "acc_norm", samples, pred_norm, ch);
        json_t *n = json_object_get(scores, "n");
        sb_printf(b, "<td class=\"num\">%lld</td>", json_is_integer(n) ? (long long)json_integer_value(n) : 0LL);
        if (!isfinite(ch)) sb_put(b, "<td>-</td>");
        else if (lo_c == hi_c) sb_printf(b, "<td class=\"num\">%.3f (%d choices)</td>", ch, lo_c);
        else sb_printf(b, "<td class=\"num\">%.3f (%d-%d choices)</td>", ch, lo_c, hi_c);
        sb_put(b, "</tr>\n");
    }
}

static void loss_rows(sbuf *b, const rep_run *run, const json_t *doc, int nruns)
{
    const char *which[2] = {"before", "after"}, *model[2] = {"base", "adapter"};
    for (int w = 0; w < 2; w++) {
        json_t *s = json_object_get(doc, which[w]);
        if (!json_is_object(s)) continue;
        char loss[32], ppl[32];
        fmt_num(loss, sizeof loss, json_number_value(json_object_get(s, "loss")));
        fmt_num(ppl, sizeof ppl, json_number_value(json_object_get(s, "perplexity")));
        sb_put(b, "<tr>");
        if (nruns > 1) {
            sb_put(b, "<td>");
            sb_html(b, run->label);
            sb_put(b, "</td>");
        }
        sb_printf(b, "<td>%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td class=\"num\">%lld</td>"
                     "<td class=\"num\">%lld</td></tr>\n",
                  model[w], loss, ppl, (long long)json_integer_value(json_object_get(s, "tokens")),
                  (long long)json_integer_value(json_object_get(s, "n")));
    }
}

/* Choice c of a sample: its text when stored, else its letter. */
static void choice_text(sbuf *b, const json_t *sample, json_int_t c)
{
    const char *text = json_string_value(json_array_get(json_object_get(sample, "choices"), (size_t)c));
    if (c >= 0 && c < 26) sb_printf(b, "%c", (char)('A' + c));
    else sb_printf(b, "#%lld", (long long)c);
    if (text) {
        sb_put(b, ": ");
        sb_html(b, text);
    }
}

/* The questions whose prediction under `pred` flipped one way. */
static void flip_table(sbuf *b, const json_t *samples, const char *pred, bool to_right, const char *metric)
{
    char before[32], after[32];
    snprintf(before, sizeof before, "%s_before", pred);
    snprintf(after, sizeof after, "%s_after", pred);
    long count = 0, shown = 0;
    size_t i;
    json_t *s;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            sb_printf(b, "<details%s><summary>%s: %ld question%s %s</summary>\n", count && count <= 10 ? " open" : "",
                      metric, count, count == 1 ? "" : "s", to_right ? "wrong &#8594; right" : "right &#8594; wrong");
            if (!count) {
                sb_put(b, "</details>\n");
                return;
            }
            sb_put(b, "<table class=\"flips\"><tr><th>#</th><th>question</th><th>right answer</th>"
                      "<th>base picked</th><th>adapter picked</th></tr>\n");
        }
        json_array_foreach(samples, i, s) {
            json_t *pb = json_object_get(s, before), *pa = json_object_get(s, after), *a = json_object_get(s, "answer");
            if (!json_is_integer(pb) || !json_is_integer(pa) || !json_is_integer(a)) continue;
            bool was = json_integer_value(pb) == json_integer_value(a), is = json_integer_value(pa) == json_integer_value(a);
            if (was == is || is != to_right) continue;
            if (pass == 0) {
                count++;
                continue;
            }
            if (shown++ == FLIPS_SHOWN) {
                sb_printf(b, "<tr><td colspan=\"5\">and %ld more (the eval file has them all)</td></tr>\n",
                          count - FLIPS_SHOWN);
                break;
            }
            json_t *idx = json_object_get(s, "index");
            const char *q = json_string_value(json_object_get(s, "prompt"));
            sb_printf(b, "<tr><td class=\"num\">%lld</td><td class=\"q\">",
                      json_is_integer(idx) ? (long long)json_integer_value(idx) : (long long)i);
            if (!q) sb_put(b, "<i>(the eval file does not store the question text)</i>");
            else if (strlen(q) <= QUESTION_CHARS) sb_html(b, q);
            else {
                size_t cut = QUESTION_CHARS;
                while (cut > 0 && ((unsigned char)q[cut] & 0xC0) == 0x80) cut--;   /* not inside a character */
                sb_htmln(b, q, cut);
                sb_put(b, "&#8230;");
            }
            sb_put(b, "</td><td>");
            choice_text(b, s, json_integer_value(a));
            sb_put(b, "</td><td>");
            choice_text(b, s, json_integer_value(pb));
            sb_put(b, "</td><td>");
            choice_text(b, s, json_integer_value(pa));
            sb_put(b, "</td></tr>\n");
        }
    }
    sb_put(b, "</table></details>\n");
}

static void flips(sbuf *b, const rep_run *run, const json_t *doc, int nruns)
{
    const json_t *samples = json_object_get(doc, "samples");
    if (!json_is_object(json_object_get(doc, "before")) || !json_is_object(json_object_get(doc, "after")) ||
        !json_array_size(samples))
        return;
    sb_put(b, "<div class=\"flipset\"><p>Questions that changed");
    if (nruns > 1) {
        sb_put(b, " in ");
        sb_html(b, run->label);
    }
    sb_put(b, " (base model &#8594; adapter):</p>\n");
    flip_table(b, samples, "pred", true, "acc");
    flip_table(b, samples, "pred", false, "acc");
    flip_table(b, samples, "pred_norm", true, "acc_norm");
    flip_table(b, samples, "pred_norm", false, "acc_norm");
    sb_put(b, "</div>\n");
}

void section_accuracy(sbuf *b, const rep_run *runs, int n)
{
    json_t *names = json_object();   /* every run's evaluation sets, an ordered set */
    for (int r = 0; r < n; r++) {
        size_t i;
        json_t *e;
        json_array_foreach(runs[r].evals, i, e) json_object_set_new(names, json_string_value(json_object_get(e, "name")), json_true());
    }
    if (!json_object_size(names)) {
        json_decref(names);
        return;
    }
    sb_put(b, "<section id=\"accuracy\"><h2>Evaluation before and after training</h2>\n"
              "<p class=\"note\">acc picks the choice with the highest log-likelihood, acc_norm the highest per "
              "character (as lm-evaluation-harness). Brackets: 95% Wilson score interval; the bar spans [0, 1] and "
              "its red tick is the chance level.</p>\n");
    const char *name;
    json_t *nm;
    json_object_foreach(names, name, nm) {
        const json_t *first = NULL;
        for (int r = 0; r < n && !first; r++) {
            size_t j;
            json_t *e;
            json_array_foreach(runs[r].evals, j, e)
                if (!strcmp(json_string_value(json_object_get(e, "name")), name)) first = json_object_get(e, "doc");
        }
        const char *type = json_string_value(json_object_get(first, "type"));
        bool mcq = type && !strcmp(type, "mcq");
        sb_put(b, "<h3>");
        sb_html(b, name);
        sb_put(b, "</h3>\n<p class=\"note\">");
        const char *ds = json_string_value(json_object_get(first, "dataset"));
        sb_html(b, ds ? ds : "");
        sb_put(b, mcq ? " (multiple choice)</p>\n" : " (held-out loss)</p>\n<table>");
        if (mcq) sb_printf(b, "<table><tr>%s<th>model</th><th>acc</th><th>acc_norm</th><th>n</th><th>chance</th></tr>\n",
                           n > 1 ? "<th>run</th>" : "");
        else sb_printf(b, "<tr>%s<th>model</th><th>loss</th><th>perplexity</th><th>tokens</th><th>n</th></tr>\n",
                       n > 1 ? "<th>run</th>" : "");
        for (int r = 0; r < n; r++) {
            size_t j;
            json_t *e;
            json_array_foreach(runs[r].evals, j, e) {
                if (strcmp(json_string_value(json_object_get(e, "name")), name) != 0) continue;
                if (mcq) mcq_rows(b, &runs[r], json_object_get(e, "doc"), n);
                else loss_rows(b, &runs[r], json_object_get(e, "doc"), n);
            }
        }
        sb_put(b, "</table>\n");
        for (int r = 0; mcq && r < n; r++) {
            size_t j;
            json_t *e;
            json_array_foreach(runs[r].evals, j, e)
                if (!strcmp(json_string_value(json_object_get(e, "name")), name)) flips(b, &runs[r], json_object_get(e, "doc"), n);
        }
    }
    json_decref(names);
    sb_put(b, "</section>\n");
}
