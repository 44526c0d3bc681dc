/* finetune/report/plot.c - line plots as inline SVG: axes with "nice" ticks
 * (1-2-5 steps, or decades on a log scale), grid, series as paths or
 * markers, and a legend under the plot. Only finite points are drawn, so no
 * NaN or Inf can reach an SVG attribute; how many were skipped is said in
 * the caption. */
#include "report_internal.h"

#include "core/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const PALETTE[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
static const char *const DASHES[] = {"", "6 4", "2 3", "8 3 2 3"};

void plot_init(plot *p, const char *title, const char *ylabel, int log_policy)
{
    memset(p, 0, sizeof *p);
    p->title = title;
    p->ylabel = ylabel;
    p->xlabel = "step";
    p->log_policy = log_policy;
}

plot_series *plot_add(plot *p, const char *label, const double *x, const double *y, int n)
{
    if (ds_grow(&p->s, &p->cap, (size_t)p->ns + 1, sizeof *p->s)) {
        p->oom = true;
        return NULL;
    }
    plot_series *s = &p->s[p->ns];
    memset(s, 0, sizeof *s);
    s->label = ds_strdup(label);
    s->x = ds_calloc(n ? (size_t)n : 1, sizeof(double), "a plot series");
    s->y = ds_calloc(n ? (size_t)n : 1, sizeof(double), "a plot series");
    if (!s->label || !s->x || !s->y) {
        p->oom = true;
        free(s->label);
        free(s->x);
        free(s->y);
        return NULL;
    }
    if (n) {
        memcpy(s->x, x, sizeof(double) * (size_t)n);
        memcpy(s->y, y, sizeof(double) * (size_t)n);
    }
    s->n = n;
    s->color = p->ns;
    p->ns++;
    return s;
}

void plot_free(plot *p)
{
    for (int i = 0; i < p->ns; i++) {
        free(p->s[i].label);
        free(p->s[i].x);
        free(p->s[i].y);
    }
    free(p->s);
    memset(p, 0, sizeof *p);
}

bool plot_point_ok(double x, double y) { return isfinite(x) && isfinite(y) && fabs(x) <= 1e30 && fabs(y) <= 1e30; }

void ema_smooth(const double *y, int n, double *out)
{
    double window = 1.0 + n / 20.0, w = 1.0 - 1.0 / window, last = 0, weight = 1;
    for (int i = 0; i < n; i++) {
        if (!plot_point_ok(0, y[i])) {
            out[i] = NAN;
            continue;
        }
        last = last * w + (1 - w) * y[i];
        weight *= w;
        out[i] = weight < 1 ? last / (1 - weight) : y[i];
    }
}

/* ------------------------------------------------------------ axes */

typedef struct {
    double lo, hi;         /* the axis range, in axis units (log10 of the value on a log axis) */
    bool log;
    double ticks[24];      /* tick positions, in axis units */
    int nticks;
    double step;           /* linear tick step (for label digits) */
} axis;

static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* tight: the axis spans exactly [lo, hi] (the steps); else it widens to whole ticks. */
static void axis_linear(axis *a, double lo, double hi, int target, bool integer, bool tight)
{
    if (hi - lo < 1e-12 * fmax(fabs(lo), fabs(hi)) || hi == lo) {
        double pad = lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad;
        hi += pad;
    }
    double step = nice_step(hi - lo, target);
    if (integer && step < 1) step = 1;
    a->log = false;
    a->step = step;
    a->lo = tight ? lo : floor(lo / step) * step;
    a->hi = tight ? hi : ceil(hi / step) * step;
    a->nticks = 0;
    for (double t = ceil(a->lo / step - 1e-9) * step; t <= a->hi + step * 1e-9 && a->nticks < 24; t += step)
        a->ticks[a->nticks++] = fabs(t) < step * 1e-9 ? 0 : t;
}

/* lo, hi > 0: whole decades; ticks at 1, 2, 5 x 10^k when the range is short. */
static void axis_log(axis *a, double lo, double hi)
{
    a->log = true;
    a->lo = floor(log10(lo));
    a->hi = ceil(log10(hi));
    if (a->hi <= a->lo) a->hi = a->lo + 1;
    int decades = (int)(a->hi - a->lo), every = decades > 8 ? 2 : 1;
    a->nticks = 0;
    for (int k = 0; k <= decades && a->nticks < 24; k += every) {
        a->ticks[a->nticks++] = a->lo + k;
        if (decades <= 2 && k < decades) {
            a->ticks[a->nticks++] = a->lo + k + log10(2);
            a->ticks[a->nticks++] = a->lo + k + log10(5);
        }
    }
}

