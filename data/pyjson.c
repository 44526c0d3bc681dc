/* data/pyjson.c - Python-compatible JSON text (see pyjson.h). */
#include "pyjson.h"

#include "core/utf8.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pyjson_repr_double(double x, char *buf, size_t n)
{
    if (isnan(x)) return snprintf(buf, n, "NaN");
    if (isinf(x)) return snprintf(buf, n, x < 0 ? "-Infinity" : "Infinity");
    if (x == 0) return snprintf(buf, n, signbit(x) ? "-0.0" : "0.0");

    /* Shortest round-tripping digits: the correctly rounded decimal with the
     * fewest significant digits that reads back as x. */
    char tmp[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp = "[-]d.ddde[+-]XX": split into sign, digits and exponent. */
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    int exp10 = atoi(p + 1);      /* x = d.ddd * 10^exp10 */
    int decpt = exp10 + 1;        /* x = 0.dddd * 10^decpt */

    char out[48];
    int k = 0;
    if (neg) out[k++] = '-';
    if (decpt <= -4 || decpt > 16) {
        out[k++] = digits[0];
        if (nd > 1) {
            out[k++] = '.';
            for (int i = 1; i < nd; i++) out[k++] = digits[i];
        }
        k += snprintf(out + k, sizeof out - (size_t)k, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (decpt <= 0) {
        out[k++] = '0';
        out[k++] = '.';
        for (int i = 0; i < -decpt; i++) out[k++] = '0';
        for (int i = 0; i < nd; i++) out[k++] = digits[i];
    } else {
        for (int i = 0; i < decpt; i++) out[k++] = i < nd ? digits[i] : '0';
        out[k++] = '.';
        if (nd > decpt)
            for (int i = decpt; i < nd; i++) out[k++] = digits[i];
        else
            out[k++] = '0';
    }
    out[k] = '\0';
    return snprintf(buf, n, "%s", out);
}

/* ------------------------------------------------------------------ dumps */

typedef struct {
    char *s;
    size_t len, cap;
    bool bad;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->bad = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

static void newline(sbuf *b, int indent, int depth)
{
    put(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++) put(b, " ", 1);
}

/* A JSON string with Python's ensure_ascii escapes: \" \\ \n \r \t \b \f,
 * anything else outside ' '..'~' as \uXXXX (surrogate pairs above U+FFFF). */
static void put_string(sbuf *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    char esc[16];
    for (size_t i = 0, k; i < n; i += k) {
        uint32_t c = ds_utf8_decode(s + i, n - i, &k);
        if (c == DS_UTF8_BAD) c = 0xFFFD;   /* cannot happen: jansson holds valid UTF-8 only */
        switch (c) {
        case '"': puts_(b, "\\\""); continue;
        case '\\': puts_(b, "\\\\"); continue;
        case '\n': puts_(b, "\\n"); continue;
        case '\r': puts_(b, "\\r"); continue;
        case '\t': puts_(b, "\\t"); continue;
        case '\b': puts_(b, "\\b"); continue;
        case '\f': puts_(b, "\\f"); continue;
        default: break;
        }
        if (c >= 0x20 && c <= 0x7e) {
            char ch = (char)c;
            put(b, &ch, 1);
        } else if (c < 0x10000) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(b, esc);
        } else {
            c -= 0x10000;
            snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
            puts_(b, esc);
        }
    }
    put(b, "\"", 1);
}

static void dump(sbuf *b, json_t *v, int indent, int depth)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_NULL: puts_(b, "null"); break;
    case JSON_TRUE: puts_(b, "true"); break;
    case JSON_FALSE: puts_(b, "false"); break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
        puts_(b, num);
        break;
    case JSON_REAL:
        pyjson_repr_double(json_real_value(v), num, sizeof num);
        puts_(b, num);
        break;
    case JSON_STRING: put_string(b, json_string_value(v), json_string_length(v)); break;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n == 0) {
            puts_(b, "[]");
            break;
        }
        put(b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) puts_(b, indent < 0 ? ", " : ",");
            if (indent >= 0) newline(b, indent, depth + 1);
            dump(b, json_array_get(v, i), indent, depth + 1);
        }
        if (indent >= 0) newline(b, indent, depth);
        put(b, "]", 1);
        break;
    }
    case JSON_OBJECT: {
        if (json_object_size(v) == 0) {
            puts_(b, "{}");
            break;
        }
        put(b, "{", 1);
        const char *key;
        json_t *val;
        bool first = true;
        json_object_foreach(v, key, val) {
            if (!first) puts_(b, indent < 0 ? ", " : ",");
            first = false;
            if (indent >= 0) newline(b, indent, depth + 1);
            put_string(b, key, strlen(key));
            puts_(b, ": ");
            dump(b, val, indent, depth + 1);
        }
        if (indent >= 0) newline(b, indent, depth);
        put(b, "}", 1);
        break;
    }
    }
}

char *pyjson_dumps(json_t *v, int indent)
{
    sbuf b = {0};
    dump(&b, v, indent, 0);
    if (b.bad || !b.s) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
