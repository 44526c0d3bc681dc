/* data/pyjson.c - Python-compatible JSON text (see pyjson.h). */
#include "pyjson.h"

#include "core/buf.h"
#include "core/status.h"
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

static int newline(ds_buf *b, int indent, int depth)
{
    int rc = ds_buf_putc(b, '\n');
    for (int i = 0; !rc && i < indent * depth; i++) rc = ds_buf_putc(b, ' ');
    return rc;
}

/* The escape of c, or NULL when c is written as it is. */
static const char *escape(uint32_t c, char esc[16])
{
    switch (c) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: break;
    }
    if (c >= 0x20 && c <= 0x7e) return NULL;
    if (c < 0x10000) snprintf(esc, 16, "\\u%04x", c);
    else snprintf(esc, 16, "\\u%04x\\u%04x", 0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
    return esc;
}

/* A JSON string with Python's ensure_ascii escapes: \" \\ \n \r \t \b \f,
 * anything else outside ' '..'~' as \uXXXX (surrogate pairs above U+FFFF). */
static int put_string(ds_buf *b, const char *s, size_t n)
{
    int rc = ds_buf_putc(b, '"');
    char esc[16];
    for (size_t i = 0, k; !rc && i < n; i += k) {
        uint32_t c = ds_utf8_decode(s + i, n - i, &k);
        if (c == DS_UTF8_BAD) c = 0xFFFD;   /* cannot happen: jansson holds valid UTF-8 only */
        const char *e = escape(c, esc);
        rc = e ? ds_buf_puts(b, e) : ds_buf_putc(b, (char)c);
    }
    return rc ? rc : ds_buf_putc(b, '"');
}

static int dump(ds_buf *b, json_t *v, int indent, int depth);

/* The members of an array or object between its brackets: one per line with
 * an indent, else ", "-separated. */
static int dump_members(ds_buf *b, json_t *v, int indent, int depth)
{
    bool obj = json_is_object(v);
    int rc = ds_buf_putc(b, obj ? '{' : '[');
    void *it = obj ? json_object_iter(v) : NULL;
    for (size_t i = 0; !rc && (obj ? it != NULL : i < json_array_size(v)); i++) {
        if (i) rc = ds_buf_puts(b, indent < 0 ? ", " : ",");
        if (!rc && indent >= 0) rc = newline(b, indent, depth + 1);
        if (!rc && obj) {
            const char *key = json_object_iter_key(it);
            rc = put_string(b, key, strlen(key));
            if (!rc) rc = ds_buf_puts(b, ": ");
        }
        if (!rc) rc = dump(b, obj ? json_object_iter_value(it) : json_array_get(v, i), indent, depth + 1);
        if (obj) it = json_object_iter_next(v, it);
    }
    if (!rc && indent >= 0) rc = newline(b, indent, depth);
    return rc ? rc : ds_buf_putc(b, obj ? '}' : ']');
}

static int dump(ds_buf *b, json_t *v, int indent, int depth)
{
    char num[64];
    switch (json_typeof(v)) {
    case JSON_NULL: return ds_buf_puts(b, "null");
    case JSON_TRUE: return ds_buf_puts(b, "true");
    case JSON_FALSE: return ds_buf_puts(b, "false");
    case JSON_INTEGER: return ds_buf_printf(b, "%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        pyjson_repr_double(json_real_value(v), num, sizeof num);
        return ds_buf_puts(b, num);
    case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: return json_array_size(v) ? dump_members(b, v, indent, depth) : ds_buf_puts(b, "[]");
    case JSON_OBJECT: return json_object_size(v) ? dump_members(b, v, indent, depth) : ds_buf_puts(b, "{}");
    }
    return DS_OK;
}

char *pyjson_dumps(json_t *v, int indent)
{
    ds_buf b = {0};
    if (dump(&b, v, indent, 0)) {
        ds_buf_free(&b);
        return NULL;
    }
    return ds_buf_take(&b);
}
