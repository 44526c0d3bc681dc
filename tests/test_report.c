/* The HTML training report: report.html parsed back (well-formed, escaped,
 * every plot with as many points as the metrics rows give, no NaN or Inf in
 * any SVG attribute), runs compared on the same axes, the accuracy table's
 * Wilson intervals against published values, the run folder's errors, the
 * TensorBoard file's framing (CRC-32C against RFC 3720's vectors) and the
 * data fingerprint against sha256sum. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "core/utf8.h"
#include "finetune/report/report_internal.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ an HTML reader */

typedef struct {
    char label[256];
    int points, skipped;       /* data-points, data-skipped */
    int path_points, circles;  /* what the SVG draws */
} series_seen;

typedef struct {
    series_seen s[256];
    int n;
    int svgs;
} page_seen;

static bool is_void(const char *name)
{
    static const char *const v[] = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", NULL};
    for (int i = 0; v[i]; i++)
        if (!strcmp(v[i], name)) return true;
    return false;
}

/* Text and attribute values: '&' only as &amp; &lt; &gt; &quot; &#39; &#N;, never '<'. */
static void check_text(const char *s, size_t n, const char *where)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_neq(s[i], '<', "a raw '<' in %s: %.60s", where, s + i);
        if (s[i] != '&') continue;
        static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;", NULL};
        bool ok = false;
        for (int k = 0; ents[k]; k++) ok |= !strncmp(s + i, ents[k], strlen(ents[k]));
        if (!ok && s[i + 1] == '#') {
            size_t j = i + 2;
            while (j < n && isdigit((unsigned char)s[j])) j++;
            ok = j > i + 2 && j < n && s[j] == ';';
        }
        cr_assert(ok, "an unescaped '&' in %s: %.60s", where, s + i);
    }
}

static const char *const NUMERIC_ATTRS[] = {"d", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r",
                                            "width", "height", "viewBox", "transform", NULL};

static void check_numeric_attr(const char *name, const char *v, size_t n)
{
    for (int i = 0; NUMERIC_ATTRS[i]; i++) {
        if (strcmp(NUMERIC_ATTRS[i], name) != 0) continue;
        char low[4096];
        size_t m = n < sizeof low - 1 ? n : sizeof low - 1;
        for (size_t k = 0; k < m; k++) low[k] = (char)tolower((unsigned char)v[k]);
        low[m] = '\0';
        cr_assert(!strstr(low, "nan") && !strstr(low, "inf"), "%s=\"%.80s\" holds a non-finite number", name, v);
        for (const char *p = low; *p;) {   /* every number in it parses as a finite one */
            if (isdigit((unsigned char)*p) || *p == '-' || *p == '.') {
                char *end;
                double x = strtod(p, &end);
                cr_assert(isfinite(x) && end > p, "%s holds '%.20s'", name, p);
                p = end;
            } else p++;
        }
    }
}

/* The number of points of a path's d: one per M or L command. */
static int path_points(const char *d, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) k += d[i] == 'M' || d[i] == 'L';
    return k;
}

