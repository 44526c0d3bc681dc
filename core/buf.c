/* core/buf.c - the growable byte buffer (see buf.h). */
#include "buf.h"

#include "mem.h"
#include "status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ds_buf_grow(ds_buf *b, size_t extra)
{
    if (extra >= SIZE_MAX - b->len) return ds_oom(SIZE_MAX, "a text buffer");   /* len + extra + 1 overflows */
    return ds_grow(&b->p, &b->cap, b->len + extra + 1, 1);
}

int ds_buf_append(ds_buf *b, const void *data, size_t n)
{
    int rc = ds_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return DS_OK;
}

int ds_buf_puts(ds_buf *b, const char *s) { return ds_buf_append(b, s, strlen(s)); }

int ds_buf_putc(ds_buf *b, char c) { return ds_buf_append(b, &c, 1); }

int ds_buf_vprintf(ds_buf *b, const char *fmt, va_list ap)
{
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    int rc = n < 0 ? ds_fail(DS_EINTERNAL, "bad format string '%s'", fmt) : ds_buf_reserve(b, (size_t)n);
    if (!rc) {
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
        b->len += (size_t)n;
    }
    va_end(again);
    return rc;
}

int ds_buf_printf(ds_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = ds_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *ds_buf_take(ds_buf *b)
{
    if (!b->p && ds_buf_reserve(b, 0)) return NULL;
    b->p[b->len] = '\0';
    char *p = b->p;
    *b = (ds_buf){0};
    return p;
}

void ds_buf_free(ds_buf *b)
{
    free(b->p);
    *b = (ds_buf){0};
}
