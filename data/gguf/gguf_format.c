/* data/gguf/gguf_format.c - a key/value as one line of text, for `ds-ft inspect`. */
#include "gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Appends to a fixed buffer; what does not fit is cut. */
typedef struct {
    char *p;
    size_t n, used;
} line;

static void add(line *l, const char *fmt, ...)
{
    if (l->used + 1 >= l->n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->p + l->used, l->n - l->used, fmt, ap);
    va_end(ap);
    if (k > 0) l->used += (size_t)k < l->n - l->used ? (size_t)k : l->n - l->used - 1;
}

/* A string quoted, control characters escaped, cut after 60 bytes. */
static void add_quoted(line *l, const char *s, uint64_t len)
{
    add(l, "\"");
    for (uint64_t i = 0; i < len && i < 60; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') add(l, "\\%c", c);
        else if (c == '\n') add(l, "\\n");
        else if (c < 0x20) add(l, "\\x%02x", c);
        else add(l, "%c", c);
    }
    if (len > 60) add(l, "\"... (%" PRIu64 " bytes)", len);
    else add(l, "\"");
}

/* Element i of a numeric or bool array. */
static void add_element(line *l, const gguf_kv *kv, uint64_t i)
{
    const unsigned char *p = kv->data;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } x;
    memcpy(&x, p + i * gguf_vtype_size(kv->elem), gguf_vtype_size(kv->elem));
    switch (kv->elem) {
    case GGUF_U8: add(l, "%u", x.u8); break;
    case GGUF_I8: add(l, "%d", x.i8); break;
    case GGUF_U16: add(l, "%u", x.u16); break;
    case GGUF_I16: add(l, "%d", x.i16); break;
    case GGUF_U32: add(l, "%" PRIu32, x.u32); break;
    case GGUF_I32: add(l, "%" PRId32, x.i32); break;
    case GGUF_F32: add(l, "%.9g", x.f32); break;
    case GGUF_BOOL: add(l, x.u8 ? "true" : "false"); break;
    case GGUF_U64: add(l, "%" PRIu64, x.u64); break;
    case GGUF_I64: add(l, "%" PRId64, x.i64); break;
    case GGUF_F64: add(l, "%.17g", x.f64); break;
    default: break;
    }
}

const char *gguf_kv_format(const gguf_kv *kv, char *buf, size_t n)
{
    line l = {buf, n, 0};
    if (n) buf[0] = '\0';
    switch (kv->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: add(&l, "%" PRIu64, kv->v.u); break;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: add(&l, "%" PRId64, kv->v.i); break;
    case GGUF_F32: add(&l, "%.9g", kv->v.f); break;
    case GGUF_F64: add(&l, "%.17g", kv->v.f); break;
    case GGUF_BOOL: add(&l, kv->v.b ? "true" : "false"); break;
    case GGUF_STRING: add_quoted(&l, kv->str, kv->len); break;
    case GGUF_ARRAY: {
        bool strs = kv->elem == GGUF_STRING;
        add(&l, "[%" PRIu64 " %s%s:", kv->n, strs ? "string" : gguf_vtype_name(kv->elem), kv->n == 1 ? "" : "s");
        uint64_t shown = kv->n < 8 ? kv->n : 8;
        for (uint64_t i = 0; i < shown; i++) {
            add(&l, i ? ", " : " ");
            if (strs) add_quoted(&l, kv->strs[i], strlen(kv->strs[i]));
            else add_element(&l, kv, i);
        }
        add(&l, kv->n > shown ? ", ...]" : "]");
        break;
    }
    default: add(&l, "?"); break;
    }
    return buf;
}
