/* data/template/jinja_builtins.c - filters, tests and global functions, each
 * as Jinja2 (and transformers) define it. A name that is not here is
 * refused: "filter 'x' is not supported". Methods are in jinja_strings.c.
 */
#define _GNU_SOURCE   /* memmem */
#include "jinja_internal.h"

#include "core/status.h"
#include "core/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME_IS(s, lit) (strcmp((s), (lit)) == 0)

/* ---- global functions ---- */

static const char *const GLOBALS[] = {"namespace", "raise_exception", "strftime_now", "range", "dict",
                                      "lipsum", "cycler", "joiner", NULL};

bool jb_global(const char *name, size_t n, jv *out)
{
    for (int i = 0; GLOBALS[i]; i++)
        if (strlen(GLOBALS[i]) == n && memcmp(GLOBALS[i], name, n) == 0) {
            out->kind = JV_FUNC;
            out->u.func = i;
            return true;
        }
    return false;
}

static int call_global(jrun *r, const jnode *at, int f, const jv *a, int na, const char **kwn, const jv *kwv, int nkw,
                       jv *out)
{
    const char *name = GLOBALS[f];
    if (NAME_IS(name, "namespace") || NAME_IS(name, "dict")) {
        jdict *d = jv_newdict(r->a, (size_t)nkw + 4);
        if (!d) return jfail_oom(r, at);
        if (na > 1 || (na == 1 && a[0].kind != JV_DICT)) return jfail(r, at, "%s() takes keyword arguments or one dict", name);
        for (size_t i = 0; na == 1 && i < a[0].u.d->n; i++)
            if (jv_dict_set(r->a, d, a[0].u.d->key[i], a[0].u.d->val[i])) return jfail_oom(r, at);
        for (int i = 0; i < nkw; i++) {
            jv k = jv_str(r->a, kwn[i], strlen(kwn[i]));
            if (k.kind != JV_STR || jv_dict_set(r->a, d, k, kwv[i])) return jfail_oom(r, at);
        }
        out->kind = NAME_IS(name, "dict") ? JV_DICT : JV_NS;
        out->u.d = d;
        return 0;
    }
    if (nkw) return jfail(r, at, "%s() takes no keyword arguments", name);
    if (NAME_IS(name, "raise_exception")) {
        const jstr *msg;
        if (na != 1 || jb_text_of(r, at, a[0], &msg)) return na != 1 ? jfail(r, at, "raise_exception() takes 1 argument") : -1;
        return jfail(r, at, "the template raised an error: %s", msg->s);
    }
    if (NAME_IS(name, "strftime_now")) {
        const jstr *fmt = NULL;
        if (na != 1 || jb_want_str(r, at, "strftime_now()'s format", a[0], &fmt)) return na != 1 ? jfail(r, at, "strftime_now() takes 1 argument") : -1;
        time_t t = r->now ? (time_t)r->now : time(NULL);
        struct tm tm;
        char buf[256];
        if (!localtime_r(&t, &tm)) return jfail(r, at, "strftime_now(): no local time");
        size_t n = strftime(buf, sizeof buf, fmt->s, &tm);
        if (n == 0 && fmt->n) return jfail(r, at, "strftime_now(): the formatted time is too long");
        return jb_make_str(r, at, buf, n, out);
    }
    if (NAME_IS(name, "range")) {
        int64_t v[3] = {0, 0, 1};
        if (na < 1 || na > 3) return jfail(r, at, "range() takes 1 to 3 arguments");
        for (int i = 0; i < na; i++)
            if (jb_want_int(r, at, "range()'s argument", a[i], &v[na == 1 ? 1 : i])) return -1;
        if (v[2] == 0) return jfail(r, at, "range() step must not be zero");
        int64_t count = v[2] > 0 ? (v[1] > v[0] ? (v[1] - v[0] + v[2] - 1) / v[2] : 0)
                                 : (v[0] > v[1] ? (v[0] - v[1] - v[2] - 1) / -v[2] : 0);
        if (count > 10000000) return jfail(r, at, "range() of %lld items is too long", (long long)count);
        jlist *l = jv_newlist(r->a, (size_t)count);
        if (!l) return jfail_oom(r, at);
        for (int64_t i = 0; i < count; i++) l->v[i] = jv_int(v[0] + i * v[2]);
        return jb_list_out(r, at, l, out);
    }
    return jfail(r, at, "'%s()' is not supported", name);
}

