/* data/template/jinja_value.c - the arena, values, and their text: Python's
 * str() and repr(), json.dumps as transformers' tojson calls it, and
 * conversion from JSON.
 */
#include "jinja_internal.h"

#include "core/mem.h"
#include "core/status.h"
#include "core/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---- */

struct jarena_block {
    jarena_block *next;
    size_t used, cap;
    _Alignas(8) unsigned char data[];
};

void *jarena_alloc(jarena *a, size_t bytes)
{
    bytes = (bytes + 7) & ~(size_t)7;
    if (bytes == 0) bytes = 8;
    if (a->limit && (bytes > a->limit || a->used > a->limit - bytes)) return NULL;
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < bytes) {
        size_t cap = bytes > 64 * 1024 ? bytes : 64 * 1024;
        b = ds_malloc(sizeof *b + cap, "a template's values");
        if (!b) {
            a->oom = true;
            return NULL;
        }
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += bytes;
    a->used += bytes;
    memset(p, 0, bytes);
    return p;
}

void jarena_free(jarena *a)
{
    for (jarena_block *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->head = NULL;
    a->used = 0;
}

int jerr_set(jerr *e, int line, int col, const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(e->msg, sizeof e->msg, "%s:%d:%d: %s", e->name ? e->name : "template", line, col, msg);
    if (!e->rc) e->rc = DS_EDATA;
    return -1;
}

/* ---- constructors ---- */

jstr *jv_newstr(jarena *a, const char *s, size_t n)
{
    jstr *t = jarena_alloc(a, sizeof *t + n + 1);
    if (!t) return NULL;
    t->n = n;
    if (n) memcpy(t->s, s, n);
    t->s[n] = '\0';
    return t;
}

jv jv_str(jarena *a, const char *s, size_t n)
{
    jv v = {.kind = JV_STR};
    v.u.s = jv_newstr(a, s, n);
    if (!v.u.s) return jv_undef(NULL);
    return v;
}

jlist *jv_newlist(jarena *a, size_t n)
{
    jlist *l = jarena_alloc(a, sizeof *l);
    if (!l) return NULL;
    l->n = n;
    l->v = n ? jarena_alloc(a, n * sizeof *l->v) : NULL;
    return n && !l->v ? NULL : l;
}

jdict *jv_newdict(jarena *a, size_t cap)
{
    jdict *d = jarena_alloc(a, sizeof *d);
    if (!d) return NULL;
    d->cap = cap < 4 ? 4 : cap;
    d->key = jarena_alloc(a, d->cap * sizeof *d->key);
    d->val = jarena_alloc(a, d->cap * sizeof *d->val);
    return d->key && d->val ? d : NULL;
}

const jv *jv_dict_find(const jdict *d, jv key)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->key[i], key)) return &d->val[i];
    return NULL;
}

const jv *jv_dict_get(const jdict *d, const char *key, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->key[i].kind == JV_STR && d->key[i].u.s->n == n && memcmp(d->key[i].u.s->s, key, n) == 0)
            return &d->val[i];
    return NULL;
}

int jv_dict_set(jarena *a, jdict *d, jv key, jv val)
{
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->key[i], key)) {
            d->val[i] = val;
            return DS_OK;
        }
    if (d->n == d->cap) {    /* grow: the old arrays stay in the arena */
        size_t cap = 2 * d->cap;
        jv *k = jarena_alloc(a, cap * sizeof *k), *v = jarena_alloc(a, cap * sizeof *v);
        if (!k || !v) return -1;
        memcpy(k, d->key, d->n * sizeof *k);
        memcpy(v, d->val, d->n * sizeof *v);
        d->key = k;
        d->val = v;
        d->cap = cap;
    }
    d->key[d->n] = key;
    d->val[d->n] = val;
    d->n++;
    return DS_OK;
}

/* ---- truth, equality, names ---- */