/* Parse the whole page; fail the test on anything not well-formed. */
static void read_page(const char *html, page_seen *pg)
{
    memset(pg, 0, sizeof *pg);
    size_t len = strlen(html);
    cr_assert_eq(ds_utf8_valid(html, len), len, "the page is not UTF-8");
    cr_assert(!strncmp(html, "<!DOCTYPE html>", 15), "no doctype");
    char stack[64][32];
    int depth = 0;
    series_seen *open_series = NULL;
    int series_depth = -1;
    const char *p = html + 15;
    while (*p) {
        if (*p != '<') {
            const char *lt = strchr(p, '<');
            size_t n = lt ? (size_t)(lt - p) : strlen(p);
            check_text(p, n, depth ? stack[depth - 1] : "the document");
            p += n;
            continue;
        }
        if (p[1] == '/') {   /* an end tag closes the innermost element */
            const char *gt = strchr(p, '>');
            cr_assert(gt, "an end tag without '>'");
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)(gt - p - 2), p + 2);
            cr_assert(depth > 0 && !strcmp(stack[depth - 1], name), "</%s> closes <%s>", name,
                      depth ? stack[depth - 1] : "nothing");
            depth--;
            if (depth == series_depth) open_series = NULL, series_depth = -1;
            p = gt + 1;
            continue;
        }
        const char *q = p + 1;   /* a start tag: name, then name="value" attributes */
        char name[32];
        size_t nl = strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
        cr_assert(nl > 0 && nl < sizeof name, "a '<' that starts no tag: %.40s", p);
        snprintf(name, sizeof name, "%.*s", (int)nl, q);
        q += nl;
        char cls[64] = "", label[256] = "";
        int points = -1, skipped = -1;
        for (;;) {
            q += strspn(q, " \n");
            if (*q == '>' || (q[0] == '/' && q[1] == '>')) break;
            size_t an = strcspn(q, "= >");
            char attr[32];
            cr_assert(an > 0 && an < sizeof attr, "bad attribute in <%s>: %.40s", name, q);
            if (q[an] != '=') {   /* a boolean attribute (<details open>) */
                q += an;
                continue;
            }
            cr_assert(q[an + 1] == '"', "an unquoted attribute value in <%s>: %.40s", name, q);
            snprintf(attr, sizeof attr, "%.*s", (int)an, q);
            const char *v = q + an + 2, *end = strchr(v, '"');
            cr_assert(end, "an attribute value without its closing quote");
            check_text(v, (size_t)(end - v), attr);
            check_numeric_attr(attr, v, (size_t)(end - v));
            if (!strcmp(attr, "class")) snprintf(cls, sizeof cls, "%.*s", (int)(end - v), v);
            if (!strcmp(attr, "data-label")) snprintf(label, sizeof label, "%.*s", (int)(end - v), v);
            if (!strcmp(attr, "data-points")) points = atoi(v);
            if (!strcmp(attr, "data-skipped")) skipped = atoi(v);
            if (!strcmp(attr, "d") && open_series) open_series->path_points += path_points(v, (size_t)(end - v));
            q = end + 1;
        }
        bool self_closing = *q == '/';
        p = q + (self_closing ? 2 : 1);
        if (!strcmp(name, "svg")) pg->svgs++;
        if (!strcmp(name, "circle") && open_series) open_series->circles++;
        if (!strcmp(name, "style") || !strcmp(name, "script")) {   /* raw text up to its end tag */
            cr_assert(!strcmp(name, "style"), "the page holds a <script>");
            const char *end = strstr(p, "</style>");
            cr_assert(end);
            p = end + 8;
            continue;
        }
        if (self_closing || is_void(name)) continue;
        cr_assert(depth < 64);
        snprintf(stack[depth++], sizeof stack[0], "%s", name);
        if (!strcmp(name, "g") && !strcmp(cls, "series")) {
            cr_assert(pg->n < 256 && points >= 0 && skipped >= 0);
            open_series = &pg->s[pg->n++];
            snprintf(open_series->label, sizeof open_series->label, "%s", label);
            open_series->points = points;
            open_series->skipped = skipped;
            series_depth = depth - 1;
        }
    }
    cr_assert_eq(depth, 0, "%d element(s) left open, the innermost <%s>", depth, depth ? stack[depth - 1] : "");
}

static const series_seen *series(const page_seen *pg, const char *label)
{
    for (int i = 0; i < pg->n; i++)
        if (!strcmp(pg->s[i].label, label)) return &pg->s[i];
    cr_assert_fail("no series '%s' on the page", label);
    return NULL;
}

/* A series drawn as a line: its data-points, its path's points, and the skipped count. */
static void expect_line(const page_seen *pg, const char *label, int points, int skipped)
{
    const series_seen *s = series(pg, label);
    cr_assert_eq(s->points, points, "%s: data-points %d, expected %d", label, s->points, points);
    cr_assert_eq(s->path_points, points, "%s: the path has %d points, expected %d", label, s->path_points, points);
    cr_assert_eq(s->skipped, skipped, "%s: %d skipped, expected %d", label, s->skipped, skipped);
}

static void expect_markers(const page_seen *pg, const char *label, int points)
{
    const series_seen *s = series(pg, label);
    cr_assert_eq(s->points, points, "%s: data-points %d, expected %d", label, s->points, points);
    cr_assert_eq(s->circles, points, "%s: %d circles, expected %d", label, s->circles, points);
}

/* ------------------------------------------------------------ run folders */

static void put(const char *dir, const char *name, const char *text)
{
    char *path = ds_path_join(dir, name), *slash = strrchr(path, '/');
    *slash = '\0';
    cr_assert_eq(ds_mkdirs(path), 0);
    *slash = '/';
    cr_assert_eq(ds_write_file(path, text, strlen(text)), 0, "%s", ds_errmsg());
    free(path);
}

