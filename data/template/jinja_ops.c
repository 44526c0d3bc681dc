/* data/template/jinja_ops.c - Python's semantics for the values: attribute
 * and item access (Jinja2's sandboxed getattr: a missing one is Undefined),
 * slicing, iteration, arithmetic and comparison.
 */
#define _GNU_SOURCE   /* memmem */
#include "jinja_internal.h"

#include "core/utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_num(jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }
static bool is_intlike(jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }
static int64_t ival(jv v) { return v.kind == JV_INT ? v.u.i : v.u.b; }
static double fval(jv v) { return v.kind == JV_FLOAT ? v.u.f : (double)ival(v); }

static int undefined_use(jrun *r, const jnode *at, jv v, const char *what)
{
    return jfail(r, at, "'%s' is undefined (%s)", v.u.undef ? v.u.undef : "value", what);
}

/* Method names of Python's str, dict and list: those this interpreter has
 * are bound, the others refused by name rather than read as undefined. */
static const char *const STR_METHODS[] = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                          "lower", "replace", "join", "title", "capitalize", "find", NULL};
static const char *const STR_OTHER[] = {"casefold", "center", "count", "encode", "expandtabs", "format", "format_map",
                                        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
                                        "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle",
                                        "isupper", "ljust", "maketrans", "partition", "removeprefix", "removesuffix",
                                        "rfind", "rindex", "rjust", "rpartition", "rsplit", "splitlines", "swapcase",
                                        "translate", "zfill", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const DICT_OTHER[] = {"clear", "copy", "fromkeys", "pop", "popitem", "setdefault", "update", NULL};
static const char *const LIST_OTHER[] = {"append", "clear", "copy", "count", "extend", "index", "insert", "pop",
                                         "remove", "reverse", "sort", NULL};

static int in_list(const char *const *names, const char *name, size_t n)
{
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0) return i;
    return -1;
}

static int bind(jrun *r, const jnode *at, jv self, const char *const *names, int i, jv *out)
{
    jmethod *m = jarena_alloc(r->a, sizeof *m);
    if (!m) return jfail_oom(r, at);
    m->self = self;
    m->name = names[i];
    out->kind = JV_METHOD;
    out->u.m = m;
    return 0;
}

int jb_getattr(jrun *r, const jnode *at, jv obj, const char *name, size_t n, jv *out)
{
    int i;
    *out = jv_undef(name);
    switch (obj.kind) {
    case JV_UNDEF: return undefined_use(r, at, obj, "reading its attribute");
    case JV_STR:
        if ((i = in_list(STR_METHODS, name, n)) >= 0) return bind(r, at, obj, STR_METHODS, i, out);
        if (in_list(STR_OTHER, name, n) >= 0) return jfail(r, at, "string method '%.*s' is not supported", (int)n, name);
        return 0;
    case JV_DICT: {
        if ((i = in_list(DICT_METHODS, name, n)) >= 0) return bind(r, at, obj, DICT_METHODS, i, out);
        if (in_list(DICT_OTHER, name, n) >= 0)
            return jfail(r, at, "dict method '%.*s' is not supported (templates render in an immutable sandbox)",
                         (int)n, name);
        const jv *v = jv_dict_get(obj.u.d, name, n);
        if (v) *out = *v;
        return 0;
    }
    case JV_NS: {
        const jv *v = jv_dict_get(obj.u.d, name, n);
        if (v) *out = *v;
        return 0;
    }
    case JV_LIST:
        if (in_list(LIST_OTHER, name, n) >= 0)
            return jfail(r, at, "list method '%.*s' is not supported (templates render in an immutable sandbox)",
                         (int)n, name);
        return 0;
    case JV_LOOP: {
        const jloop *l = obj.u.loop;
        static const char *const attrs[] = {"index", "index0", "revindex", "revindex0", "first", "last", "length",
                                            "previtem", "nextitem", NULL};
        switch (in_list(attrs, name, n)) {
        case 0: *out = jv_int(l->index0 + 1); return 0;
        case 1: *out = jv_int(l->index0); return 0;
        case 2: *out = jv_int(l->length - l->index0); return 0;
        case 3: *out = jv_int(l->length - l->index0 - 1); return 0;
        case 4: *out = jv_bool(l->index0 == 0); return 0;
        case 5: *out = jv_bool(l->index0 == l->length - 1); return 0;
        case 6: *out = jv_int(l->length); return 0;
        case 7: *out = l->prev; return 0;
        case 8: *out = l->next; return 0;
        default: return jfail(r, at, "loop.%.*s is not supported", (int)n, name);
        }
    }
    default: return 0;   /* none, numbers, functions: no attributes (Undefined) */
    }
}

