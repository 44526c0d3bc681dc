/* finetune/recipe/recipe_keys.c - values of the YAML tree into typed struct fields,
 * through the declarative option tables (core/options.h): type checks,
 * ranges, choices, defaults, required keys, and the "did you mean" hint for
 * an unknown key.
 *
 * Scalars are read as YAML 1.2 core types, with YAML 1.1's yes/no/on/off
 * also accepted for booleans since PyYAML-based tools write them. Quoting
 * only matters for null: "null" in quotes is the string. */
#include "recipe_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ---- */

void rctx_where(const rctx *c, int line, char *buf, size_t n)
{
    if (line > 0) snprintf(buf, n, "%s:%d", c->src, line);
    else if (line == RLINE_CMDLINE) snprintf(buf, n, "command line");
    else snprintf(buf, n, "%s", c->src);
}

int rctx_fail(const rctx *c, int line, const char *key, const char *fmt, ...)
{
    char at[512], msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rctx_where(c, line, at, sizeof at);
    if (key && *key) return ds_fail(DS_ECONFIG, "%s: %s: %s", at, key, msg);
    return ds_fail(DS_ECONFIG, "%s: %s", at, msg);
}

void rctx_notice(const rctx *c, int line, const char *fmt, ...)
{
    if (!c->notices) return;
    char at[512];
    rctx_where(c, line, at, sizeof at);
    fprintf(c->notices, "%s: ", at);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->notices, fmt, ap);
    va_end(ap);
    fputc('\n', c->notices);
}

const char *recipe_join(char *buf, size_t n, const char *prefix, const char *key)
{
    if (prefix && *prefix) snprintf(buf, n, "%s.%s", prefix, key);
    else snprintf(buf, n, "%s", key);
    return buf;
}

const char *recipe_show(const ynode *v, char *buf, size_t n)
{
    if (!v || ynode_is_null(v)) return "null";
    if (v->kind == YN_SEQ) return "a list";
    if (v->kind == YN_MAP) return "a mapping";
    /* 'text', cut to a readable length, control characters shown as '?' */
    size_t k = 0, max = n > 52 ? 48 : n - 4;
    buf[k++] = '\'';
    const char *t = v->text;
    for (; *t && k < max; t++) buf[k++] = (unsigned char)*t < 0x20 || *t == 0x7f ? '?' : *t;
    if (*t && k + 3 < n - 2) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k++] = '\'';
    buf[k] = '\0';
    return buf;
}

/* ---- scalars ---- */

static bool parse_bool(const char *t, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    for (int i = 0; yes[i]; i++)
        if (!strcmp(t, yes[i])) { *out = true; return true; }
    for (int i = 0; no[i]; i++)
        if (!strcmp(t, no[i])) { *out = false; return true; }
    return false;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* YAML 1.2 core float/int syntax: [-+]?(.D+|D+(.D*)?)([eE][-+]?D+)? */
static bool number_syntax(const char *t, bool *integer)
{
    const char *s = t;
    if (*s == '+' || *s == '-') s++;
    int digits = 0;
    while (is_digit(*s)) { s++; digits++; }
    *integer = digits > 0 && !*s;
    if (*s == '.') {
        s++;
        while (is_digit(*s)) { s++; digits++; }
    }
    if (!digits) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!is_digit(*s)) return false;
        while (is_digit(*s)) s++;
    }
    return !*s;
}

static bool is_yaml_infinity_or_nan(const char *t)
{
    if (*t == '+' || *t == '-') t++;
    return !strcmp(t, ".inf") || !strcmp(t, ".Inf") || !strcmp(t, ".INF") || !strcmp(t, ".nan") ||
           !strcmp(t, ".NaN") || !strcmp(t, ".NAN");
}

static int check_range(const rctx *c, const opt_key *k, const char *dotted, double x, int line, const char *shown)
{
    if (k->min > k->max) return DS_OK;
    bool omin = k->flags & OPT_MIN_OPEN, omax = k->flags & OPT_MAX_OPEN;
    bool ok = (omin ? x > k->min : x >= k->min) && (omax ? x < k->max : x <= k->max);
    if (ok) return DS_OK;
    char lo[40], hi[40];
    if (k->type == OPT_INT || k->type == OPT_INT_LIST) {
        snprintf(lo, sizeof lo, "%.0f", k->min);
        snprintf(hi, sizeof hi, "%.0f", k->max);
    } else {
        recipe_fmt_double(lo, sizeof lo, k->min);
        recipe_fmt_double(hi, sizeof hi, k->max);
        for (char *b = lo; b; b = b == lo ? hi : NULL) {   /* 10.0 -> 10 */
            size_t n = strlen(b);
            if (n > 2 && !strcmp(b + n - 2, ".0")) b[n - 2] = '\0';
        }
    }
    return rctx_fail(c, line, dotted, "%s is out of range %c%s, %s%c", shown, omin ? '(' : '[', lo, hi,
                     omax ? ')' : ']');
}