/* SFT rows at steps 1..n; step `null_grad` logs grad_norm null (a NaN); a
 * base evaluation at step 0, validation losses at steps 3 and n. */
static char *sft_metrics(int n, int null_grad, bool moe)
{
    sbuf b = {0};
    sb_put(&b, "{\"step\":0,\"eval\":\"quiz\",\"model\":\"base\",\"n\":4,\"acc\":0.25,\"acc_norm\":0.5}\n");
    for (int s = 1; s <= n; s++) {
        sb_printf(&b, "{\"step\":%d,\"epoch\":%.3f,\"loss\":%.4f,\"lr\":%g,", s, s / 4.0, 3.0 / s, 1e-4 * s);
        if (s == null_grad) sb_put(&b, "\"grad_norm\":null,");
        else sb_printf(&b, "\"grad_norm\":%.3f,", 1.0 + s % 3);
        sb_printf(&b, "\"tokens_per_s\":%d,\"peak_mem_bytes\":%d,\"elapsed_s\":%d,\"sft/nll\":%.4f", 1000 + s, 1 << 24, s,
                  2.9 / s);
        if (moe) sb_printf(&b, ",\"moe/load/0\":%.2f,\"moe/load/1\":%.2f,\"moe/aux_loss\":0.01", 0.5 + s * 0.01, 0.5);
        sb_put(&b, "}\n");
        if (s == 3 || s == n) sb_printf(&b, "{\"step\":%d,\"eval\":\"validation\",\"model\":\"adapter\",\"n\":8,"
                                            "\"loss\":%.3f,\"perplexity\":%.3f}\n", s, 2.5 / s, exp(2.5 / s));
    }
    return b.buf.p;
}

/* Four questions (answers 1 0 0 0). acc: 0 and 1 wrong -> right, 2 right -> wrong,
 * 3 right both times; acc_norm: 0 wrong -> right, 2 and 3 right -> wrong. */
static const char EVAL_JSON[] =
    "{\"dataset\": \"quiz.jsonl\", \"type\": \"mcq\", \"before\": {\"model\": \"base\", \"acc\": 0.5, "
    "\"acc_norm\": 0.75, \"n\": 4}, \"after\": {\"model\": \"adapter\", \"acc\": 0.75, \"acc_norm\": 0.5, \"n\": 4},"
    " \"samples\": ["
    "{\"index\": 0, \"answer\": 1, \"prompt\": \"Is <script>alert(1)</script> & 'this' \\\"safe\\\"?\", "
    "\"choices\": [\" no\", \" yes\"], \"loglik_before\": [-1, -2], \"pred_before\": 0, \"pred_norm_before\": 0,"
    " \"loglik_after\": [-2, -1], \"pred_after\": 1, \"pred_norm_after\": 1},"
    "{\"index\": 1, \"answer\": 0, \"prompt\": \"Q2\", \"loglik_before\": [-2, -1], \"pred_before\": 1, "
    "\"pred_norm_before\": 0, \"loglik_after\": [-1, -2], \"pred_after\": 0, \"pred_norm_after\": 0},"
    "{\"index\": 2, \"answer\": 0, \"prompt\": \"Q3\", \"loglik_before\": [-1, -2, -3], \"pred_before\": 0, "
    "\"pred_norm_before\": 0, \"loglik_after\": [-2, -1, -3], \"pred_after\": 1, \"pred_norm_after\": 1},"
    "{\"index\": 3, \"answer\": 0, \"loglik_before\": [-1, -2, -3, -4], \"pred_before\": 0, \"pred_norm_before\": 0,"
    " \"loglik_after\": [-1, -2, -3, -4], \"pred_after\": 0, \"pred_norm_after\": 1}]}";

static char *g_tmp;

static void setup(void) { g_tmp = tu_tmpdir(); }

