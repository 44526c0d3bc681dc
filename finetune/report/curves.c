/* finetune/report/curves.c - the plots of metrics.jsonl: the training curves,
 * DPO's rewards and log-probabilities, the forbidden-token penalty,
 * evaluations during training, MoE router statistics (moe/...), and a small
 * plot for every other numeric column. With several runs each plot shows
 * every run that has the metric: one colour per run, one dash per metric. */
#include "report_internal.h"

#include "core/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Columns that are axes or run facts rather than curves. */
static const char *const NOT_PLOTTED[] = {"step", "epoch", "elapsed_s", NULL};
/* Columns with a plot of their own below; the rest go to "Other metrics". */
static const char *const DEDICATED[] = {"loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_bytes",
                                        "rewards/margins", "rewards/accuracies", "rewards/chosen",
                                        "rewards/rejected", "logps/chosen", "logps/rejected",
                                        "forbidden/prob", "forbidden/penalty", NULL};

static bool in_list(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], s)) return true;
    return false;
}

static bool any_run_has(sbuf *b, const rep_run *runs, int n, const char *key)
{
    for (int r = 0; r < n; r++) {
        double *x, *y;
        int k = rep_series(runs[r].train_rows, key, NULL, &x, &y, &b->oom);
        free(x);
        free(y);
        if (k) return true;
    }
    return false;
}

/* Series of `key` for every run that has it, values divided by `scale`.
 * `name` labels the metric when a plot shows several (metric = its index). */
static void add_metric(plot *p, const rep_run *runs, int n, const char *key, const char *name, int metric,
                       double scale)
{
    for (int r = 0; r < n; r++) {
        double *x, *y;
        int k = rep_series(runs[r].train_rows, key, NULL, &x, &y, &p->oom);
        for (int i = 0; i < k; i++) y[i] /= scale;
        char label[256];
        if (n > 1) snprintf(label, sizeof label, "%s %s", runs[r].label, name ? name : key);
        else snprintf(label, sizeof label, "%s", name ? name : key);
        plot_series *s = k ? plot_add(p, label, x, y, k) : NULL;
        if (s) {
            s->color = n > 1 ? r : metric;
            s->dash = n > 1 ? metric : 0;
        }
        free(x);
        free(y);
    }
}

static void emit(sbuf *b, plot *p)
{
    if (p->ns) plot_svg(b, p);
    b->oom |= p->oom;
    plot_free(p);
}

/* One plot of one or more metrics (NULL-terminated keys; names may be NULL). */
static void metric_plot(sbuf *b, const rep_run *runs, int n, const char *title, const char *ylabel, int log,
                        const char *const *keys, const char *const *names, bool small)
{
    plot p;
    plot_init(&p, title, ylabel, log);
    p.small = small;
    for (int m = 0; keys[m]; m++) add_metric(&p, runs, n, keys[m], names ? names[m] : NULL, m, 1.0);
    emit(b, &p);
}

/* The evaluation sets named in the runs' metrics rows with `key` (an ordered set). */
static json_t *eval_sets(const rep_run *runs, int n, const char *key)
{
    json_t *names = json_object();
    for (int r = 0; r < n; r++) {
        size_t i;
        json_t *row;
        json_array_foreach(runs[r].eval_rows, i, row)
            if (json_object_get(row, key)) json_object_set_new(names, json_string_value(json_object_get(row, "eval")), json_true());
    }
    return names;
}

/* Raw loss, its moving average, and the loss of every evaluation set that
 * has one (the validation split, loss-type eval sets) as markers. */
static void loss_plot(sbuf *b, const rep_run *runs, int n)
{
    plot p;
    plot_init(&p, "Training loss", "loss", LOG_AUTO);
    json_t *sets = eval_sets(runs, n, "loss");
    for (int r = 0; r < n; r++) {
        double *x, *y;
        int k = rep_series(runs[r].train_rows, "loss", NULL, &x, &y, &p.oom);
        double *ema = k ? ds_malloc(sizeof(double) * (size_t)k, "the smoothed loss") : NULL;
        p.oom |= k && !ema;
        char label[256];
        const char *run = n > 1 ? runs[r].label : "", *sp = n > 1 ? " " : "";
        snprintf(label, sizeof label, "%s%sloss (raw)", run, sp);
        plot_series *s = k ? plot_add(&p, label, x, y, k) : NULL;
        if (s) {
            s->color = n > 1 ? r : 0;
            s->faint = true;
        }
        if (k && ema) {
            ema_smooth(y, k, ema);
            snprintf(label, sizeof label, "%s%sloss (EMA)", run, sp);
            if ((s = plot_add(&p, label, x, ema, k))) s->color = n > 1 ? r : 0;
        }
        free(ema);
        free(x);
        free(y);
        int i = 0;
        const char *name;
        json_t *unused;
        json_object_foreach(sets, name, unused) {
            k = rep_series(runs[r].eval_rows, "loss", name, &x, &y, &p.oom);
            snprintf(label, sizeof label, "%s%seval %s", run, sp, name);
            if (k && (s = plot_add(&p, label, x, y, k))) {
                s->markers = true;
                s->color = n > 1 ? r : 1 + i;
            }
            i++;
            free(x);
            free(y);
        }
    }
    json_decref(sets);
    emit(b, &p);
}