static void tick_label(const axis *a, double t, char *buf, size_t n)
{
    if (a->log) {
        double v = pow(10, t);
        if (t >= -3 && t <= 4) snprintf(buf, n, "%g", v);
        else if (fabs(t - round(t)) < 1e-9) snprintf(buf, n, "1e%d", (int)round(t));
        else snprintf(buf, n, "%.0e", v);
        return;
    }
    double a_ = fabs(t), step = a->step;
    if (t == 0) snprintf(buf, n, "0");
    else if (a_ >= 1e9) snprintf(buf, n, "%.*fG", step >= 1e9 ? 0 : 1, t / 1e9);
    else if (a_ >= 1e6) snprintf(buf, n, "%.*fM", step >= 1e6 ? 0 : 1, t / 1e6);
    else if (a_ >= 1e4) snprintf(buf, n, "%.*fk", step >= 1e3 ? 0 : 1, t / 1e3);
    else if (step < 1e-5) snprintf(buf, n, "%.1e", t);
    else {
        int digits = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, n, "%.*f", digits, t);
    }
}

/* ------------------------------------------------------------ drawing */

typedef struct {
    double L, T, w, h;      /* the plotting area */
    axis x, y;
} frame;

static double map_x(const frame *f, double x) { return f->L + (x - f->x.lo) / (f->x.hi - f->x.lo) * f->w; }
static double map_y(const frame *f, double y)
{
    double v = f->y.log ? log10(y) : y;
    return f->T + f->h - (v - f->y.lo) / (f->y.hi - f->y.lo) * f->h;
}

static bool drawable(const frame *f, double x, double y)
{
    if (!plot_point_ok(x, y) || (f->y.log && y <= 0)) return false;
    return isfinite(map_x(f, x)) && isfinite(map_y(f, y));
}

/* The ranges of every finite point; whether a log y axis applies. */
static int data_range(const plot *p, double *x0, double *x1, double *y0, double *y1)
{
    int n = 0;
    *x0 = *y0 = INFINITY;
    *x1 = *y1 = -INFINITY;
    for (int i = 0; i < p->ns; i++)
        for (int k = 0; k < p->s[i].n; k++) {
            double x = p->s[i].x[k], y = p->s[i].y[k];
            if (!plot_point_ok(x, y)) continue;
            n++;
            *x0 = fmin(*x0, x);
            *x1 = fmax(*x1, x);
            *y0 = fmin(*y0, y);
            *y1 = fmax(*y1, y);
        }
    return n;
}

static void draw_axes(sbuf *b, const frame *f, const plot *p)
{
    char lab[48];
    sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\" stroke=\"#999\"/>\n", f->L,
              f->T, f->w, f->h);
    for (int i = 0; i < f->y.nticks; i++) {
        double t = f->y.ticks[i], py = f->T + f->h - (t - f->y.lo) / (f->y.hi - f->y.lo) * f->h;
        tick_label(&f->y, t, lab, sizeof lab);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", f->L, py,
                  f->L + f->w, py);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", f->L - 5, py + 4, lab);
    }
    for (int i = 0; i < f->x.nticks; i++) {
        double t = f->x.ticks[i], px = map_x(f, t);
        tick_label(&f->x, t, lab, sizeof lab);
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>", px, f->T, px,
                  f->T + f->h);
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px, f->T + f->h + 15, lab);
    }
    sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"axis\">", f->L + f->w / 2,
              f->T + f->h + 32);
    sb_html(b, p->xlabel);
    sb_put(b, "</text>\n");
    if (p->ylabel && *p->ylabel) {
        double cy = f->T + f->h / 2;
        sb_printf(b, "<text x=\"14\" y=\"%.1f\" text-anchor=\"middle\" class=\"axis\" transform=\"rotate(-90 14 %.1f)\">",
                  cy, cy);
        sb_html(b, p->ylabel);
        if (f->y.log) sb_put(b, " (log)");
        sb_put(b, "</text>\n");
    }
}

/* The stroke attributes of a series' line. */
static void stroke(sbuf *b, const plot_series *s)
{
    sb_printf(b, " stroke=\"%s\" stroke-width=\"%s\"", PALETTE[s->color % 10], s->faint ? "1" : "2");
    if (s->faint) sb_put(b, " stroke-opacity=\"0.4\"");
    if (s->dash) sb_printf(b, " stroke-dasharray=\"%s\"", DASHES[s->dash % 4]);
}

