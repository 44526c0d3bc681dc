/* finetune/cli/cli_args.c - the command line read through each command's option
 * table (commands.h): the parser and --help read the same rows, so the help
 * shows every option the parser takes, with the default it fills in. */
#include "commands.h"

#include "core/mem.h"
#include "core/options.h"
#include "core/files.h"
#include "core/status.h"
#include "data/hub/hub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void *field(void *opts, const cli_opt *o) { return (char *)opts + o->offset; }

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }
static bool is_option(const char *a) { return a[0] == '-' && a[1] != '\0'; }

/* ---- usage and help ---- */

/* What an option's value looks like in the usage: its meta, or its choices. */
static const char *value_meta(const cli_opt *o)
{
    if (o->kind == ARG_FLAG) return "";
    if (o->kind == ARG_CHOICE && !o->meta) return o->choices;
    return o->meta ? o->meta : "VALUE";
}

const char *cli_usage(const cli_spec *s, char *buf, size_t n)
{
    if (s->usage) {
        snprintf(buf, n, "%s %s", s->name, s->usage);
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "%s%s%s", s->name, *s->args ? " " : "", s->args);
    for (const cli_opt *o = s->opts; o && o->name && k < n; o++) {
        const char *meta = value_meta(o);
        k += (size_t)snprintf(buf + k, n - k, o->required ? " %s%s%s" : " [%s%s%s]", o->name, *meta ? " " : "", meta);
        if (o->kind == ARG_FILES && k < n) k += (size_t)snprintf(buf + k, n - k, "...");
    }
    return buf;
}

void cli_help(const cli_spec *s, FILE *f)
{
    char usage[2048];
    fprintf(f, "usage: ds-ft %s\n%s\n", cli_usage(s, usage, sizeof usage), s->summary);
    fprintf(f, "\noptions:\n");
    for (const cli_opt *o = s->opts; o && o->name; o++) {
        char left[128];
        const char *meta = value_meta(o);
        snprintf(left, sizeof left, "%s%s%s%s", o->name, *meta ? " " : "", meta, o->kind == ARG_FILES ? "..." : "");
        if (strlen(left) > 28) fprintf(f, "  %s\n  %-28s %s", left, "", o->help);   /* a long left column gets its own line */
        else fprintf(f, "  %-28s %s", left, o->help);
        if (o->required) fprintf(f, " (required)\n");
        else fprintf(f, " (default: %s)\n", o->def ? o->def : o->kind == ARG_FLAG ? "off" : "none");
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "print this help and exit");
    if (s->more_help) s->more_help(f);
}

int cli_fail(const cli_spec *s, const char *fmt, ...)
{
    char msg[1024], usage[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ds_fail(DS_EUSAGE, "%s: %s (usage: ds-ft %s)", s->name, msg, cli_usage(s, usage, sizeof usage));
}

/* ---- parsing ---- */

static int set_default(const cli_opt *o, void *opts)
{
    void *f = field(opts, o);
    switch (o->kind) {
    case ARG_FLAG: *(bool *)f = false; break;
    case ARG_CHOICE: *(const char **)f = o->def; break;
    case ARG_INT: *(long *)f = o->def ? strtol(o->def, NULL, 10) : 0; break;
    case ARG_NUM: *(double *)f = o->def ? strtod(o->def, NULL) : 0; break;
    case ARG_FILES: *(cli_list *)f = (cli_list){0}; break;
    default: *(const char **)f = NULL; break;
    }
    return DS_OK;
}

/* One value into its field, checked as the table says. */
static int set_value(const cli_spec *s, const cli_opt *o, const char *v, void *opts)
{
    void *f = field(opts, o);
    char *end;
    errno = 0;
    switch (o->kind) {
    case ARG_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < o->lo || x > o->hi)
            return ds_fail(DS_EUSAGE, "%s: %s takes a whole number from %.0f to %.0f, not '%s'", s->name, o->name, o->lo,
                           o->hi, v);
        *(long *)f = x;
        return DS_OK;
    }
    case ARG_NUM: {
        double x = strtod(v, &end);
        if (end == v || *end || errno || !(x >= o->lo && x <= o->hi))
            return ds_fail(DS_EUSAGE, "%s: %s takes a number from %g to %g, not '%s'", s->name, o->name, o->lo, o->hi, v);
        *(double *)f = x;
        return DS_OK;
    }
    case ARG_CHOICE:
        if (!opt_in_choices(o->choices, v))
            return ds_fail(DS_EUSAGE, "%s: %s takes %s, not '%s'", s->name, o->name, o->choices, v);
        *(const char **)f = v;
        return DS_OK;
    default:
        *(const char **)f = v;
        return DS_OK;
    }
}

/* Hand s (malloc'd) to the parse, which frees it in cli_parsed_free. The
 * list grows by one each time: a parse keeps a handful. */