/* Python's index normalization: -1 is the last; false when out of range. */
static bool norm_index(jv key, size_t len, size_t *out)
{
    if (!is_intlike(key)) return false;
    int64_t i = ival(key);
    if (i < 0) i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len) return false;
    *out = (size_t)i;
    return true;
}

int jb_getitem(jrun *r, const jnode *at, jv obj, jv key, jv *out)
{
    size_t i;
    *out = jv_undef(key.kind == JV_STR ? key.u.s->s : "item");
    switch (obj.kind) {
    case JV_UNDEF: return undefined_use(r, at, obj, "reading its item");
    case JV_DICT: case JV_NS: {
        const jv *v = jv_dict_find(obj.u.d, key);
        if (v) *out = *v;
        else if (key.kind == JV_STR && obj.kind == JV_DICT) return jb_getattr(r, at, obj, key.u.s->s, key.u.s->n, out);
        return 0;
    }
    case JV_LIST:
        if (norm_index(key, obj.u.l->n, &i)) *out = obj.u.l->v[i];
        return 0;
    case JV_STR: {
        const jstr *s = obj.u.s;
        if (key.kind == JV_STR) return jb_getattr(r, at, obj, key.u.s->s, key.u.s->n, out);
        if (!norm_index(key, ju_len(s->s, s->n), &i)) return 0;
        size_t off = ju_offset(s->s, s->n, i);
        *out = jv_str(r->a, s->s + off, ds_utf8_lead_len((unsigned char)s->s[off]));
        return out->kind == JV_STR ? 0 : jfail_oom(r, at);
    }
    case JV_LOOP:
        if (key.kind == JV_STR) return jb_getattr(r, at, obj, key.u.s->s, key.u.s->n, out);
        return 0;
    default: return 0;
    }
}

static int slice_bound(jrun *r, const jnode *at, jv v, int64_t *out, bool *given)
{
    *given = v.kind != JV_NONE;
    if (!*given) return 0;
    if (!is_intlike(v)) return jfail(r, at, "slice indices must be integers or none, not %s", jv_type_name(v));
    *out = ival(v);
    return 0;
}

int jb_slice(jrun *r, const jnode *at, jv obj, jv start, jv stop, jv step, jv *out)
{
    int64_t a = 0, b = 0, st = 1;
    bool ga, gb, gs;
    if (obj.kind == JV_UNDEF) return undefined_use(r, at, obj, "slicing it");
    if (slice_bound(r, at, start, &a, &ga) || slice_bound(r, at, stop, &b, &gb) || slice_bound(r, at, step, &st, &gs))
        return -1;
    if (st == 0) return jfail(r, at, "slice step cannot be zero");
    if (obj.kind != JV_LIST && obj.kind != JV_STR) {
        *out = jv_undef("slice");
        return 0;
    }
    int64_t len = obj.kind == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)ju_len(obj.u.s->s, obj.u.s->n);
    /* Python's slice.indices */
    int64_t lo = st < 0 ? -1 : 0, hi = st < 0 ? len - 1 : len;
    if (!ga) a = st < 0 ? hi : lo;
    else if (a < 0) a = a + len < lo ? lo : a + len;
    else if (a > hi) a = hi;
    if (!gb) b = st < 0 ? lo : hi;
    else if (b < 0) b = b + len < lo ? lo : b + len;
    else if (b > hi) b = hi;
    size_t count = 0;
    if (st > 0 && b > a) count = (size_t)((b - a + st - 1) / st);
    if (st < 0 && a > b) count = (size_t)((a - b - st - 1) / -st);
    if (obj.kind == JV_LIST) {
        jlist *l = jv_newlist(r->a, count);
        if (!l) return jfail_oom(r, at);
        for (size_t k = 0; k < count; k++) l->v[k] = obj.u.l->v[a + (int64_t)k * st];
        l->tuple = obj.u.l->tuple;
        out->kind = JV_LIST;
        out->u.l = l;
        return 0;
    }
    const jstr *s = obj.u.s;
    size_t *offs = jarena_alloc(r->a, ((size_t)len + 1) * sizeof *offs);
    if (!offs) return jfail_oom(r, at);
    for (size_t i = 0, k = 0; k <= (size_t)len; k++) {
        offs[k] = i;
        if (i < s->n) i += ds_utf8_lead_len((unsigned char)s->s[i]);
    }
    jbuf b2 = {0};
    bool ok = true;
    for (size_t k = 0; k < count && ok; k++) {
        int64_t c = a + (int64_t)k * st;
        ok = jbuf_add(&b2, s->s + offs[c], offs[c + 1] - offs[c]);
    }
    if (ok) *out = jv_str(r->a, b2.s ? b2.s : "", b2.n);
    free(b2.s);
    return ok && out->kind == JV_STR ? 0 : jfail_oom(r, at);
}