static int draw_series(sbuf *b, const frame *f, const plot_series *s)
{
    int drawn = 0;
    for (int k = 0; k < s->n; k++) drawn += drawable(f, s->x[k], s->y[k]);
    const char *color = PALETTE[s->color % 10];
    sb_put(b, "<g class=\"series\" data-label=\"");
    sb_html(b, s->label);
    sb_printf(b, "\" data-points=\"%d\" data-skipped=\"%d\">", drawn, s->n - drawn);
    if (s->markers) {
        for (int k = 0; k < s->n; k++)
            if (drawable(f, s->x[k], s->y[k]))
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" stroke=\"#fff\"/>",
                          map_x(f, s->x[k]), map_y(f, s->y[k]), color);
    } else if (drawn > 0) {
        sb_put(b, "<path fill=\"none\"");
        stroke(b, s);
        sb_put(b, " stroke-linejoin=\"round\" d=\"");
        bool first = true;
        for (int k = 0; k < s->n; k++) {
            if (!drawable(f, s->x[k], s->y[k])) continue;
            sb_printf(b, "%s%.1f %.1f", first ? "M" : " L", map_x(f, s->x[k]), map_y(f, s->y[k]));
            first = false;
        }
        sb_put(b, "\"/>");
        if (drawn == 1 || s->dots)   /* a one-point line is invisible: mark it */
            for (int k = 0; k < s->n; k++)
                if (drawable(f, s->x[k], s->y[k]))
                    sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", map_x(f, s->x[k]),
                              map_y(f, s->y[k]), color);
    }
    sb_put(b, "</g>\n");
    return s->n - drawn;
}

/* Entries laid out left to right, wrapping; returns the rows used. */
static int draw_legend(sbuf *b, const plot *p, double W, double y0, bool draw)
{
    double x = 10, y = y0;
    int rows = p->ns ? 1 : 0;
    for (int i = 0; i < p->ns; i++) {
        const plot_series *s = &p->s[i];
        double wid = 34 + 6.4 * (double)strlen(s->label) + 14;
        if (x + wid > W - 6 && x > 10) {
            x = 10;
            y += 16;
            rows++;
        }
        if (draw) {
            const char *color = PALETTE[s->color % 10];
            if (s->markers)
                sb_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>", x + 13, y - 4, color);
            else {
                sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"", x, y - 4, x + 26, y - 4);
                stroke(b, s);
                sb_put(b, "/>");
            }
            sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\">", x + 32, y);
            sb_html(b, s->label);
            sb_put(b, "</text>\n");
        }
        x += wid;
    }
    return rows;
}

void plot_svg(sbuf *b, const plot *p)
{
    double W = p->small ? 440 : 600, areah = p->small ? 150 : 210;
    frame f = {.L = 66, .T = 30, .w = W - 66 - 18, .h = areah};
    double x0, x1, y0, y1;
    int n = data_range(p, &x0, &x1, &y0, &y1);
    if (n == 0) x0 = x1 = y0 = y1 = 0;
    axis_linear(&f.x, x0, x1, p->small ? 4 : 6, true, true);
    if (n > 0 && p->log_policy == LOG_AUTO && y0 > 0 && y1 / y0 >= 100) axis_log(&f.y, y0, y1);
    else axis_linear(&f.y, y0, y1, p->small ? 4 : 5, false, false);

    int legend_rows = draw_legend(b, p, W, 0, false);
    double H = f.T + f.h + 42 + 16 * legend_rows + 4;
    sb_printf(b, "<figure class=\"plot%s\"><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" "
                 "width=\"%.0f\" height=\"%.0f\" role=\"img\"><title>",
              p->small ? " small" : "", W, H, W, H);
    sb_html(b, p->title);
    sb_put(b, "</title>\n<text x=\"10\" y=\"18\" class=\"title\">");
    sb_html(b, p->title);
    sb_put(b, "</text>\n");
    draw_axes(b, &f, p);
    int skipped = 0;
    for (int i = 0; i < p->ns; i++) skipped += draw_series(b, &f, &p->s[i]);
    if (n == 0)
        sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">no finite values</text>\n", f.L + f.w / 2,
                  f.T + f.h / 2);
    draw_legend(b, p, W, f.T + f.h + 42 + 12, true);
    sb_put(b, "</svg>");
    if (skipped) {
        sb_printf(b, "<figcaption>%d non-finite value%s not drawn:", skipped, skipped == 1 ? "" : "s");
        for (int i = 0; i < p->ns; i++) {
            int k = 0;
            for (int j = 0; j < p->s[i].n; j++) k += !drawable(&f, p->s[i].x[j], p->s[i].y[j]);
            if (!k) continue;
            sb_put(b, " ");
            sb_html(b, p->s[i].label);
            sb_printf(b, " (%d)", k);
        }
        sb_put(b, "</figcaption>");
    }
    sb_put(b, "</figure>\n");
}
