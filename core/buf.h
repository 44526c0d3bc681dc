/* core/buf.h - a growable byte buffer for building text and binary blobs.
 *
 *     ds_buf b = {0};
 *     if (ds_buf_printf(&b, "%d tokens", n) || ds_buf_append(&b, tail, len)) { ds_buf_free(&b); return DS_ENOMEM; }
 *     use(b.p, b.len);      // b.p is always NUL-terminated after a successful call
 *     ds_buf_free(&b);
 *
 * Every function returns DS_OK or DS_ENOMEM (message set, core/mem.h); on
 * failure the buffer keeps what it had.
 */
#ifndef DS_CORE_BUF_H
#define DS_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char *p;        /* the bytes, NUL-terminated (p[len] == 0) once anything was added */
    size_t len;     /* bytes in use, not counting the terminator */
    size_t cap;     /* bytes allocated */
} ds_buf;

/* ds_buf_reserve() : room for `extra` more bytes (plus the terminator). */
static inline int ds_buf_reserve(ds_buf *b, size_t extra);
/* ds_buf_grow() : the growth itself, which ds_buf_reserve() calls when there
 * is not room already (ds_buf_reserve is inline, for byte-at-a-time loops). */
int ds_buf_grow(ds_buf *b, size_t extra);
static inline int ds_buf_reserve(ds_buf *b, size_t extra)
{
    return extra < b->cap - b->len ? 0 : ds_buf_grow(b, extra);   /* cap > len once allocated; 0 - 0 before */
}
/* ds_buf_append() : add n bytes. */
int ds_buf_append(ds_buf *b, const void *data, size_t n);
/* ds_buf_puts() : add a C string. */
int ds_buf_puts(ds_buf *b, const char *s);
/* ds_buf_putc() : add one byte. */
int ds_buf_putc(ds_buf *b, char c);
/* ds_buf_printf() : add formatted text. */
int ds_buf_printf(ds_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ds_buf_vprintf() : the same with a va_list. */
int ds_buf_vprintf(ds_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* ds_buf_take() : hand the bytes to the caller (free() them; never NULL after a
 * successful call, "" for an empty buffer) and reset the buffer. @return NULL
 * with the message set when even the empty string cannot be allocated. */
char *ds_buf_take(ds_buf *b);
/* ds_buf_free() : release the bytes; the buffer is empty and reusable. */
void ds_buf_free(ds_buf *b);

#ifdef __cplusplus
}
#endif

#endif