static int read_int(const rctx *c, const opt_key *k, const char *dotted, const ynode *v, int64_t *out)
{
    char shown[64];
    if (v->kind != YN_SCALAR || ynode_is_null(v))
        return rctx_fail(c, v->line, dotted, "expected an integer, got %s", recipe_show(v, shown, sizeof shown));
    bool integer;
    if (!number_syntax(v->text, &integer))
        return rctx_fail(c, v->line, dotted, "expected an integer, got %s", recipe_show(v, shown, sizeof shown));
    recipe_show(v, shown, sizeof shown);
    if (integer) {
        errno = 0;
        long long x = strtoll(v->text, NULL, 10);
        if (errno == ERANGE) return rctx_fail(c, v->line, dotted, "%s is too large", shown);
        *out = x;
    } else {   /* 1e3 or 2.0 are integers written as numbers */
        double x = strtod(v->text, NULL);
        if (!isfinite(x) || x != floor(x) || fabs(x) > 9007199254740992.0)
            return rctx_fail(c, v->line, dotted, "expected an integer, got %s", shown);
        *out = (int64_t)x;
    }
    if ((k->flags & OPT_NULLABLE) && *out == -1) return DS_OK;   /* -1 means null, as in transformers */
    return check_range(c, k, dotted, (double)*out, v->line, shown);
}

static int read_float(const rctx *c, const opt_key *k, const char *dotted, const ynode *v, double *out)
{
    char buf[64];
    const char *shown = recipe_show(v, buf, sizeof buf);   /* "a list" is not written into buf */
    if (v->kind == YN_SCALAR && is_yaml_infinity_or_nan(v->text))
        return rctx_fail(c, v->line, dotted, "expected a finite number, got %s", shown);
    bool integer;
    if (v->kind != YN_SCALAR || ynode_is_null(v) || !number_syntax(v->text, &integer))
        return rctx_fail(c, v->line, dotted, "expected a number, got %s", shown);
    double x = strtod(v->text, NULL);
    if (!isfinite(x)) return rctx_fail(c, v->line, dotted, "expected a finite number, got %s", shown);
    *out = x;
    return check_range(c, k, dotted, x, v->line, shown);
}

static int read_string(const rctx *c, const opt_key *k, const char *dotted, const ynode *v, char **out)
{
    char shown[64];
    if (v->kind == YN_SCALAR && ynode_is_null(v) && (k->flags & OPT_NULLABLE)) {
        *out = NULL;
        return DS_OK;
    }
    if (v->kind != YN_SCALAR || ynode_is_null(v)) {
        if (k->type == OPT_CHOICE)
            return rctx_fail(c, v->line, dotted, "expected one of %s, got %s", k->choices,
                             recipe_show(v, shown, sizeof shown));
        return rctx_fail(c, v->line, dotted, "expected a string, got %s", recipe_show(v, shown, sizeof shown));
    }
    if (k->type == OPT_CHOICE && !opt_in_choices(k->choices, v->text))
        return rctx_fail(c, v->line, dotted, "expected one of %s, got %s", k->choices,
                         recipe_show(v, shown, sizeof shown));
    if (!*v->text) return rctx_fail(c, v->line, dotted, "must not be empty");
    *out = ds_strdup(v->text);
    return *out ? DS_OK : DS_ENOMEM;
}

/* Appends a copy of s[0..len); on failure the list is as it was. */
static int strings_push(opt_strings *l, const char *s, size_t len)
{
    char *copy = ds_malloc(len + 1, "a list item");
    if (!copy) return DS_ENOMEM;
    size_t cap = (size_t)l->n;   /* opt_strings keeps no capacity: taken as full */
    if (ds_grow(&l->items, &cap, (size_t)l->n + 1, sizeof *l->items)) {
        free(copy);
        return DS_ENOMEM;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    l->items[l->n++] = copy;
    return DS_OK;
}

/* A list restricted to choices (adapter.lora_target_modules) also takes
 * "a,b" in one string (LLaMA-Factory's lora_target) and "all-linear" (PEFT)
 * or "all" (LLaMA-Factory) for every choice. */
static int read_choice_item(const rctx *c, const opt_key *k, const char *dotted, const char *s, size_t len, int line,
                            opt_strings *l)
{
    char item[128];
    while (len && *s == ' ') { s++; len--; }
    while (len && s[len - 1] == ' ') len--;
    if (len >= sizeof item) len = sizeof item - 1;
    memcpy(item, s, len);
    item[len] = '\0';
    if (!strcmp(item, "all-linear") || !strcmp(item, "all")) {
        for (const char *p = k->choices; p && *p;) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (strings_push(l, p, n)) return DS_ENOMEM;
            p = bar ? bar + 1 : NULL;
        }
        return DS_OK;
    }
    if (!opt_in_choices(k->choices, item))
        return rctx_fail(c, line, dotted, "'%s' is not one of %s (or all-linear)", item, k->choices);
    return strings_push(l, item, len);
}