/* A run folder at DIR: n SFT rows, the eval file, a recipe with markup in it. */
static char *make_run(const char *rel, int n, int null_grad, bool moe)
{
    char *dir = ds_path_join(g_tmp, rel);
    char *m = sft_metrics(n, null_grad, moe);
    put(dir, "metrics.jsonl", m);
    free(m);
    put(dir, "eval/quiz.json", EVAL_JSON);
    put(dir, "recipe.resolved.yaml", "base_model: models/<b>tiny</b>\ntrain:\n  learning_rate: 0.001\n"
                                     "data:\n  datasets:\n    - path: a.jsonl\n      type: mcq\n");
    put(dir, "train.log", "step 1/7 loss 3.0 & more\n");
    put(dir, "clean_report.json", "{\"records\": {\"in\": 100, \"out\": 80}, \"rules\": {\"exact\": 12, "
                                  "\"near<dup>\": 5, \"pii\": {\"email\": 3}}, \"clusters\": [[1, 2]], \"note\": \"x\"}");
    return dir;
}

static char *write_page(const char *const *dirs, int n)
{
    char *out = ds_path_join(g_tmp, "page.html"), *html;
    size_t len;
    int rc = report_write_html(dirs, n, out);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    cr_assert_eq(ds_read_file(out, &html, &len), 0);
    free(out);
    return html;
}

TestSuite(report, .init = setup);

Test(report, one_run_every_plot_has_its_rows)
{
    char *dir = make_run("a/run", 7, 4, true);
    char *html = write_page((const char *const[]){dir}, 1);
    page_seen pg;
    read_page(html, &pg);
    expect_line(&pg, "loss (raw)", 7, 0);
    expect_line(&pg, "loss (EMA)", 7, 0);
    expect_markers(&pg, "eval validation", 2);
    expect_line(&pg, "learning rate", 7, 0);
    expect_line(&pg, "gradient norm", 6, 1);   /* the null is skipped, and said */
    cr_assert(strstr(html, "1 non-finite value not drawn: gradient norm (1)"), "the skipped value is not said");
    expect_line(&pg, "tokens/s", 7, 0);
    expect_line(&pg, "peak memory", 7, 0);
    expect_line(&pg, "sft/nll", 7, 0);
    expect_line(&pg, "0", 7, 0);               /* moe/load/0 and moe/load/1: one plot, two series */
    expect_line(&pg, "1", 7, 0);
    expect_line(&pg, "moe/aux_loss", 7, 0);
    cr_assert(strstr(html, "<h3>Mixture of experts</h3>"));
    /* clean_report.json: its counts as bars and rows */
    cr_assert(strstr(html, "<h2>Data cleaning</h2>"));
    cr_assert(strstr(html, ">near&lt;dup&gt;</text><rect"), "no bar for a rule");
    cr_assert(strstr(html, "<th>rules.pii.email</th><td class=\"num\">3</td>"));
    cr_assert(strstr(html, "<th>clusters (entries)</th><td class=\"num\">1</td>"));
    /* escaped, never markup */
    cr_assert(strstr(html, "Is &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#39;this&#39; &quot;safe&quot;?"));
    cr_assert(strstr(html, "models/&lt;b&gt;tiny&lt;/b&gt;"));
    cr_assert(strstr(html, "loss 3.0 &amp; more"));
    /* accuracy: 2/4 before, 3/4 after, with their Wilson intervals; chance from 2-4 choices */
    cr_assert(strstr(html, "0.5000 <span class=\"ci\">[0.150, 0.850]</span>"), "acc before");
    cr_assert(strstr(html, "0.7500 <span class=\"ci\">[0.301, 0.954]</span>"), "acc after");
    cr_assert(strstr(html, "0.396 (2-4 choices)"), "chance level");
    cr_assert(strstr(html, "acc: 2 questions wrong &#8594; right"));
    cr_assert(strstr(html, "acc: 1 question right &#8594; wrong"));
    cr_assert(strstr(html, "acc_norm: 1 question wrong &#8594; right"));
    cr_assert(strstr(html, "B:  yes"), "the chosen answer's text");
    cr_assert(strstr(html, "acc_norm: 2 questions right &#8594; wrong"));
    cr_assert(strstr(html, "(the eval file does not store the question text)"), "question 3 has no prompt");
    free(html);
    free(dir);
}