int jb_call(jrun *r, const jnode *at, jv f, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
            jv *out)
{
    if (f.kind == JV_FUNC) return call_global(r, at, f.u.func, args, nargs, kwn, kwv, nkw, out);
    if (f.kind == JV_METHOD) {
        if (nkw) return jfail(r, at, "%s() takes no keyword arguments here", f.u.m->name);
        return jb_call_method(r, at, f.u.m, args, nargs, out);
    }
    return jfail(r, at, "'%s' object is not callable", jv_type_name(f));
}

/* ---- tests ---- */

int jb_test(jrun *r, const jnode *at, const char *name, jv v, const jv *a, int na, bool *res)
{
    int k = v.kind;
    int want = 0;                     /* arguments the test takes */
    if (NAME_IS(name, "defined")) *res = k != JV_UNDEF;
    else if (NAME_IS(name, "undefined")) *res = k == JV_UNDEF;
    else if (NAME_IS(name, "none")) *res = k == JV_NONE;
    else if (NAME_IS(name, "boolean")) *res = k == JV_BOOL;
    else if (NAME_IS(name, "true")) *res = k == JV_BOOL && v.u.b;
    else if (NAME_IS(name, "false")) *res = k == JV_BOOL && !v.u.b;
    else if (NAME_IS(name, "integer")) *res = k == JV_INT;
    else if (NAME_IS(name, "float")) *res = k == JV_FLOAT;
    else if (NAME_IS(name, "number")) *res = k == JV_INT || k == JV_FLOAT || k == JV_BOOL;
    else if (NAME_IS(name, "string")) *res = k == JV_STR;
    else if (NAME_IS(name, "mapping")) *res = k == JV_DICT;
    else if (NAME_IS(name, "iterable") || NAME_IS(name, "sequence"))
        *res = k == JV_STR || k == JV_LIST || k == JV_DICT || k == JV_UNDEF;
    else if (NAME_IS(name, "callable")) *res = k == JV_FUNC || k == JV_METHOD || k == JV_MACRO;
    else if (NAME_IS(name, "lower") || NAME_IS(name, "upper")) {
        jv m;
        if (k != JV_STR) *res = false;
        else if (jb_case_map(r, at, v.u.s, name[0] == 'u', &m)) return -1;
        else *res = jv_equal(m, v);
    } else if (NAME_IS(name, "odd") || NAME_IS(name, "even")) {    /* value % 2 == 1 (or 0), as Jinja2 */
        jv m;
        if (k == JV_STR) return jfail(r, at, "test '%s' of a string is not supported", name);
        if (jb_binop(r, at, OP_MOD, v, jv_int(2), &m)) return -1;
        *res = jv_equal(m, jv_int(name[0] == 'o' ? 1 : 0));
    } else {
        want = 1;
        if (na != 1) return jfail(r, at, "test '%s' takes 1 argument", name);
        bool out;
        int op = 0;
        if (NAME_IS(name, "equalto") || NAME_IS(name, "eq") || NAME_IS(name, "==") || NAME_IS(name, "sameas")) op = OP_EQ;
        else if (NAME_IS(name, "ne") || NAME_IS(name, "!=")) op = OP_NE;
        else if (NAME_IS(name, "lt") || NAME_IS(name, "lessthan")) op = OP_LT;
        else if (NAME_IS(name, "le")) op = OP_LE;
        else if (NAME_IS(name, "gt") || NAME_IS(name, "greaterthan")) op = OP_GT;
        else if (NAME_IS(name, "ge")) op = OP_GE;
        else if (NAME_IS(name, "in")) op = OP_IN;
        else if (NAME_IS(name, "divisibleby")) {
            int64_t x, y;
            if (jb_want_int(r, at, name, v, &x) || jb_want_int(r, at, name, a[0], &y)) return -1;
            if (y == 0) return jfail(r, at, "divisibleby 0");
            *res = x % y == 0;
            return 0;
        } else {
            return jfail(r, at, "test '%s' is not supported", name);
        }
        if (NAME_IS(name, "sameas")) {
            *res = v.kind == a[0].kind && jv_equal(v, a[0]);
            return 0;
        }
        if (jb_compare(r, at, op, v, a[0], &out)) return -1;
        *res = out;
        return 0;
    }
    if (na != want) return jfail(r, at, "test '%s' takes no argument", name);
    return 0;
}