static int read_string_list(const rctx *c, const opt_key *k, const char *dotted, const ynode *v, opt_strings *out)
{
    char shown[64];
    opt_strings l = {NULL, 0};
    int rc = DS_OK;
    if (v->kind == YN_MAP) return rctx_fail(c, v->line, dotted, "expected a list of strings, got a mapping");
    if (v->kind == YN_SCALAR && !ynode_is_null(v)) {   /* one string stands for a list of one */
        if (k->choices) {
            for (const char *p = v->text; p && !rc;) {
                const char *comma = strchr(p, ',');
                rc = read_choice_item(c, k, dotted, p, comma ? (size_t)(comma - p) : strlen(p), v->line, &l);
                p = comma ? comma + 1 : NULL;
            }
        } else {
            rc = strings_push(&l, v->text, strlen(v->text));
        }
    }
    for (int i = 0; v->kind == YN_SEQ && i < v->n && !rc; i++) {
        const ynode *it = v->kids[i];
        if (it->kind != YN_SCALAR || ynode_is_null(it)) {
            rc = rctx_fail(c, it->line, dotted, "expected a list of strings, item %d is %s", i,
                           recipe_show(it, shown, sizeof shown));
        } else if (k->choices) {
            rc = read_choice_item(c, k, dotted, it->text, strlen(it->text), it->line, &l);
        } else {
            rc = strings_push(&l, it->text, strlen(it->text));
        }
    }
    if (!rc && k->choices) {
        if (l.n == 0) rc = rctx_fail(c, v->line, dotted, "needs at least one of %s", k->choices);
        for (int i = 0; i < l.n && !rc; i++)
            for (int j = 0; j < i && !rc; j++)
                if (!strcmp(l.items[i], l.items[j])) rc = rctx_fail(c, v->line, dotted, "'%s' is listed twice", l.items[i]);
    }
    if (rc) {
        for (int i = 0; i < l.n; i++) free(l.items[i]);
        free(l.items);
        return rc;
    }
    *out = l;
    return DS_OK;
}

static int read_int_list(const rctx *c, const opt_key *k, const char *dotted, const ynode *v, opt_ints *out)
{
    opt_ints l = {NULL, 0};
    if (v->kind == YN_MAP) return rctx_fail(c, v->line, dotted, "expected a list of integers, got a mapping");
    int n = v->kind == YN_SEQ ? v->n : ynode_is_null(v) ? 0 : 1;
    if (n && !(l.items = ds_malloc((size_t)n * sizeof *l.items, "a list of integers"))) return DS_ENOMEM;
    for (int i = 0; i < n; i++) {
        const ynode *it = v->kind == YN_SEQ ? v->kids[i] : v;
        int64_t x;
        opt_key item = *k;
        item.flags &= ~(unsigned)OPT_NULLABLE;
        int rc = read_int(c, &item, dotted, it, &x);
        if (rc) {
            free(l.items);
            return rc;
        }
        l.items[l.n++] = x;
    }
    *out = l;
    return DS_OK;
}

static int set_value(const rctx *c, const opt_key *k, void *base, const ynode *v, const char *dotted)
{
    void *field = (char *)base + k->offset;
    char shown[64];
    switch (k->type) {
    case OPT_BOOL: {
        bool b;
        if (v->kind != YN_SCALAR || ynode_is_null(v) || !parse_bool(v->text, &b))
            return rctx_fail(c, v->line, dotted, "expected true or false, got %s", recipe_show(v, shown, sizeof shown));
        *(bool *)field = b;
        return DS_OK;
    }
    case OPT_INT:
        if (ynode_is_null(v) && (k->flags & OPT_NULLABLE)) {
            *(int64_t *)field = -1;
            return DS_OK;
        }
        return read_int(c, k, dotted, v, (int64_t *)field);
    case OPT_FLOAT:
        return read_float(c, k, dotted, v, (double *)field);
    case OPT_STRING:
    case OPT_CHOICE: {
        char *s = NULL;
        int rc = read_string(c, k, dotted, v, &s);
        if (rc) return rc;
        free(*(char **)field);
        *(char **)field = s;
        return DS_OK;
    }
    case OPT_STRING_LIST: {
        opt_strings l;
        int rc = read_string_list(c, k, dotted, v, &l);
        if (rc) return rc;
        *(opt_strings *)field = l;
        return DS_OK;
    }
    case OPT_INT_LIST: {
        opt_ints l;
        int rc = read_int_list(c, k, dotted, v, &l);
        if (rc) return rc;
        *(opt_ints *)field = l;
        return DS_OK;
    }
    }
    return ds_fail(DS_EINTERNAL, "%s: unknown option type %d", dotted, (int)k->type);
}

