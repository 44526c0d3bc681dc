/* data/template/jinja_strings.c - Python's string and dict methods (strip,
 * split, startswith, replace, upper, ..., items, keys, values, get) and the
 * helpers the filters share with them.
 */
#define _GNU_SOURCE   /* memmem */
#include "jinja_internal.h"

#include "core/utf8.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define NAME_IS(s, lit) (strcmp((s), (lit)) == 0)

int jb_text_of(jrun *r, const jnode *at, jv v, const jstr **out)
{
    if (v.kind == JV_UNDEF) {
        static const jstr empty = {0};
        *out = &empty;
        return 0;
    }
    return jv_as_text(r, at, v, out);
}

int jb_make_str(jrun *r, const jnode *at, const char *s, size_t n, jv *out)
{
    *out = jv_str(r->a, s, n);
    return out->kind == JV_STR ? 0 : jfail_oom(r, at);
}

int jb_list_out(jrun *r, const jnode *at, jlist *l, jv *out)
{
    if (!l) return jfail_oom(r, at);
    out->kind = JV_LIST;
    out->u.l = l;
    return 0;
}

/* ---- strings ---- */

/* s.strip(chars) / lstrip / rstrip: chars NULL = whitespace (Python's isspace). */
static bool strip_hit(uint32_t c, const jstr *chars)
{
    if (!chars) return ju_space(c);
    for (size_t i = 0; i < chars->n;) {
        size_t w;
        uint32_t d = ds_utf8_decode(chars->s + i, chars->n - i, &w);
        if (d == c) return true;
        i += w;
    }
    return false;
}

void jb_strip_span(const jstr *s, const jstr *chars, bool left, bool right, size_t *a, size_t *b)
{
    *a = 0;
    *b = s->n;
    size_t w;
    while (left && *a < *b) {
        uint32_t c = ds_utf8_decode(s->s + *a, *b - *a, &w);
        if (!strip_hit(c, chars)) break;
        *a += w;
    }
    while (right && *b > *a) {
        size_t k = *b - 1;
        while (k > *a && ((unsigned char)s->s[k] & 0xc0) == 0x80) k--;
        uint32_t c = ds_utf8_decode(s->s + k, *b - k, &w);
        if (!strip_hit(c, chars)) break;
        *b = k;
    }
}

int jb_case_map(jrun *r, const jnode *at, const jstr *s, int mode, jv *out)
{
    /* mode 0 lower, 1 upper, 2 capitalize (first upper, rest lower), 3 title */
    jbuf b = {0};
    bool ok = true, word_start = true;
    for (size_t i = 0; i < s->n && ok;) {
        size_t w;
        uint32_t c = ds_utf8_decode(s->s + i, s->n - i, &w);
        bool up = mode == 1 || (mode == 2 && i == 0) || (mode == 3 && word_start);
        uint32_t m = (uint32_t)(up ? utf8proc_toupper((utf8proc_int32_t)c) : utf8proc_tolower((utf8proc_int32_t)c));
        bool alpha = utf8proc_category((utf8proc_int32_t)c) <= UTF8PROC_CATEGORY_LO;
        word_start = !alpha;
        char enc[4];
        ok = jbuf_add(&b, enc, ds_utf8_encode(m, enc));
        i += w;
    }
    int rc = ok ? jb_make_str(r, at, b.s ? b.s : "", b.n, out) : jfail_oom(r, at);
    free(b.s);
    return rc;
}

int jb_str_replace(jrun *r, const jnode *at, const jstr *s, const jstr *old, const jstr *new, int64_t count,
                       jv *out)
{
    jbuf b = {0};
    bool ok = true;
    size_t i = 0;
    int64_t done = 0;
    if (old->n == 0) {                       /* Python inserts `new` around every character */
        while (ok && (count < 0 || done < count)) {
            ok = jbuf_add(&b, new->s, new->n);
            done++;
            if (i >= s->n) break;
            size_t w = ds_utf8_lead_len((unsigned char)s->s[i]);
            ok = ok && jbuf_add(&b, s->s + i, w);
            i += w;
        }
        ok = ok && jbuf_add(&b, s->s + i, s->n - i);
    } else {
        while (ok && i < s->n) {
            const char *hit = (count < 0 || done < count) ? memmem(s->s + i, s->n - i, old->s, old->n) : NULL;
            if (!hit) break;
            ok = jbuf_add(&b, s->s + i, (size_t)(hit - (s->s + i))) && jbuf_add(&b, new->s, new->n);
            i = (size_t)(hit - s->s) + old->n;
            done++;
        }
        ok = ok && jbuf_add(&b, s->s + i, s->n - i);
    }
    int rc = ok ? jb_make_str(r, at, b.s ? b.s : "", b.n, out) : jfail_oom(r, at);
    free(b.s);
    return rc;
}

