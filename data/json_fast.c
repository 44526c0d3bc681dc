/* data/json_fast.c - a quicker reader for the common JSON record, in front of
 * jansson's (json_parse in json_util.c).
 *
 * jansson reads its input a byte at a time through a stream and copies every
 * string through a growing buffer; on dataset records that is most of the
 * time spent reading them (data/clean's benchmark: under 100 MB/s). This
 * reader scans the text in place, hands unescaped strings to jansson as they
 * are (json_stringn_nocheck, after one UTF-8 check) and builds the same
 * values jansson would build: objects with their keys in order (a repeated
 * key keeps the last value, as json_loadb does without
 * JSON_REJECT_DUPLICATES), integers as json_int_t, other numbers as reals.
 *
 * It only ever accepts what jansson accepts, with the same result: whatever
 * it is not sure of - a syntax error, invalid UTF-8, \u0000, a lone
 * surrogate, a number out of range, deep nesting - it declines, and the
 * caller asks jansson, which gives the verdict and the message. So errors
 * and their wording stay jansson's (tests/test_json_fast.c compares the two
 * on valid, invalid and mutated records).
 */
#include "json_util.h"

#include "core/mem.h"
#include "core/status.h"
#include "core/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 256   /* jansson allows 2048; deeper records are left to it */

typedef struct {
    const char *p, *end;
    char *buf;          /* decoded strings with escapes; keys */
    size_t cap;
    int depth;
    bool oom;           /* a jansson allocation failed: DS_ENOMEM */
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r')) r->p++;
}

static bool room(reader *r, size_t n)
{
    if (n <= r->cap) return true;
    if (ds_grow(&r->buf, &r->cap, n, 1)) return !(r->oom = true);
    return true;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The string at r->p (its opening quote): *s and *n its bytes, in the text
 * itself when it holds no escape, else decoded into r->buf. With `copy` the
 * result is always in r->buf and NUL-terminated (a key). false: declined. */
/* Whether any of the eight bytes of x is a quote, a backslash, a control
 * character (< 0x20), or (in *high) a non-ASCII byte: the bytes that end
 * the quick scan of a string. SWAR: a byte is zero after the XOR exactly
 * where it matched. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull
static inline bool special8(uint64_t x, bool *high)
{
    uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
    uint64_t zero = ((q - ONES) & ~q) | ((b - ONES) & ~b) | ((x - ONES * 0x20) & ~x);
    *high |= (x & HIGHS) != 0;
    return (zero & HIGHS) != 0;
}

static bool read_string(reader *r, bool copy, const char **s, size_t *n)
{
    const char *start = ++r->p, *p = start;
    bool high = false;
    while (r->end - p >= 8) {   /* eight bytes at a time to the first special one */
        uint64_t x;
        memcpy(&x, p, 8);
        if (special8(x, &high)) break;
        p += 8;
    }
    while (p < r->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) {
        high |= (unsigned char)*p >= 0x80;
        p++;
    }
    if (p >= r->end || (unsigned char)*p < 0x20) return false;
    size_t len = (size_t)(p - start);
    if (*p == '"' && !copy) {
        if (high && ds_utf8_valid(start, len) != len) return false;
        *s = start;
        *n = len;
        r->p = p + 1;
        return true;
    }
    if (!room(r, len + 1)) return false;
    memcpy(r->buf, start, len);
    size_t k = len;
    while (p < r->end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20) return false;
        if (!room(r, k + 5)) return false;
        if (c != '\\') {
            r->buf[k++] = (char)c;
            p++;
            continue;
        }
        if (++p >= r->end) return false;
        char e = *p++;
        switch (e) {
        case '"': case '\\': case '/': r->buf[k++] = e; break;
        case 'b': r->buf[k++] = '\b'; break;
        case 'f': r->buf[k++] = '\f'; break;
        case 'n': r->buf[k++] = '\n'; break;
        case 'r': r->buf[k++] = '\r'; break;
        case 't': r->buf[k++] = '\t'; break;
        case 'u': {
            if (r->end - p < 4) return false;
            int cp = hex4(p);
            p += 4;
            if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return false;   /* \u0000, a lone low surrogate */
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (r->end - p < 6 || p[0] != '\\' || p[1] != 'u') return false;
                int lo = hex4(p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            k += ds_utf8_encode((uint32_t)cp, r->buf + k);
            break;
        }
        default: return false;
        }
    }
    if (p >= r->end || ds_utf8_valid(r->buf, k) != k) return false;
    r->buf[k] = '\0';
    r->p = p + 1;
    *s = r->buf;
    *n = k;
    return true;
}