static bool in_list(const char *const *list, const char *s)
{
    for (int i = 0; list && list[i]; i++)
        if (!strcmp(list[i], s)) return true;
    return false;
}

int recipe_apply_table(rctx *c, const opt_key *keys, void *base, const ynode *map, int line, const char *prefix,
                       const char *const *extra)
{
    char dotted[300];
    unsigned char seen[128] = {0};
    int nkeys = 0;
    while (keys[nkeys].name) nkeys++;
    if (nkeys > (int)sizeof seen) return ds_fail(DS_EINTERNAL, "%s: option table too long", prefix);
    for (int i = 0; map && i < map->n; i++) {
        const char *name = map->keys[i];
        if (in_list(extra, name)) continue;
        int j = 0;
        while (j < nkeys && strcmp(keys[j].name, name)) j++;
        if (j == nkeys) return recipe_unknown_key(c, map->key_lines[i], prefix, name, keys, extra);
        recipe_join(dotted, sizeof dotted, prefix, name);
        int rc = set_value(c, &keys[j], base, map->kids[i], dotted);
        if (rc) return rc;
        seen[j] = 1;
    }
    for (int j = 0; j < nkeys; j++) {
        if (seen[j]) continue;
        const opt_key *k = &keys[j];
        recipe_join(dotted, sizeof dotted, prefix, k->name);
        if (k->flags & OPT_REQUIRED)
            return rctx_fail(c, line, dotted, "required key is missing: %s", k->help ? k->help : "no default");
        if (!k->def) continue;   /* stays zero / NULL */
        ynode *d = NULL;
        int rc = ynode_parse(k->def, strlen(k->def), dotted, true, &d);
        if (!rc && !d && !(d = ynode_scalar("", false, RLINE_NONE))) rc = DS_ENOMEM;
        if (!rc) rc = set_value(c, k, base, d, dotted);
        ynode_free(d);
        if (rc == DS_ENOMEM) return rc;
        if (rc) return ds_fail_context(DS_EINTERNAL, "default of %s: ", dotted);
    }
    return DS_OK;
}

/* ---- "did you mean" ---- */

/* Optimal-string-alignment distance (a swap of neighbours counts 1). */
static int edit_distance(const char *a, const char *b)
{
    enum { MAXL = 64 };
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la >= MAXL || lb >= MAXL) return 1000;
    int d[MAXL + 1][MAXL + 1];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

typedef struct {
    const char *key;
    int best;
    char name[160];
} suggestion;

static void consider(suggestion *s, const char *prefix, const char *name, int penalty)
{
    int d = edit_distance(s->key, name) + penalty;
    if (d >= s->best) return;
    s->best = d;
    recipe_join(s->name, sizeof s->name, prefix, name);
}

int recipe_unknown_key(const rctx *c, int line, const char *prefix, const char *key, const opt_key *keys,
                       const char *const *extra)
{
    char dotted[300];
    recipe_join(dotted, sizeof dotted, prefix, key);
    if (strchr(key, '.'))
        return rctx_fail(c, line, dotted,
                         "unknown key (dotted names are for command-line overrides; in a recipe, nest the key "
                         "under its section)");
    size_t len = strlen(key);
    int limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;
    suggestion s = {key, limit + 1, ""};
    /* the keys of this mapping, as they are written here */
    for (int i = 0; keys && keys[i].name; i++) consider(&s, "", keys[i].name, 0);
    for (int i = 0; extra && extra[i]; i++) consider(&s, "", extra[i], 0);
    /* every key of the recipe, by its dotted name (a key in the wrong section) */
    for (const recipe_section *sec = RECIPE_SECTIONS; sec->name; sec++) {
        if (prefix && !strcmp(sec->name, prefix)) continue;
        for (int i = 0; sec->keys && sec->keys[i].name; i++) consider(&s, sec->name, sec->keys[i].name, 1);
        for (int i = 0; sec->extra && sec->extra[i]; i++) consider(&s, sec->name, sec->extra[i], 1);
    }
    for (int m = 0; m < loss_count(); m++) {
        const loss_module *mod = loss_at(m);
        for (int i = 0; mod->keys && mod->keys[i].name; i++)
            consider(&s, mod->is_penalty ? "loss.penalties[]" : "loss", mod->keys[i].name, 1);
    }
    if (s.best <= limit) return rctx_fail(c, line, dotted, "unknown key; did you mean '%s'?", s.name);
    return rctx_fail(c, line, dotted, "unknown key (ds-ft --help lists the recipe keys)");
}