Test(report, two_runs_on_the_same_axes)
{
    char *a = make_run("x/first", 7, 0, false), *b = make_run("y/second", 5, 0, false);
    char *dpo = ds_path_join(b, "metrics.jsonl");   /* the second run is a DPO run */
    put(b, "metrics.jsonl", "{\"step\":1,\"loss\":0.69,\"lr\":1e-5,\"rewards/margins\":0.1,\"rewards/accuracies\":0.5,"
                            "\"logps/chosen\":-40,\"logps/rejected\":-41,\"rewards/chosen\":0.05,\"rewards/rejected\":-0.05}\n"
                            "{\"step\":2,\"loss\":0.6,\"lr\":2e-5,\"rewards/margins\":0.3,\"rewards/accuracies\":0.75,"
                            "\"logps/chosen\":-39,\"logps/rejected\":-43,\"rewards/chosen\":0.1,\"rewards/rejected\":-0.2}\n");
    free(dpo);
    char *html = write_page((const char *const[]){a, b}, 2);
    page_seen pg;
    read_page(html, &pg);
    expect_line(&pg, "first loss (raw)", 7, 0);
    expect_line(&pg, "second loss (raw)", 2, 0);
    expect_line(&pg, "first learning rate", 7, 0);
    expect_line(&pg, "second learning rate", 2, 0);
    expect_line(&pg, "second rewards/margins", 2, 0);
    expect_line(&pg, "second chosen", 2, 0);
    expect_line(&pg, "second rejected", 2, 0);
    for (int i = 0; i < pg.n; i++)
        cr_assert(strncmp(pg.s[i].label, "first reward", 12) != 0, "the SFT run has no DPO series");
    cr_assert(strstr(html, "<h3>Recipe differences</h3>") == NULL, "the recipes are the same");
    free(html);
    free(a);
    free(b);
}

Test(report, same_folder_names_are_told_apart)
{
    char *a = make_run("one/run", 3, 0, false), *b = make_run("two/run", 3, 0, false);
    put(b, "recipe.resolved.yaml", "base_model: models/tiny\ntrain:\n  learning_rate: 0.002\n");
    char *html = write_page((const char *const[]){a, b}, 2);
    page_seen pg;
    read_page(html, &pg);
    char label[512];
    snprintf(label, sizeof label, "%s loss (raw)", a);
    expect_line(&pg, label, 3, 0);
    snprintf(label, sizeof label, "%s loss (raw)", b);
    expect_line(&pg, label, 3, 0);
    cr_assert(strstr(html, "<h3>Recipe differences</h3>"));
    cr_assert(strstr(html, "<th>train.learning_rate</th><td>0.001</td><td>0.002</td>"));
    cr_assert(strstr(html, "<th>data.datasets[0].path</th><td>a.jsonl</td><td>-</td>"));
    free(html);
    free(a);
    free(b);
}

Test(report, long_flip_lists_are_cut)
{
    char *dir = make_run("many", 3, 0, false);
    sbuf e = {0};
    sb_put(&e, "{\"dataset\": \"q.jsonl\", \"type\": \"mcq\", \"before\": {\"acc\": 0, \"acc_norm\": 0, \"n\": 305}, "
               "\"after\": {\"acc\": 1, \"acc_norm\": 1, \"n\": 305}, \"samples\": [");
    for (int i = 0; i < 305; i++)
        sb_printf(&e, "%s{\"index\": %d, \"answer\": 0, \"prompt\": \"question %d\", \"loglik_before\": [-2, -1], "
                      "\"pred_before\": 1, \"pred_norm_before\": 1, \"loglik_after\": [-1, -2], \"pred_after\": 0, "
                      "\"pred_norm_after\": 0}", i ? ", " : "", i, i);
    sb_put(&e, "]}");
    put(dir, "eval/quiz.json", e.buf.p);
    sb_free(&e);
    char *html = write_page((const char *const[]){dir}, 1);
    page_seen pg;
    read_page(html, &pg);
    cr_assert(strstr(html, "acc: 305 questions wrong &#8594; right"));
    cr_assert(strstr(html, ">question 299<") && !strstr(html, ">question 300<"), "300 questions listed");
    cr_assert(strstr(html, "and 5 more (the eval file has them all)"));
    cr_assert(strstr(html, "0.0000 <span class=\"ci\">[0.000, 0.012]</span>"), "0 of 305");
    free(html);
    free(dir);
}