/* s.split(sep=None, maxsplit=-1) */
static int str_split(jrun *r, const jnode *at, const jstr *s, const jstr *sep, int64_t maxsplit, jv *out)
{
    jv parts[1];
    size_t cap = 8, n = 0;
    jv *v = jarena_alloc(r->a, cap * sizeof *v);
    (void)parts;
    if (!v) return jfail_oom(r, at);
    size_t i = 0, w;
#define PUSH(p, len)                                                         \
    do {                                                                     \
        if (n == cap) {                                                      \
            jv *nv = jarena_alloc(r->a, 2 * cap * sizeof *nv);               \
            if (!nv) return jfail_oom(r, at);                                \
            memcpy(nv, v, n * sizeof *nv);                                   \
            v = nv;                                                          \
            cap *= 2;                                                        \
        }                                                                    \
        if (jb_make_str(r, at, (p), (len), &v[n++])) return -1;                 \
    } while (0)
    if (sep) {
        if (sep->n == 0) return jfail(r, at, "split(): empty separator");
        for (;;) {
            const char *hit = maxsplit < 0 || (int64_t)n < maxsplit ? memmem(s->s + i, s->n - i, sep->s, sep->n) : NULL;
            if (!hit) break;
            PUSH(s->s + i, (size_t)(hit - (s->s + i)));
            i = (size_t)(hit - s->s) + sep->n;
        }
        PUSH(s->s + i, s->n - i);
    } else {
        for (;;) {
            while (i < s->n && ju_space(ds_utf8_decode(s->s + i, s->n - i, &w))) i += w;
            if (i >= s->n) break;
            if (maxsplit >= 0 && (int64_t)n >= maxsplit) {
                size_t e = s->n;
                while (e > i) {               /* the rest, right-stripped */
                    size_t k = e - 1;
                    while (k > i && ((unsigned char)s->s[k] & 0xc0) == 0x80) k--;
                    if (!ju_space(ds_utf8_decode(s->s + k, e - k, &w))) break;
                    e = k;
                }
                PUSH(s->s + i, e - i);
                break;
            }
            size_t j = i;
            while (j < s->n && !ju_space(ds_utf8_decode(s->s + j, s->n - j, &w))) j += w;
            PUSH(s->s + i, j - i);
            i = j;
        }
    }
#undef PUSH
    jlist *l = jarena_alloc(r->a, sizeof *l);
    if (!l) return jfail_oom(r, at);
    l->n = n;
    l->v = v;
    return jb_list_out(r, at, l, out);
}

int jb_want_str(jrun *r, const jnode *at, const char *what, jv v, const jstr **out)
{
    if (v.kind != JV_STR) return jfail(r, at, "%s must be a string, not %s", what, jv_type_name(v));
    *out = v.u.s;
    return 0;
}

int jb_want_int(jrun *r, const jnode *at, const char *what, jv v, int64_t *out)
{
    if (v.kind != JV_INT && v.kind != JV_BOOL) return jfail(r, at, "%s must be an integer, not %s", what, jv_type_name(v));
    *out = v.kind == JV_INT ? v.u.i : v.u.b;
    return 0;
}

static bool prefix_match(const jstr *s, const jstr *p, bool end)
{
    if (p->n > s->n) return false;
    return memcmp(end ? s->s + s->n - p->n : s->s, p->s, p->n) == 0;
}

int jb_join_items(jrun *r, const jnode *at, jlist *items, const jstr *sep, const char *attr, jv *out)
{
    jbuf b = {0};
    bool ok = true;
    int rc = 0;
    for (size_t i = 0; i < items->n && ok && !rc; i++) {
        jv v = items->v[i];
        const jstr *t;
        if (attr && (rc = jb_getattr(r, at, v, attr, strlen(attr), &v))) break;
        if ((rc = jb_text_of(r, at, v, &t))) break;
        ok = (i == 0 || jbuf_add(&b, sep->s, sep->n)) && jbuf_add(&b, t->s, t->n);
    }
    if (!rc) rc = ok ? jb_make_str(r, at, b.s ? b.s : "", b.n, out) : jfail_oom(r, at);
    free(b.s);
    return rc;
}