int jb_iter(jrun *r, const jnode *at, jv v, jlist **out)
{
    static jlist empty;
    switch (v.kind) {
    case JV_UNDEF: *out = &empty; return 0;
    case JV_LIST: *out = (jlist *)v.u.l; return 0;
    case JV_DICT: {
        jlist *l = jv_newlist(r->a, v.u.d->n);
        if (!l) return jfail_oom(r, at);
        for (size_t i = 0; i < v.u.d->n; i++) l->v[i] = v.u.d->key[i];
        *out = l;
        return 0;
    }
    case JV_STR: {
        const jstr *s = v.u.s;
        jlist *l = jv_newlist(r->a, ju_len(s->s, s->n));
        if (!l) return jfail_oom(r, at);
        for (size_t i = 0, k = 0; i < s->n; k++) {
            size_t w = ds_utf8_lead_len((unsigned char)s->s[i]);
            l->v[k] = jv_str(r->a, s->s + i, w);
            if (l->v[k].kind != JV_STR) return jfail_oom(r, at);
            i += w;
        }
        *out = l;
        return 0;
    }
    default: return jfail(r, at, "'%s' object is not iterable", jv_type_name(v));
    }
}

static const char *op_name(int op)
{
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">",
                                        ">=", "in", "not in"};
    return names[op];
}

static int unsupported(jrun *r, const jnode *at, int op, jv a, jv b)
{
    if (a.kind == JV_UNDEF) return undefined_use(r, at, a, op_name(op));
    if (b.kind == JV_UNDEF) return undefined_use(r, at, b, op_name(op));
    return jfail(r, at, "unsupported operand types for %s: '%s' and '%s'", op_name(op), jv_type_name(a), jv_type_name(b));
}

static int repeat(jrun *r, const jnode *at, jv seq, int64_t times, jv *out)
{
    if (times < 0) times = 0;
    size_t unit = seq.kind == JV_STR ? seq.u.s->n : seq.u.l->n;
    size_t most = r->a->limit ? r->a->limit : SIZE_MAX / 64;
    if (unit && (uint64_t)times > most / unit) return jfail(r, at, "the render needs more than %zu bytes of memory", most);
    if (seq.kind == JV_STR) {
        jstr *s = jarena_alloc(r->a, sizeof *s + unit * (size_t)times + 1);
        if (!s) return jfail_oom(r, at);
        for (int64_t k = 0; k < times; k++) memcpy(s->s + unit * (size_t)k, seq.u.s->s, unit);
        s->n = unit * (size_t)times;
        out->kind = JV_STR;
        out->u.s = s;
        return 0;
    }
    jlist *l = jv_newlist(r->a, unit * (size_t)times);
    if (!l) return jfail_oom(r, at);
    for (int64_t k = 0; k < times; k++) memcpy(l->v + unit * (size_t)k, seq.u.l->v, unit * sizeof *l->v);
    out->kind = JV_LIST;
    out->u.l = l;
    return 0;
}

