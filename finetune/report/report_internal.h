/* finetune/report/report_internal.h - the pieces of report.html shared by the
 * files of this folder (and the tests): a text buffer, HTML escaping, the
 * SVG plot, the run folders as read, and the small statistics. */
#ifndef DS_FINETUNE_REPORT_INTERNAL_H
#define DS_FINETUNE_REPORT_INTERNAL_H

#include "report.h"

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ text buffer */

/* The page is built by many appends: a ds_buf (buf.p the text, buf.len its
 * length) whose first out-of-memory failure is kept (`oom`, message set) and
 * reported once, when the page is written, so the writers need not check
 * every append. */
typedef struct {
    ds_buf buf;
    bool oom;
} sbuf;

void sb_put(sbuf *b, const char *s);
void sb_putn(sbuf *b, const char *s, size_t n);
void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text escaped for HTML content and attribute values (& < > " '); bytes that
 * are not UTF-8 become U+FFFD, control characters other than tab and newline
 * are dropped: the page is always well-formed UTF-8. */
void sb_html(sbuf *b, const char *s);
void sb_htmln(sbuf *b, const char *s, size_t n);
void sb_free(sbuf *b);

/* "1.23 GiB", "12.5k", "0.0042": a number for a table cell. */
void fmt_num(char *buf, size_t n, double v);
/* "1:02:03" or "12.3 s". */
void fmt_seconds(char *buf, size_t n, double s);

/* ------------------------------------------------------------ plots */

enum { LOG_NEVER, LOG_AUTO };   /* LOG_AUTO: log y when every value is > 0 and they span 100x or more */

typedef struct {
    char *label;
    int color;             /* palette index */
    int dash;              /* 0 solid, 1 dashed, 2 dotted, 3 dash-dot */
    bool markers;          /* points as circles, no line */
    bool dots;             /* a line with a circle on every point */
    bool faint;            /* thin and translucent (the raw loss under its EMA) */
    double *x, *y;         /* (n) as given: non-finite points are skipped when drawn */
    int n;
} plot_series;

typedef struct {
    const char *title;     /* not owned */
    const char *ylabel;
    const char *xlabel;    /* default "step" */
    int log_policy;
    double yscale;         /* values are divided by this for display (1 = none) */
    bool small;            /* the generic metrics' smaller size */
    plot_series *s;
    int ns;
    size_t cap;
    bool oom;              /* a series could not be added (message set) */
} plot;

void plot_init(plot *p, const char *title, const char *ylabel, int log_policy);
/* Add a series (x, y copied); returns it, or NULL when out of memory (the
 * plot then lacks it; the message is set and the page's writer reports it). */
plot_series *plot_add(plot *p, const char *label, const double *x, const double *y, int n);
void plot_free(plot *p);
/* The plot as an inline <figure><svg>...</svg><figcaption>...</figcaption></figure>.
 * Every series is a <g class="series" data-label=... data-points=N
 * data-skipped=K>: a <path> through its N drawn points (and N <circle>s
 * with dots, or a single point), or N <circle>s (markers). */
void plot_svg(sbuf *b, const plot *p);
/* A series' points with a finite x and y within +-1e30 (what is drawn). */
bool plot_point_ok(double x, double y);
/* The smoothed loss: an exponential moving average, debiased as TensorBoard
 * does, whose window is about 5% of the points (1 + n/20); non-finite points
 * are skipped (their output is NaN). */
void ema_smooth(const double *y, int n, double *out);

/* ------------------------------------------------------------ run folders */

typedef struct {
    char *dir;
    char *label;           /* the folder's name, made unique among the runs */
    json_t *train_rows;    /* metrics rows of training steps, in file order */
    json_t *eval_rows;     /* metrics rows of evaluations ({"eval": NAME, ...}) */
    bool torn_last_line;   /* metrics.jsonl ended in an incomplete line (left out) */
    json_t *evals;         /* [{"name": NAME, "doc": eval/NAME.json}, ...] sorted by name */
    json_t *info;          /* run_info.json, or NULL */
    json_t *clean;         /* clean_report.json, or NULL */
    char *recipe;          /* recipe.resolved.yaml, or NULL */
    char *log_tail;        /* the last lines of train.log, or NULL */
} rep_run;

int rep_run_load(const char *dir, rep_run *r);
/* The names in folder `dir` (not hidden) that keep() accepts, sorted: a
 * malloc'd array of malloc'd strings (free each and the array). */
int rep_list_dir(const char *dir, bool (*keep)(const char *dir, const char *name), char ***names, int *n);
void rep_run_free(rep_run *r);
/* Give runs with the same folder name distinct labels ("a/run", "b/run"). */
int rep_label_runs(rep_run *runs, int n);

/* The rows' values of `key` against their step (only the rows of evaluation
 * set eval_name when it is not NULL). Rows without the key give no point; a
 * key present with null gives a NaN point (drawn as skipped). Returns the
 * number of points (x, y malloc'd, NULL when 0); out of memory gives 0 and
 * sets *oom (the message is set). */
int rep_series(const json_t *rows, const char *key, const char *eval_name, double **x, double **y, bool *oom);
/* Keys holding numbers in any training row, as an object whose keys are in
 * first-seen order (jansson keeps insertion order: objects serve as ordered
 * sets on this page). */
json_t *rep_numeric_keys(const rep_run *runs, int n);

/* The page of the run folders into `out` (report_write_html without the file). */
int report_render(const char *const *run_dirs, int n_runs, sbuf *out);

/* ------------------------------------------------------------ sections */

void section_curves(sbuf *b, const rep_run *runs, int n);
void section_accuracy(sbuf *b, const rep_run *runs, int n);
void section_clean(sbuf *b, const rep_run *runs, int n);
void section_facts(sbuf *b, const rep_run *runs, int n);

/* ------------------------------------------------------------ run_info.json */

/* A model folder's fingerprint {"path", "sha256", "hashed", "files": [...]}
 * and a data file's {"path", "bytes", "sha256"} (the rules are in report.h). */
int fingerprint_dir(const char *dir, json_t **out);
int fingerprint_file(const char *path, json_t **out);

/* ------------------------------------------------------------ statistics */

/* The Wilson score interval of k successes in n trials at 95% (z = 1.96). */
void wilson95(long k, long n, double *lo, double *hi);

/* CRC-32C (Castagnoli) and TFRecord's masked form of it. */
uint32_t crc32c(const void *data, size_t n);
uint32_t crc32c_masked(const void *data, size_t n);

#endif