/* ---- filters ---- */

/* seq|selectattr(attr, test, arg) and friends: whether item passes. */
static int item_test(jrun *r, const jnode *at, jv item, const char *attr, const jv *a, int na, bool *pass)
{
    if (attr) {
        /* dotted attributes: "a.b" */
        const char *p = attr;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t n = dot ? (size_t)(dot - p) : strlen(p);
            if (jb_getattr(r, at, item, p, n, &item)) return -1;
            p += n + (dot ? 1 : 0);
        }
    }
    if (na == 0) {
        *pass = jv_truthy(item);
        return 0;
    }
    const jstr *test = NULL;
    if (jb_want_str(r, at, "the test name", a[0], &test)) return -1;
    return jb_test(r, at, test->s, item, a + 1, na - 1, pass);
}

static int select_items(jrun *r, const jnode *at, const char *name, jv in, const jv *a, int na, jv *out)
{
    bool by_attr = strstr(name, "attr") != NULL, keep = name[0] == 's';
    const char *attr = NULL;
    if (by_attr) {
        const jstr *s = NULL;
        if (na < 1 || jb_want_str(r, at, "the attribute name", a[0], &s)) return na < 1 ? jfail(r, at, "%s needs an attribute", name) : -1;
        attr = s->s;
        a++, na--;
    }
    jlist *items, *l;
    if (jb_iter(r, at, in, &items) || !(l = jv_newlist(r->a, items->n))) return r->e->rc ? -1 : jfail_oom(r, at);
    l->n = 0;
    for (size_t i = 0; i < items->n; i++) {
        bool pass;
        if (item_test(r, at, items->v[i], attr, a, na, &pass)) return -1;
        if (pass == keep) l->v[l->n++] = items->v[i];
    }
    return jb_list_out(r, at, l, out);
}

static int filter_tojson(jrun *r, const jnode *at, jv in, const jv *a, int na, const char **kwn, const jv *kwv, int nkw,
                         jv *out)
{
    static const char *const params[] = {"ensure_ascii", "indent", "separators", "sort_keys"};
    jv p[4] = {jv_bool(false), jv_none(), jv_none(), jv_bool(false)};
    if (na > 4) return jfail(r, at, "tojson takes at most 4 arguments");
    for (int i = 0; i < na; i++) p[i] = a[i];
    for (int k = 0; k < nkw; k++) {
        int i = 0;
        while (i < 4 && strcmp(params[i], kwn[k]) != 0) i++;
        if (i == 4) return jfail(r, at, "tojson has no argument '%s'", kwn[k]);
        p[i] = kwv[k];
    }
    if (jv_truthy(p[0])) return jfail(r, at, "tojson(ensure_ascii=True) is not supported");
    if (p[2].kind != JV_NONE) return jfail(r, at, "tojson(separators=...) is not supported");
    if (jv_truthy(p[3])) return jfail(r, at, "tojson(sort_keys=True) is not supported");
    int64_t indent = -1;
    if (p[1].kind != JV_NONE && jb_want_int(r, at, "tojson's indent", p[1], &indent)) return -1;
    if (indent < 0 && p[1].kind != JV_NONE) indent = 0;
    if (indent > 64) return jfail(r, at, "tojson indent %lld is too large", (long long)indent);
    jbuf b = {.max = r->out.max};
    bool bad = false;
    if (!jv_to_json(&b, in, (int)indent, 0, &bad)) {
        free(b.s);
        if (bad) return jfail(r, at, "tojson: a %s is not JSON serializable", in.kind == JV_UNDEF ? "undefined value" : "value here");
        return b.oom ? jfail_oom(r, at) : jfail(r, at, "tojson: the text passes %zu bytes", b.max);
    }
    int rc = jb_make_str(r, at, b.s ? b.s : "", b.n, out);
    free(b.s);
    return rc;
}