/* Peak memory in GiB (MiB when small): the GPU's on CUDA, the process's RSS on the CPU. */
static void memory_plot(sbuf *b, const rep_run *runs, int n)
{
    int cuda = 0, cpu = 0;
    double peak = 0;
    for (int r = 0; r < n; r++) {
        const char *be = json_string_value(json_object_get(json_object_get(runs[r].info, "device"), "backend"));
        cuda += be && !strcmp(be, "cuda");
        cpu += be && !strcmp(be, "cpu");
        double *x, *y;
        int k = rep_series(runs[r].train_rows, "peak_mem_bytes", NULL, &x, &y, &b->oom);
        for (int i = 0; i < k; i++)
            if (isfinite(y[i])) peak = fmax(peak, y[i]);
        free(x);
        free(y);
    }
    const char *title = cuda == n ? "GPU memory (peak allocated)"
                        : cpu == n ? "Process memory (peak resident)"
                                   : "Peak memory (GPU on CUDA runs, process RSS on the CPU)";
    bool gib = peak >= 1024.0 * 1024 * 1024;
    plot p;
    plot_init(&p, title, gib ? "GiB" : "MiB", LOG_NEVER);
    add_metric(&p, runs, n, "peak_mem_bytes", "peak memory", 0, gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024);
    emit(b, &p);
}

/* Accuracy (or loss) of each evaluation set at every evaluation, when some
 * run evaluated during training (three or more evaluations of a set). */
static void eval_progress(sbuf *b, const rep_run *runs, int n)
{
    static const char *const keys[] = {"acc", "acc_norm", "loss", "perplexity", NULL};
    bool header = false;
    json_t *sets = eval_sets(runs, n, "step"), *unused;
    const char *set;
    json_object_foreach(sets, set, unused) {
        int most = 0;
        for (int r = 0; r < n; r++) {
            double *x, *y;
            int k = rep_series(runs[r].eval_rows, "step", set, &x, &y, &b->oom);
            most = k > most ? k : most;
            free(x);
            free(y);
        }
        if (most < 3) continue;
        if (!header) sb_put(b, "<h3>Evaluations during training</h3>\n<div class=\"plots\">\n");
        header = true;
        char title[256];
        snprintf(title, sizeof title, "Evaluation set %s", set);
        plot p;
        plot_init(&p, title, "", LOG_NEVER);
        for (int m = 0; keys[m]; m++)
            for (int r = 0; r < n; r++) {
                double *x, *y;
                int k = rep_series(runs[r].eval_rows, keys[m], set, &x, &y, &p.oom);
                char label[256];
                snprintf(label, sizeof label, "%s%s%s", n > 1 ? runs[r].label : "", n > 1 ? " " : "", keys[m]);
                plot_series *s = k ? plot_add(&p, label, x, y, k) : NULL;
                if (s) {
                    s->color = n > 1 ? r : m;
                    s->dash = n > 1 ? m : 0;
                    s->dots = true;
                }
                free(x);
                free(y);
            }
        emit(b, &p);
    }
    if (header) sb_put(b, "</div>\n");
    json_decref(sets);
}