static int keep(cli_parsed *p, void *s)
{
    char **grown = s ? ds_malloc(((size_t)p->nowned + 1) * sizeof *grown, "the arguments") : NULL;
    if (!grown) {
        free(s);
        return DS_ENOMEM;
    }
    if (p->nowned) memcpy(grown, p->owned, (size_t)p->nowned * sizeof *grown);
    free(p->owned);
    p->owned = grown;
    p->owned[p->nowned++] = s;
    return DS_OK;
}

/* --x FILE...: the arguments after argv[*i] up to the next option, added to
 * the list (an option of this kind may be given more than once). */
static int take_files(const cli_spec *s, const cli_opt *o, int argc, char **argv, int *i, cli_list *l, cli_parsed *p)
{
    int first = *i + 1, n = 0;
    while (first + n < argc && !is_option(argv[first + n])) n++;
    if (n == 0) return cli_fail(s, "%s needs at least one %s", o->name, o->meta);
    const char **items = ds_calloc((size_t)(l->n + n), sizeof *items, "the arguments");
    int rc = items ? keep(p, items) : DS_ENOMEM;
    if (rc) return rc;
    if (l->n) memcpy(items, l->items, (size_t)l->n * sizeof *items);
    memcpy(items + l->n, argv + first, (size_t)n * sizeof *items);
    l->items = items;
    l->n += n;
    *i += n;
    return DS_OK;
}

/* Model and tokenizer options: the folder, found in the Hub cache when the value is an id. */
static int resolve_folders(const cli_spec *s, void *opts, cli_parsed *p)
{
    int i = 0;
    for (const cli_opt *o = s->opts; o->name; o++, i++) {
        if ((o->kind != ARG_MODEL && o->kind != ARG_TOKENIZER) || !(p->given >> i & 1)) continue;
        const char **f = field(opts, o);
        char *dir;
        int rc = hub_resolve(*f, o->name, o->kind == ARG_MODEL ? HUB_MODEL : HUB_TOKENIZER, &dir, NULL);
        if (!rc) rc = keep(p, dir);
        if (rc) return ds_fail_context(rc, "%s: ", s->name);
        *f = dir;
    }
    return DS_OK;
}

static const cli_opt *find(const cli_spec *s, const char *name, int *index)
{
    *index = 0;
    for (const cli_opt *o = s->opts; o && o->name; o++, (*index)++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

int cli_parse(const cli_spec *s, int argc, char **argv, void *opts, cli_parsed *p)
{
    memset(p, 0, sizeof *p);
    for (const cli_opt *o = s->opts; o && o->name; o++) set_default(o, opts);
    p->args = ds_calloc((size_t)argc + 1, sizeof *p->args, "the arguments");
    if (!p->args) return DS_ENOMEM;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!is_option(a)) {
            p->args[p->nargs++] = argv[i];
            continue;
        }
        if (is_help(a)) {
            cli_help(s, stdout);
            return CLI_HELP;
        }
        int k;
        const cli_opt *o = find(s, a, &k);
        if (!o) return ds_fail(DS_EUSAGE, "%s: unknown option '%s' (see ds-ft %s --help)", s->name, a, s->name);
        if ((p->given >> k & 1) && o->kind != ARG_FILES) return ds_fail(DS_EUSAGE, "%s: %s given twice", s->name, a);
        p->given |= 1ull << k;
        if (o->kind == ARG_FLAG) {
            *(bool *)field(opts, o) = true;
        } else if (o->kind == ARG_FILES) {
            int rc = take_files(s, o, argc, argv, &i, field(opts, o), p);
            if (rc) return rc;
        } else {
            if (i + 1 >= argc || is_help(argv[i + 1])) return cli_fail(s, "%s needs a value (%s)", a, value_meta(o));
            int rc = set_value(s, o, argv[++i], opts);
            if (rc) return rc;
        }
    }
    int k = 0;
    for (const cli_opt *o = s->opts; o && o->name; o++, k++)
        if (o->required && !(p->given >> k & 1)) return cli_fail(s, "missing %s %s", o->name, value_meta(o));
    if (p->nargs < s->min_args) return cli_fail(s, "missing %s", s->args);
    if (s->max_args >= 0 && p->nargs > s->max_args) return cli_fail(s, "unexpected argument '%s'", p->args[s->max_args]);
    return resolve_folders(s, opts, p);
}

bool cli_given(const cli_spec *s, const cli_parsed *p, const char *name)
{
    int k;
    return find(s, name, &k) && (p->given >> k & 1);
}

void cli_parsed_free(cli_parsed *p)
{
    for (int i = 0; i < p->nowned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->args);
    memset(p, 0, sizeof *p);
}

int cli_output(const cli_spec *s, const char *out, bool force, const char *const *inputs)
{
    for (int i = 0; inputs && inputs[i]; i++)
        if (ds_same_file(out, inputs[i]))
            return cli_fail(s, "--out %s is an input of the command itself; choose another", out);
    return ds_check_output(out, force, "--force");
}