int jb_filter(jrun *r, const jnode *at, const char *name, jv in, const jv *a, int na, const char **kwn, const jv *kwv,
              int nkw, jv *out)
{
    const jstr *s;
    if (NAME_IS(name, "tojson")) return filter_tojson(r, at, in, a, na, kwn, kwv, nkw, out);
    if (NAME_IS(name, "default") || NAME_IS(name, "d")) {
        bool boolean = (na >= 2 && jv_truthy(a[1])) || (nkw == 1 && NAME_IS(kwn[0], "boolean") && jv_truthy(kwv[0]));
        jv def = na >= 1 ? a[0] : (jv){0};
        if (na < 1 && jb_make_str(r, at, "", 0, &def)) return -1;
        *out = in.kind == JV_UNDEF || (boolean && !jv_truthy(in)) ? def : in;
        return 0;
    }
    if (NAME_IS(name, "selectattr") || NAME_IS(name, "rejectattr") || NAME_IS(name, "select") || NAME_IS(name, "reject"))
        return select_items(r, at, name, in, a, na, out);
    if (nkw && !NAME_IS(name, "join") && !NAME_IS(name, "map"))
        return jfail(r, at, "filter '%s' takes no keyword arguments here", name);
    if (NAME_IS(name, "trim")) {
        const jstr *chars = NULL;
        if (jb_text_of(r, at, in, &s) || (na == 1 && a[0].kind != JV_NONE && jb_want_str(r, at, "trim's characters", a[0], &chars)))
            return -1;
        size_t x, y;
        jb_strip_span(s, chars, true, true, &x, &y);
        return jb_make_str(r, at, s->s + x, y - x, out);
    }
    if (NAME_IS(name, "length") || NAME_IS(name, "count")) {
        switch (in.kind) {
        case JV_UNDEF: *out = jv_int(0); return 0;
        case JV_STR: *out = jv_int((int64_t)ju_len(in.u.s->s, in.u.s->n)); return 0;
        case JV_LIST: *out = jv_int((int64_t)in.u.l->n); return 0;
        case JV_DICT: *out = jv_int((int64_t)in.u.d->n); return 0;
        default: return jfail(r, at, "object of type '%s' has no length", jv_type_name(in));
        }
    }
    if (NAME_IS(name, "string")) {
        if (jb_text_of(r, at, in, &s)) return -1;
        out->kind = JV_STR;
        out->u.s = s;
        return 0;
    }
    if (NAME_IS(name, "lower") || NAME_IS(name, "upper") || NAME_IS(name, "capitalize") || NAME_IS(name, "title"))
        return jb_text_of(r, at, in, &s) ? -1 : jb_case_map(r, at, s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3, out);
    if (NAME_IS(name, "first") || NAME_IS(name, "last")) {
        jlist *items;
        if (jb_iter(r, at, in, &items)) return -1;
        *out = items->n ? items->v[name[0] == 'f' ? 0 : items->n - 1] : jv_undef(name);
        return 0;
    }
    if (NAME_IS(name, "join")) {
        const jstr *sep = NULL;
        const char *attr = NULL;
        jlist *items;
        if (na >= 1 && jb_want_str(r, at, "join's separator", a[0], &sep)) return -1;
        for (int k = 0; k < nkw; k++) {
            if (NAME_IS(kwn[k], "attribute") && kwv[k].kind == JV_STR) attr = kwv[k].u.s->s;
            else if (NAME_IS(kwn[k], "d") && !jb_want_str(r, at, "join's separator", kwv[k], &sep)) continue;
            else return jfail(r, at, "join has no argument '%s'", kwn[k]);
        }
        if (!sep) {
            static const jstr empty = {0};
            sep = &empty;
        }
        return jb_iter(r, at, in, &items) ? -1 : jb_join_items(r, at, items, sep, attr, out);
    }
    if (NAME_IS(name, "replace")) {
        const jstr *old, *new;
        int64_t count = -1;
        if (na < 2 || na > 3) return jfail(r, at, "replace takes 2 or 3 arguments");
        if (jb_text_of(r, at, in, &s) || jb_want_str(r, at, "replace's old", a[0], &old) ||
            jb_want_str(r, at, "replace's new", a[1], &new) || (na == 3 && jb_want_int(r, at, "replace's count", a[2], &count)))
            return -1;
        return jb_str_replace(r, at, s, old, new, count, out);
    }
    if (NAME_IS(name, "list")) {
        jlist *items;
        if (jb_iter(r, at, in, &items)) return -1;
        if (items->tuple) {                       /* list(a_tuple) is a list */
            jlist *l = jv_newlist(r->a, items->n);
            if (!l) return jfail_oom(r, at);
            if (items->n) memcpy(l->v, items->v, items->n * sizeof *l->v);
            items = l;
        }
        return jb_list_out(r, at, items, out);
    }
    if (NAME_IS(name, "items")) {
        if (in.kind == JV_UNDEF) return jb_list_out(r, at, jv_newlist(r->a, 0), out);
        if (in.kind != JV_DICT) return jfail(r, at, "items: a %s is not a mapping", jv_type_name(in));
        jmethod m = {in, "items"};
        return jb_call_method(r, at, &m, NULL, 0, out);
    }
    if (NAME_IS(name, "map")) {
        jlist *items, *l;
        const char *attr = NULL;
        for (int k = 0; k < nkw; k++) {
            if (NAME_IS(kwn[k], "attribute") && kwv[k].kind == JV_STR) attr = kwv[k].u.s->s;
            else return jfail(r, at, "map(%s=...) is not supported", kwn[k]);
        }
        if (!attr && (na < 1 || a[0].kind != JV_STR)) return jfail(r, at, "map needs attribute= or a filter name");
        if (jb_iter(r, at, in, &items) || !(l = jv_newlist(r->a, items->n))) return r->e->rc ? -1 : jfail_oom(r, at);
        for (size_t i = 0; i < items->n; i++) {
            int rc = attr ? jb_getattr(r, at, items->v[i], attr, strlen(attr), &l->v[i])
                          : jb_filter(r, at, a[0].u.s->s, items->v[i], a + 1, na - 1, NULL, NULL, 0, &l->v[i]);
            if (rc) return -1;
        }
        return jb_list_out(r, at, l, out);
    }
    if (NAME_IS(name, "int") || NAME_IS(name, "float") || NAME_IS(name, "abs")) {
        double f;
        if (in.kind == JV_INT || in.kind == JV_BOOL) f = (double)(in.kind == JV_INT ? in.u.i : in.u.b);
        else if (in.kind == JV_FLOAT) f = in.u.f;
        else if (in.kind == JV_STR && !NAME_IS(name, "abs")) {
            char *end;
            f = strtod(in.u.s->s, &end);
            if (end == in.u.s->s) f = 0;
        } else if (NAME_IS(name, "abs")) {
            return jfail(r, at, "abs of a %s", jv_type_name(in));
        } else {
            f = 0;
        }
        if (NAME_IS(name, "abs")) *out = in.kind == JV_FLOAT ? jv_float(f < 0 ? -f : f) : jv_int(f < 0 ? -(int64_t)f : (int64_t)f);
        else *out = name[0] == 'i' ? jv_int((int64_t)f) : jv_float(f);
        return 0;
    }
    if (NAME_IS(name, "safe")) {               /* autoescape is off: safe changes nothing */
        *out = in;
        return 0;
    }
    return jfail(r, at, "filter '%s' is not supported", name);
}