int jb_call_method(jrun *r, const jnode *at, const jmethod *m, const jv *a, int na, jv *out)
{
    const char *name = m->name;
    jv self = m->self;
    const jstr *s = self.kind == JV_STR ? self.u.s : NULL;
    if (self.kind == JV_DICT) {
        const jdict *d = self.u.d;
        if (NAME_IS(name, "get")) {
            if (na < 1 || na > 2) return jfail(r, at, "get() takes 1 or 2 arguments");
            const jv *v = jv_dict_find(d, a[0]);
            *out = v ? *v : na == 2 ? a[1] : jv_none();
            return 0;
        }
        if (na) return jfail(r, at, "%s() takes no arguments", name);
        jlist *l = jv_newlist(r->a, d->n);
        if (!l) return jfail_oom(r, at);
        for (size_t i = 0; i < d->n; i++) {
            if (NAME_IS(name, "keys")) l->v[i] = d->key[i];
            else if (NAME_IS(name, "values")) l->v[i] = d->val[i];
            else {
                jlist *pair = jv_newlist(r->a, 2);
                if (!pair) return jfail_oom(r, at);
                pair->v[0] = d->key[i];
                pair->v[1] = d->val[i];
                l->v[i].kind = JV_LIST;
                l->v[i].u.l = pair;
            }
        }
        return jb_list_out(r, at, l, out);
    }
    if (NAME_IS(name, "strip") || NAME_IS(name, "lstrip") || NAME_IS(name, "rstrip")) {
        const jstr *chars = NULL;
        if (na > 1) return jfail(r, at, "%s() takes at most 1 argument", name);
        if (na == 1 && a[0].kind != JV_NONE && jb_want_str(r, at, "the characters to strip", a[0], &chars)) return -1;
        size_t x, y;
        jb_strip_span(s, chars, name[0] != 'r', name[0] != 'l', &x, &y);
        return jb_make_str(r, at, s->s + x, y - x, out);
    }
    if (NAME_IS(name, "split")) {
        const jstr *sep = NULL;
        int64_t maxsplit = -1;
        if (na > 2) return jfail(r, at, "split() takes at most 2 arguments");
        if (na >= 1 && a[0].kind != JV_NONE && jb_want_str(r, at, "split()'s separator", a[0], &sep)) return -1;
        if (na == 2 && jb_want_int(r, at, "split()'s maxsplit", a[1], &maxsplit)) return -1;
        return str_split(r, at, s, sep, maxsplit, out);
    }
    if (NAME_IS(name, "startswith") || NAME_IS(name, "endswith")) {
        if (na != 1) return jfail(r, at, "%s() takes 1 argument here", name);
        bool end = name[0] == 'e', hit = false;
        if (a[0].kind == JV_LIST) {
            for (size_t i = 0; i < a[0].u.l->n && !hit; i++) {
                const jstr *p = NULL;
                if (jb_want_str(r, at, name, a[0].u.l->v[i], &p)) return -1;
                hit = prefix_match(s, p, end);
            }
        } else {
            const jstr *p = NULL;
            if (jb_want_str(r, at, name, a[0], &p)) return -1;
            hit = prefix_match(s, p, end);
        }
        *out = jv_bool(hit);
        return 0;
    }
    if (NAME_IS(name, "upper") || NAME_IS(name, "lower") || NAME_IS(name, "capitalize") || NAME_IS(name, "title")) {
        if (na) return jfail(r, at, "%s() takes no arguments", name);
        return jb_case_map(r, at, s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 'c' ? 2 : 3, out);
    }
    if (NAME_IS(name, "replace")) {
        const jstr *old, *new;
        int64_t count = -1;
        if (na < 2 || na > 3) return jfail(r, at, "replace() takes 2 or 3 arguments");
        if (jb_want_str(r, at, "replace()'s old", a[0], &old) || jb_want_str(r, at, "replace()'s new", a[1], &new) ||
            (na == 3 && jb_want_int(r, at, "replace()'s count", a[2], &count)))
            return -1;
        return jb_str_replace(r, at, s, old, new, count, out);
    }
    if (NAME_IS(name, "join")) {
        jlist *items;
        if (na != 1) return jfail(r, at, "join() takes 1 argument");
        if (jb_iter(r, at, a[0], &items)) return -1;
        for (size_t i = 0; i < items->n; i++)
            if (items->v[i].kind != JV_STR) return jfail(r, at, "join(): item %zu is %s, not a string", i, jv_type_name(items->v[i]));
        return jb_join_items(r, at, items, s, NULL, out);
    }
    if (NAME_IS(name, "find")) {
        const jstr *sub;
        if (na != 1 || jb_want_str(r, at, "find()'s argument", a[0], &sub)) return na != 1 ? jfail(r, at, "find() takes 1 argument here") : -1;
        const char *hit = sub->n == 0 ? s->s : memmem(s->s, s->n, sub->s, sub->n);
        *out = jv_int(hit ? (int64_t)ju_len(s->s, (size_t)(hit - s->s)) : -1);
        return 0;
    }
    return jfail(r, at, "method '%s' is not supported", name);
}