/* A number as jansson reads it: an integer unless it has a fraction or an
 * exponent; out of range declines (jansson's error). */
static json_t *read_number(reader *r)
{
    const char *p = r->p, *e = r->end;
    bool real = false;
    if (p < e && *p == '-') p++;
    if (p < e && *p == '0') p++;
    else if (p < e && *p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return NULL;
    if (p < e && *p == '.') {
        real = true;
        if (++p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        real = true;
        if (++p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return NULL;
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    char num[80];
    size_t n = (size_t)(p - r->p);
    if (n >= sizeof num) return NULL;
    memcpy(num, r->p, n);
    num[n] = '\0';
    errno = 0;
    json_t *v;
    if (real) {
        double x = strtod(num, NULL);
        if (errno || !isfinite(x)) return NULL;
        v = json_real(x);
    } else {
        long long x = strtoll(num, NULL, 10);
        if (errno) return NULL;
        v = json_integer((json_int_t)x);
    }
    if (!v) r->oom = true;
    r->p = p;
    return v;
}

static bool word(reader *r, const char *w, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n)) return false;
    r->p += n;
    return true;
}

static json_t *read_value(reader *r);

static json_t *read_object(reader *r)
{
    json_t *o = json_object();
    if (!o) return r->oom = true, NULL;
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        const char *key;
        size_t klen;
        if (r->p >= r->end || *r->p != '"' || !read_string(r, true, &key, &klen)) break;
        char small[128], *k = klen < sizeof small ? small : ds_malloc(klen + 1, "a JSON key");
        if (!k) {
            r->oom = true;
            break;
        }
        memcpy(k, key, klen + 1);
        skip_ws(r);
        json_t *v = NULL;
        if (r->p < r->end && *r->p == ':') {
            r->p++;
            v = read_value(r);
        }
        int bad = !v || json_object_set_new_nocheck(o, k, v);
        if (v && bad) r->oom = true;
        if (k != small) free(k);
        if (bad) break;
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            skip_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return o;
        }
        break;
    }
    json_decref(o);
    return NULL;
}

static json_t *read_array(reader *r)
{
    json_t *a = json_array();
    if (!a) return r->oom = true, NULL;
    r->p++;
    skip_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = read_value(r);
        if (!v) break;
        if (json_array_append_new(a, v)) {
            r->oom = true;
            break;
        }
        skip_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return a;
        }
        break;
    }
    json_decref(a);
    return NULL;
}

static json_t *read_value(reader *r)
{
    skip_ws(r);
    if (r->p >= r->end) return NULL;
    json_t *v = NULL;
    switch (*r->p) {
    case '{':
    case '[':
        if (++r->depth > MAX_DEPTH) return NULL;
        v = *r->p == '{' ? read_object(r) : read_array(r);
        r->depth--;
        return v;
    case '"': {
        const char *s;
        size_t n;
        if (!read_string(r, false, &s, &n)) return NULL;
        if (!(v = json_stringn_nocheck(s, n))) r->oom = true;
        return v;
    }
    case 't': v = word(r, "true", 4) ? json_true() : NULL; break;
    case 'f': v = word(r, "false", 5) ? json_false() : NULL; break;
    case 'n': v = word(r, "null", 4) ? json_null() : NULL; break;
    default: return read_number(r);
    }
    return v;
}

int json_parse_fast(const char *text, size_t len, json_t **root)
{
    *root = NULL;
    reader r = {text, text + len, NULL, 0, 0, false};
    json_t *v = read_value(&r);
    skip_ws(&r);
    free(r.buf);
    if (r.oom) {   /* the message is set where it failed (core/mem.h, or jansson's allocator's) */
        json_decref(v);
        return DS_ENOMEM;
    }
    if (!v || r.p != r.end) {
        json_decref(v);
        return DS_EDATA;   /* declined: jansson decides */
    }
    *root = v;
    return DS_OK;
}