int jb_binop(jrun *r, const jnode *at, int op, jv a, jv b, jv *out)
{
    if (op == OP_CONCAT) {
        const jstr *x, *y;
        if (jv_as_text(r, at, a, &x) || jv_as_text(r, at, b, &y)) return -1;
        jstr *s = jarena_alloc(r->a, sizeof *s + x->n + y->n + 1);
        if (!s) return jfail_oom(r, at);
        memcpy(s->s, x->s, x->n);
        memcpy(s->s + x->n, y->s, y->n);
        s->n = x->n + y->n;
        out->kind = JV_STR;
        out->u.s = s;
        return 0;
    }
    if (op == OP_ADD && ((a.kind == JV_STR && b.kind == JV_STR) || (a.kind == JV_LIST && b.kind == JV_LIST))) {
        if (a.kind == JV_STR) return jb_binop(r, at, OP_CONCAT, a, b, out);
        jlist *l = jv_newlist(r->a, a.u.l->n + b.u.l->n);
        if (!l) return jfail_oom(r, at);
        memcpy(l->v, a.u.l->v, a.u.l->n * sizeof *l->v);
        memcpy(l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof *l->v);
        out->kind = JV_LIST;
        out->u.l = l;
        return 0;
    }
    if (op == OP_MUL && (a.kind == JV_STR || a.kind == JV_LIST) && is_intlike(b)) return repeat(r, at, a, ival(b), out);
    if (op == OP_MUL && (b.kind == JV_STR || b.kind == JV_LIST) && is_intlike(a)) return repeat(r, at, b, ival(a), out);
    if (op == OP_MOD && a.kind == JV_STR) return jfail(r, at, "string formatting with '%%' is not supported");
    if (!is_num(a) || !is_num(b)) return unsupported(r, at, op, a, b);
    if (is_intlike(a) && is_intlike(b) && op != OP_DIV) {
        int64_t x = ival(a), y = ival(b), z = 0;
        bool ovf = false;
        switch (op) {
        case OP_ADD: ovf = __builtin_add_overflow(x, y, &z); break;
        case OP_SUB: ovf = __builtin_sub_overflow(x, y, &z); break;
        case OP_MUL: ovf = __builtin_mul_overflow(x, y, &z); break;
        case OP_FLOORDIV: case OP_MOD:
            if (y == 0) return jfail(r, at, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) { ovf = true; break; }
            z = op == OP_FLOORDIV ? x / y : x % y;
            if (op == OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) z--;
            if (op == OP_MOD && z != 0 && ((z < 0) != (y < 0))) z += y;
            break;
        case OP_POW:
            if (y < 0) {
                *out = jv_float(pow((double)x, (double)y));
                return 0;
            }
            z = 1;
            for (int64_t k = 0; k < y && !ovf; k++) ovf = __builtin_mul_overflow(z, x, &z);
            if (x == 0 || x == 1) ovf = false, z = y == 0 ? 1 : x;
            break;
        }
        if (ovf) return jfail(r, at, "integer overflow in %s", op_name(op));
        *out = jv_int(z);
        return 0;
    }
    double x = fval(a), y = fval(b), z;
    switch (op) {
    case OP_ADD: z = x + y; break;
    case OP_SUB: z = x - y; break;
    case OP_MUL: z = x * y; break;
    case OP_DIV:
        if (y == 0) return jfail(r, at, "division by zero");
        z = x / y;
        break;
    case OP_FLOORDIV: case OP_MOD: {       /* CPython's float divmod */
        if (y == 0) return jfail(r, at, "float division or modulo by zero");
        double mod = fmod(x, y), div = (x - mod) / y;
        if (mod != 0 && ((y < 0) != (mod < 0))) {
            mod += y;
            div -= 1.0;
        }
        double fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
        z = op == OP_MOD ? mod : fl;
        break;
    }
    case OP_POW: z = pow(x, y); break;
    default: return unsupported(r, at, op, a, b);
    }
    *out = jv_float(z);
    return 0;
}

static int order(jrun *r, const jnode *at, int op, jv a, jv b, int *cmp)
{
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b)) *cmp = ival(a) < ival(b) ? -1 : ival(a) > ival(b);
        else *cmp = fval(a) < fval(b) ? -1 : fval(a) > fval(b) ? 1 : 0;
        return 0;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.u.s->n < b.u.s->n ? a.u.s->n : b.u.s->n;
        int c = memcmp(a.u.s->s, b.u.s->s, n);
        *cmp = c ? (c < 0 ? -1 : 1) : a.u.s->n < b.u.s->n ? -1 : a.u.s->n > b.u.s->n;
        return 0;
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i])) continue;
            return order(r, at, op, a.u.l->v[i], b.u.l->v[i], cmp);
        }
        *cmp = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return 0;
    }
    return unsupported(r, at, op, a, b);
}

int jb_compare(jrun *r, const jnode *at, int op, jv a, jv b, bool *out)
{
    int c = 0;
    switch (op) {
    case OP_EQ: *out = jv_equal(a, b); return 0;
    case OP_NE: *out = !jv_equal(a, b); return 0;
    case OP_IN: case OP_NOTIN: {
        bool found = false;
        if (b.kind == JV_STR) {
            if (a.kind != JV_STR) return jfail(r, at, "'in <string>' requires a string, not %s", jv_type_name(a));
            found = a.u.s->n == 0 || (a.u.s->n <= b.u.s->n && memmem(b.u.s->s, b.u.s->n, a.u.s->s, a.u.s->n));
        } else if (b.kind == JV_LIST) {
            for (size_t i = 0; i < b.u.l->n && !found; i++) found = jv_equal(a, b.u.l->v[i]);
        } else if (b.kind == JV_DICT || b.kind == JV_NS) {
            found = jv_dict_find(b.u.d, a) != NULL;
        } else if (b.kind != JV_UNDEF) {
            return jfail(r, at, "argument of type '%s' is not iterable", jv_type_name(b));
        }
        *out = op == OP_IN ? found : !found;
        return 0;
    }
    default:
        if (order(r, at, op, a, b, &c)) return -1;
        *out = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
        return 0;
    }
}