Test(report, non_finite_points_never_reach_the_svg)
{
    double x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {1, NAN, INFINITY, -INFINITY, 1e300, 2};
    double all_bad[2] = {NAN, NAN};
    plot p;
    plot_init(&p, "t", "y", LOG_AUTO);
    plot_add(&p, "mixed", x, y, 6);
    plot_add(&p, "bad", x, all_bad, 2)->markers = true;
    sbuf b = {0};
    sb_put(&b, "<!DOCTYPE html><html><body>");
    plot_svg(&b, &p);
    sb_put(&b, "</body></html>");
    page_seen pg;
    read_page(b.buf.p, &pg);
    expect_line(&pg, "mixed", 2, 4);
    expect_markers(&pg, "bad", 0);
    cr_assert(strstr(b.buf.p, "6 non-finite values not drawn: mixed (4) bad (2)"));
    plot_free(&p);
    plot_init(&p, "t", "y", LOG_AUTO);   /* nothing drawable at all */
    plot_add(&p, "none", x, all_bad, 2);
    b.buf.len = 0;
    sb_put(&b, "<!DOCTYPE html><html><body>");
    plot_svg(&b, &p);
    sb_put(&b, "</body></html>");
    read_page(b.buf.p, &pg);
    cr_assert(strstr(b.buf.p, "no finite values"));
    plot_free(&p);
    sb_free(&b);
}

Test(report, log_scale_when_values_span_decades)
{
    double x[3] = {1, 2, 3}, y[3] = {10, 1, 0.01};
    plot p;
    plot_init(&p, "t", "loss", LOG_AUTO);
    plot_add(&p, "loss", x, y, 3);
    sbuf b = {0};
    plot_svg(&b, &p);
    cr_assert(strstr(b.buf.p, "loss (log)"), "no log axis");
    cr_assert(strstr(b.buf.p, ">0.01</text>") && strstr(b.buf.p, ">10</text>"), "no decade ticks");
    plot_free(&p);
    sb_free(&b);
}

Test(report, wilson_interval_as_published)
{
    /* Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 */
    static const struct { long k, n; double lo, hi; } cases[] = {
        {81, 263, 0.2553, 0.3662}, {15, 148, 0.0624, 0.1605}, {0, 20, 0.0, 0.1611}, {1, 29, 0.0061, 0.1718},
        {29, 29, 0.8830, 1.0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double lo, hi;
        wilson95(cases[i].k, cases[i].n, &lo, &hi);
        cr_assert(fabs(lo - cases[i].lo) < 5e-5 && fabs(hi - cases[i].hi) < 5e-5, "%ld/%ld: [%.4f, %.4f]",
                  cases[i].k, cases[i].n, lo, hi);
    }
}

Test(report, run_folder_errors)
{
    char *missing = ds_path_join(g_tmp, "nothing"), *out = ds_path_join(g_tmp, "out.html");
    cr_assert_eq(report_write_html((const char *const[]){missing}, 1, out), DS_ENOINPUT);
    cr_assert(strstr(ds_errmsg(), "nothing"));
    char *dir = make_run("bad", 3, 0, false);
    put(dir, "metrics.jsonl", "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":\n{\"step\":3,\"loss\":1}\n");
    cr_assert_eq(report_write_html((const char *const[]){dir}, 1, out), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "metrics.jsonl:2:"), "%s", ds_errmsg());
    put(dir, "metrics.jsonl", "{\"loss\":1}\n");
    cr_assert_eq(report_write_html((const char *const[]){dir}, 1, out), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "step"), "%s", ds_errmsg());
    put(dir, "eval/quiz.json", "{\"type\": ");
    put(dir, "metrics.jsonl", "{\"step\":1,\"loss\":1}\n");
    cr_assert_eq(report_write_html((const char *const[]){dir}, 1, out), DS_EDATA);
    cr_assert(strstr(ds_errmsg(), "quiz.json"), "%s", ds_errmsg());
    cr_assert(!ds_exists(out), "a page was written for a bad run folder");
    /* a last line cut short by a kill is left out and said */
    put(dir, "eval/quiz.json", EVAL_JSON);
    put(dir, "metrics.jsonl", "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":0.5}\n{\"step\":3,\"lo");
    cr_assert_eq(report_write_html((const char *const[]){dir}, 1, out), DS_OK, "%s", ds_errmsg());
    char *html;
    size_t len;
    cr_assert_eq(ds_read_file(out, &html, &len), 0);
    page_seen pg;
    read_page(html, &pg);
    expect_line(&pg, "loss (raw)", 2, 0);
    cr_assert(strstr(html, "ends in an incomplete line"));
    free(html);
    free(dir);
    free(missing);
    free(out);
}