bool jv_truthy(jv v)
{
    switch (v.kind) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s->n > 0;
    case JV_LIST: return v.u.l->n > 0;
    case JV_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

static bool is_number(jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }
static double num(jv v) { return v.kind == JV_FLOAT ? v.u.f : v.kind == JV_INT ? (double)v.u.i : (double)v.u.b; }

bool jv_equal(jv a, jv b)
{
    if (is_number(a) && is_number(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT)
            return (a.kind == JV_INT ? a.u.i : a.u.b) == (b.kind == JV_INT ? b.u.i : b.u.b);
        return num(a) == num(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.u.s->n == b.u.s->n && memcmp(a.u.s->s, b.u.s->s, a.u.s->n) == 0;
    case JV_LIST:
        if (a.u.l->n != b.u.l->n || a.u.l->tuple != b.u.l->tuple) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT: {
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            const jv *o = jv_dict_find(b.u.d, a.u.d->key[i]);
            if (!o || !jv_equal(a.u.d->val[i], *o)) return false;
        }
        return true;
    }
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.func == b.u.func;
    case JV_MACRO: return a.u.macro == b.u.macro;
    default: return false;
    }
}

const char *jv_type_name(jv v)
{
    static const char *const names[] = {"undefined", "none", "bool", "int", "float", "string", "list", "dict",
                                        "namespace", "loop", "function", "method", "macro"};
    return names[v.kind];
}

/* ---- text ---- */

bool jbuf_add(jbuf *b, const char *s, size_t n)
{
    if (b->over || b->oom) return false;
    if ((b->max && n > b->max - b->n) || n >= SIZE_MAX - b->n) {
        b->over = true;
        return false;
    }
    if (ds_grow(&b->s, &b->cap, b->n + n + 1, 1)) {
        b->oom = true;
        return false;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return true;
}

static bool add_str(jbuf *b, const char *s) { return jbuf_add(b, s, strlen(s)); }

/* Python's repr(float): the shortest digits that read back, in fixed
 * notation for exponents -5 < e < 16, else scientific ("1e-05", "1e+16"). */
void jv_float_repr(double f, char out[40])
{
    if (isnan(f)) { strcpy(out, "nan"); return; }
    if (isinf(f)) { strcpy(out, f < 0 ? "-inf" : "inf"); return; }
    char tmp[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp: [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = tmp[0] == '-';
    const char *s = tmp + neg;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[nd++] = *s;
    int e = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *w = out;
    if (neg) *w++ = '-';
    if (e >= 16 || e < -4) {
        *w++ = digits[0];
        if (nd > 1) {
            *w++ = '.';
            memcpy(w, digits + 1, (size_t)nd - 1);
            w += nd - 1;
        }
        sprintf(w, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (e < 0) {
        *w++ = '0';
        *w++ = '.';
        for (int k = -1; k > e; k--) *w++ = '0';
        memcpy(w, digits, (size_t)nd);
        w += nd;
    } else {
        for (int k = 0; k <= e; k++) *w++ = k < nd ? digits[k] : '0';
        *w++ = '.';
        if (nd > e + 1) {
            memcpy(w, digits + e + 1, (size_t)(nd - e - 1));
            w += nd - e - 1;
        } else {
            *w++ = '0';
        }
    }
    *w = '\0';
}

/* Python's repr(str): single quotes unless the text holds ' and no ". */
static bool repr_str(jbuf *b, const jstr *s)
{
    bool sq = memchr(s->s, '\'', s->n) != NULL, dq = memchr(s->s, '"', s->n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    bool ok = jbuf_add(b, &q, 1);
    for (size_t i = 0; i < s->n && ok; i++) {
        unsigned char c = (unsigned char)s->s[i];
        char esc[8];
        if (c == '\\') ok = add_str(b, "\\\\");
        else if (c == (unsigned char)q) ok = jbuf_add(b, "\\", 1) && jbuf_add(b, &q, 1);
        else if (c == '\n') ok = add_str(b, "\\n");
        else if (c == '\r') ok = add_str(b, "\\r");
        else if (c == '\t') ok = add_str(b, "\\t");
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            ok = add_str(b, esc);
        } else {
            ok = jbuf_add(b, (const char *)&s->s[i], 1);
        }
    }
    return ok && jbuf_add(b, &q, 1);
}

static bool to_text(jbuf *b, jv v, bool repr)
{
    char num_s[40];
    switch (v.kind) {
    case JV_UNDEF: return true;
    case JV_NONE: return add_str(b, "None");
    case JV_BOOL: return add_str(b, v.u.b ? "True" : "False");
    case JV_INT: snprintf(num_s, sizeof num_s, "%lld", (long long)v.u.i); return add_str(b, num_s);
    case JV_FLOAT: jv_float_repr(v.u.f, num_s); return add_str(b, num_s);
    case JV_STR: return repr ? repr_str(b, v.u.s) : jbuf_add(b, v.u.s->s, v.u.s->n);
    case JV_LIST: {
        bool tuple = v.u.l->tuple, ok = add_str(b, tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n && ok; i++) ok = (i == 0 || add_str(b, ", ")) && to_text(b, v.u.l->v[i], true);
        if (ok && tuple && v.u.l->n == 1) ok = add_str(b, ",");
        return ok && add_str(b, tuple ? ")" : "]");
    }
    case JV_DICT: case JV_NS: {
        bool ok = add_str(b, v.kind == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.u.d->n && ok; i++)
            ok = (i == 0 || add_str(b, ", ")) && to_text(b, v.u.d->key[i], true) && add_str(b, ": ") &&
                 to_text(b, v.u.d->val[i], true);
        return ok && add_str(b, v.kind == JV_NS ? "}>" : "}");
    }
    default:
        return add_str(b, "<") && add_str(b, jv_type_name(v)) && add_str(b, ">");
    }
}

bool jv_to_str(jbuf *b, jv v) { return to_text(b, v, false); }
bool jv_repr(jbuf *b, jv v) { return to_text(b, v, true); }

/* ---- json.dumps ---- */

static bool json_str(jbuf *b, const char *s, size_t n)
{
    bool ok = add_str(b, "\"");
    for (size_t i = 0; i < n && ok; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '"': ok = add_str(b, "\\\""); break;
        case '\\': ok = add_str(b, "\\\\"); break;
        case '\n': ok = add_str(b, "\\n"); break;
        case '\r': ok = add_str(b, "\\r"); break;
        case '\t': ok = add_str(b, "\\t"); break;
        case '\b': ok = add_str(b, "\\b"); break;
        case '\f': ok = add_str(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                ok = add_str(b, esc);
            } else {
                ok = jbuf_add(b, s + i, 1);
            }
        }
    }
    return ok && add_str(b, "\"");
}

static bool newline_indent(jbuf *b, int indent, int level)
{
    bool ok = add_str(b, "\n");
    for (int i = 0; i < indent * level && ok; i++) ok = add_str(b, " ");
    return ok;
}

bool jv_to_json(jbuf *b, jv v, int indent, int level, bool *bad_type)
{
    char num_s[40];
    const char *item_sep = indent >= 0 ? "," : ", ";
    switch (v.kind) {
    case JV_NONE: return add_str(b, "null");
    case JV_BOOL: return add_str(b, v.u.b ? "true" : "false");
    case JV_INT: snprintf(num_s, sizeof num_s, "%lld", (long long)v.u.i); return add_str(b, num_s);
    case JV_FLOAT:
        if (isnan(v.u.f)) return add_str(b, "NaN");
        if (isinf(v.u.f)) return add_str(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        jv_float_repr(v.u.f, num_s);
        return add_str(b, num_s);
    case JV_STR: return json_str(b, v.u.s->s, v.u.s->n);
    case JV_LIST: {
        if (v.u.l->n == 0) return add_str(b, "[]");
        bool ok = add_str(b, "[");
        for (size_t i = 0; i < v.u.l->n && ok; i++) {
            if (i) ok = add_str(b, item_sep);
            if (ok && indent >= 0) ok = newline_indent(b, indent, level + 1);
            if (ok) ok = jv_to_json(b, v.u.l->v[i], indent, level + 1, bad_type);
        }
        if (ok && indent >= 0) ok = newline_indent(b, indent, level);
        return ok && add_str(b, "]");
    }
    case JV_DICT: {
        if (v.u.d->n == 0) return add_str(b, "{}");
        bool ok = add_str(b, "{");
        for (size_t i = 0; i < v.u.d->n && ok; i++) {
            jv k = v.u.d->key[i];
            if (i) ok = add_str(b, item_sep);
            if (ok && indent >= 0) ok = newline_indent(b, indent, level + 1);
            if (!ok) break;
            if (k.kind == JV_STR) ok = json_str(b, k.u.s->s, k.u.s->n);
            else if (k.kind == JV_INT || k.kind == JV_FLOAT || k.kind == JV_BOOL || k.kind == JV_NONE) {
                jbuf t = {0};          /* json.dumps writes such keys as strings */
                ok = jv_to_json(&t, k, -1, 0, bad_type) && json_str(b, t.s, t.n);
                free(t.s);
            } else {
                *bad_type = true;
                return false;
            }
            ok = ok && add_str(b, ": ") && jv_to_json(b, v.u.d->val[i], indent, level + 1, bad_type);
        }
        if (ok && indent >= 0) ok = newline_indent(b, indent, level);
        return ok && add_str(b, "}");
    }
    default:
        *bad_type = true;
        return false;
    }
}

/* ---- JSON in ---- */

int jv_from_json(jarena *a, const json_t *j, int depth, jv *out)
{
    if (depth > 200) return DS_EDATA;
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return DS_OK;
    case JSON_TRUE: *out = jv_bool(true); return DS_OK;
    case JSON_FALSE: *out = jv_bool(false); return DS_OK;
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return DS_OK;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return DS_OK;
    case JSON_STRING:
        *out = jv_str(a, json_string_value(j), json_string_length(j));
        return out->kind == JV_STR ? DS_OK : DS_EINTERNAL;
    case JSON_ARRAY: {
        jlist *l = jv_newlist(a, json_array_size(j));
        if (!l) return DS_EINTERNAL;
        for (size_t i = 0; i < l->n; i++) {
            int rc = jv_from_json(a, json_array_get(j, i), depth + 1, &l->v[i]);
            if (rc) return rc;
        }
        out->kind = JV_LIST;
        out->u.l = l;
        return DS_OK;
    }
    case JSON_OBJECT: {
        jdict *d = jv_newdict(a, json_object_size(j));
        if (!d) return DS_EINTERNAL;
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)j, key, v) {
            jv k = jv_str(a, key, strlen(key)), val;
            int rc = k.kind == JV_STR ? jv_from_json(a, v, depth + 1, &val) : DS_EINTERNAL;
            if (!rc && jv_dict_set(a, d, k, val)) rc = DS_EINTERNAL;
            if (rc) return rc;
        }
        out->kind = JV_DICT;
        out->u.d = d;
        return DS_OK;
    }
    }
    return DS_EINTERNAL;
}

/* ---- code points ---- */

size_t ju_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80) c++;
    return c;
}

size_t ju_offset(const char *s, size_t n, size_t cp)
{
    size_t i = 0;
    while (i < n && cp > 0) {
        i += ds_utf8_lead_len((unsigned char)s[i]);
        cp--;
    }
    return i < n ? i : n;
}

bool ju_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}