/* moe/GROUP/ITEM keys sharing a GROUP are one plot; other moe/ keys one each. */
static void moe_section(sbuf *b, const rep_run *runs, int n, const json_t *keys)
{
    json_t *groups = json_object();   /* group -> [keys] in first-seen order */
    const char *key;
    json_t *k;
    json_object_foreach((json_t *)keys, key, k) {
        if (strncmp(key, "moe/", 4) != 0) continue;
        const char *slash = strrchr(key, '/');
        char group[256];
        snprintf(group, sizeof group, "%.*s", slash > key + 3 ? (int)(slash - key) : (int)strlen(key), key);
        json_t *list = json_object_get(groups, group);
        if (!list) json_object_set_new(groups, group, list = json_array());
        json_array_append_new(list, json_string(key));
    }
    if (json_object_size(groups)) sb_put(b, "<h3>Mixture of experts</h3>\n<div class=\"plots\">\n");
    const char *group;
    json_t *list;
    json_object_foreach(groups, group, list) {
        plot p;
        plot_init(&p, group, "", LOG_NEVER);
        size_t j;
        json_array_foreach(list, j, k) {
            key = json_string_value(k);
            add_metric(&p, runs, n, key, json_array_size(list) > 1 ? strrchr(key, '/') + 1 : NULL, (int)j, 1.0);
        }
        emit(b, &p);
    }
    if (json_object_size(groups)) sb_put(b, "</div>\n");
    json_decref(groups);
}

void section_curves(sbuf *b, const rep_run *runs, int n)
{
    sb_put(b, "<section id=\"curves\"><h2>Training curves</h2>\n<div class=\"plots\">\n");
    loss_plot(b, runs, n);
    metric_plot(b, runs, n, "Learning rate", "lr", LOG_NEVER, (const char *const[]){"lr", NULL},
                (const char *const[]){"learning rate"}, false);
    metric_plot(b, runs, n, "Gradient norm (before clipping)", "L2 norm", LOG_AUTO,
                (const char *const[]){"grad_norm", NULL}, (const char *const[]){"gradient norm"}, false);
    metric_plot(b, runs, n, "Throughput (tokens that are not padding)", "tokens/s", LOG_NEVER,
                (const char *const[]){"tokens_per_s", NULL}, (const char *const[]){"tokens/s"}, false);
    memory_plot(b, runs, n);
    sb_put(b, "</div>\n");

    if (any_run_has(b, runs, n, "rewards/margins") || any_run_has(b, runs, n, "logps/chosen")) {
        sb_put(b, "<h3>Preference optimisation (DPO)</h3>\n<div class=\"plots\">\n");
        metric_plot(b, runs, n, "Reward margin (chosen - rejected)", "reward", LOG_NEVER,
                    (const char *const[]){"rewards/margins", NULL}, NULL, false);
        metric_plot(b, runs, n, "Reward accuracy (chosen > rejected)", "share of pairs", LOG_NEVER,
                    (const char *const[]){"rewards/accuracies", NULL}, NULL, false);
        metric_plot(b, runs, n, "Rewards", "reward", LOG_NEVER,
                    (const char *const[]){"rewards/chosen", "rewards/rejected", NULL},
                    (const char *const[]){"chosen", "rejected"}, false);
        metric_plot(b, runs, n, "Log-probabilities of the completions", "log p", LOG_NEVER,
                    (const char *const[]){"logps/chosen", "logps/rejected", NULL},
                    (const char *const[]){"chosen", "rejected"}, false);
        sb_put(b, "</div>\n");
    }
    if (any_run_has(b, runs, n, "forbidden/prob") || any_run_has(b, runs, n, "forbidden/penalty")) {
        sb_put(b, "<h3>Forbidden-token penalty</h3>\n<div class=\"plots\">\n");
        metric_plot(b, runs, n, "Probability mass on forbidden tokens", "probability", LOG_AUTO,
                    (const char *const[]){"forbidden/prob", NULL}, NULL, false);
        metric_plot(b, runs, n, "Penalty", "penalty", LOG_AUTO, (const char *const[]){"forbidden/penalty", NULL},
                    NULL, false);
        sb_put(b, "</div>\n");
    }
    eval_progress(b, runs, n);

    json_t *keys = rep_numeric_keys(runs, n);
    moe_section(b, runs, n, keys);
    bool header = false;
    const char *key;
    json_t *unused;
    json_object_foreach(keys, key, unused) {
        if (in_list(NOT_PLOTTED, key) || in_list(DEDICATED, key) || !strncmp(key, "moe/", 4)) continue;
        if (!header) sb_put(b, "<h3>Other metrics</h3>\n<div class=\"plots small\">\n");
        header = true;
        metric_plot(b, runs, n, key, "", LOG_AUTO, (const char *const[]){key, NULL}, NULL, true);
    }
    if (header) sb_put(b, "</div>\n");
    json_decref(keys);
    sb_put(b, "</section>\n");
}
