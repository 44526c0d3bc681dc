/* core/options.c - setting option-table fields from text, defaults, freeing. */
#define _GNU_SOURCE
#include "options.h"
#include "status.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const opt_key *opt_find(const opt_key *keys, const char *name)
{
    for (const opt_key *k = keys; k && k->name; k++)
        if (!strcmp(k->name, name)) return k;
    return NULL;
}

static bool is_null(const char *t) { return !strcmp(t, "null") || !strcmp(t, "~") || !*t; }

static int parse_bool(const char *t, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "on"}, *const no[] = {"false", "False", "FALSE", "no", "off"};
    for (int i = 0; i < 5; i++) {
        if (!strcmp(t, yes[i])) { *out = true; return 0; }
        if (!strcmp(t, no[i])) { *out = false; return 0; }
    }
    return -1;
}

static int parse_double(const char *t, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (end == t || *end || errno == ERANGE || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *t, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (end == t || *end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

static bool has_range(const opt_key *k) { return k->min <= k->max; }

static int check_range(const opt_key *k, double v)
{
    if (has_range(k) && (v < k->min || v > k->max))
        return ds_fail(DS_ECONFIG, "%s: %g is out of range [%g, %g]", k->name, v, k->min, k->max);
    return DS_OK;
}

static bool in_choices(const char *choices, const char *t)
{
    size_t n = strlen(t);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, t, n)) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

/* Split "[a, b, c]" into trimmed items (quotes removed). NULL if not a list. */
static char **split_list(const char *t, int *n)
{
    size_t len = strlen(t);
    *n = 0;
    if (len < 2 || t[0] != '[' || t[len - 1] != ']') return NULL;
    char *body = strndup(t + 1, len - 2);
    char **items = NULL;
    char *save = NULL;
    for (char *tok = strtok_r(body, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok)) tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1])) *--end = '\0';
        if ((*tok == '"' || *tok == '\'') && end - tok >= 2 && end[-1] == *tok) {
            end[-1] = '\0';
            tok++;
        }
        if (!*tok && !items) continue;
        items = realloc(items, sizeof *items * (size_t)(*n + 1));
        items[(*n)++] = strdup(tok);
    }
    free(body);
    if (!items) items = calloc(1, sizeof *items);
    return items;
}

static void free_items(char **items, int n)
{
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
}

int opt_set_text(const opt_key *k, void *cfg, const char *t)
{
    char *field = (char *)cfg + k->offset;
    switch (k->type) {
    case OPT_BOOL: {
        bool v;
        if (parse_bool(t, &v)) return ds_fail(DS_ECONFIG, "%s: expected true or false, got '%s'", k->name, t);
        *(bool *)field = v;
        return DS_OK;
    }
    case OPT_INT: {
        int64_t v;
        if ((k->flags & OPT_NULLABLE) && is_null(t)) {
            *(int64_t *)field = -1;
            return DS_OK;
        }
        double d;
        if (parse_int(t, &v)) {
            if (parse_double(t, &d) || d != floor(d) || fabs(d) > 9e15)
                return ds_fail(DS_ECONFIG, "%s: expected an integer, got '%s'", k->name, t);
            v = (int64_t)d;
        }
        int rc = check_range(k, (double)v);
        if (rc) return rc;
        *(int64_t *)field = v;
        return DS_OK;
    }
    case OPT_FLOAT: {
        double v;
        if (parse_double(t, &v)) return ds_fail(DS_ECONFIG, "%s: expected a number, got '%s'", k->name, t);
        int rc = check_range(k, v);
        if (rc) return rc;
        *(double *)field = v;
        return DS_OK;
    }
    case OPT_STRING:
    case OPT_CHOICE: {
        char **s = (char **)field;
        if (is_null(t) && k->type == OPT_STRING) {
            free(*s);
            *s = NULL;
            return DS_OK;
        }
        if (k->type == OPT_CHOICE && !in_choices(k->choices, t))
            return ds_fail(DS_ECONFIG, "%s: '%s' is not one of %s", k->name, t, k->choices);
        free(*s);
        *s = strdup(t);
        return DS_OK;
    }
    case OPT_STRING_LIST:
    case OPT_INT_LIST: {
        int n;
        char **items = split_list(t, &n);
        if (!items) {   /* a single value is a list of one */
            items = malloc(sizeof *items);
            items[0] = strdup(t);
            n = 1;
        }
        if (k->type == OPT_STRING_LIST) {
            opt_strings *l = (opt_strings *)field;
            free_items(l->items, l->n);
            l->items = items;
            l->n = n;
            return DS_OK;
        }
        int64_t *vals = malloc(sizeof *vals * (size_t)(n ? n : 1));
        for (int i = 0; i < n; i++) {
            if (parse_int(items[i], &vals[i]) || check_range(k, (double)vals[i])) {
                int rc = ds_fail(DS_ECONFIG, "%s: '%s' is not a valid integer here", k->name, items[i]);
                free(vals);
                free_items(items, n);
                return rc;
            }
        }
        free_items(items, n);
        opt_ints *l = (opt_ints *)field;
        free(l->items);
        l->items = vals;
        l->n = n;
        return DS_OK;
    }
    }
    return ds_fail(DS_EINTERNAL, "%s: unknown option type", k->name);
}

int opt_defaults(const opt_key *keys, void *cfg)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        if (!k->def) continue;
        int rc = opt_set_text(k, cfg, k->def);
        if (rc) return ds_fail_context(DS_EINTERNAL, "bad default: ");
    }
    return DS_OK;
}

void opt_free(const opt_key *keys, void *cfg)
{
    for (const opt_key *k = keys; k && k->name; k++) {
        char *field = (char *)cfg + k->offset;
        if (k->type == OPT_STRING || k->type == OPT_CHOICE) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (k->type == OPT_STRING_LIST) {
            opt_strings *l = (opt_strings *)field;
            free_items(l->items, l->n);
            l->items = NULL;
            l->n = 0;
        } else if (k->type == OPT_INT_LIST) {
            opt_ints *l = (opt_ints *)field;
            free(l->items);
            l->items = NULL;
            l->n = 0;
        }
    }
}

char *opt_format(const opt_key *k, const void *cfg)
{
    const char *field = (const char *)cfg + k->offset;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    switch (k->type) {
    case OPT_BOOL: fputs(*(const bool *)field ? "true" : "false", f); break;
    case OPT_INT: {
        int64_t v = *(const int64_t *)field;
        if ((k->flags & OPT_NULLABLE) && v < 0) fputs("null", f);
        else fprintf(f, "%lld", (long long)v);
        break;
    }
    case OPT_FLOAT: fprintf(f, "%.17g", *(const double *)field); break;
    case OPT_STRING:
    case OPT_CHOICE: {
        const char *s = *(char *const *)field;
        if (!s) fputs("null", f);
        else {
            fputc('"', f);
            for (const char *p = s; *p; p++) {
                if (*p == '"' || *p == '\\') fputc('\\', f);
                fputc(*p, f);
            }
            fputc('"', f);
        }
        break;
    }
    case OPT_STRING_LIST: {
        const opt_strings *l = (const opt_strings *)field;
        fputc('[', f);
        for (int i = 0; i < l->n; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", l->items[i]);
        fputc(']', f);
        break;
    }
    case OPT_INT_LIST: {
        const opt_ints *l = (const opt_ints *)field;
        fputc('[', f);
        for (int i = 0; i < l->n; i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)l->items[i]);
        fputc(']', f);
        break;
    }
    }
    fclose(f);
    return out;
}
