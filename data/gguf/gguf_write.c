/* data/gguf/gguf_write.c - writing a GGUF file: the key/values are serialized
 * as they are added, the tensor infos and data when the file is written. The
 * data go through core/files.h's ds_out, so a failure leaves nothing under
 * the final name. ds-ft runs on little-endian hosts: values are written as
 * they lie in memory. */
#include "gguf.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

/* Bytes being serialized; `oom` sticks once an append failed (message set). */
typedef struct {
    ds_buf b;
    bool oom;
} gbuf;

static void put(gbuf *b, const void *s, size_t n)
{
    if (!b->oom && ds_buf_append(&b->b, s, n)) b->oom = true;
}

static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }

static void put_str(gbuf *b, const char *s)
{
    size_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

typedef struct {
    char *name;
    int type, ndim;
    int64_t ne[GGUF_MAX_DIMS];
    size_t nbytes;
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct gguf_writer {
    gbuf kv;              /* the serialized key/values */
    char **keys;
    int nkv;
    size_t cap_kv;
    uint32_t alignment;
    wtensor *t;
    int nt;
    size_t cap_t;
    size_t data_bytes;
};

gguf_writer *gguf_writer_new(void)
{
    gguf_writer *w = ds_calloc(1, sizeof *w, "a GGUF writer");
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w) return;
    ds_buf_free(&w->kv.b);
    for (int i = 0; i < w->nkv; i++) free(w->keys[i]);
    free(w->keys);
    for (int i = 0; i < w->nt; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

size_t gguf_writer_data_bytes(const gguf_writer *w) { return w->data_bytes; }

/* A new key: not empty, not seen before; its name goes into the buffer. */
static int begin_kv(gguf_writer *w, const char *key, gguf_vtype type)
{
    if (!key || !*key) return ds_fail(DS_EINTERNAL, "GGUF writer: an empty key");
    for (int i = 0; i < w->nkv; i++)
        if (!strcmp(w->keys[i], key)) return ds_fail(DS_EINTERNAL, "GGUF writer: key '%s' added twice", key);
    if (ds_grow(&w->keys, &w->cap_kv, (size_t)w->nkv + 1, sizeof *w->keys) || !(w->keys[w->nkv] = ds_strdup(key)))
        return DS_ENOMEM;
    w->nkv++;
    put_str(&w->kv, key);
    put_u32(&w->kv, (uint32_t)type);
    return DS_OK;
}

/* One value of a fixed-size type from its C representation. */
static void put_value(gbuf *b, gguf_vtype type, const void *value)
{
    if (type == GGUF_BOOL) {
        unsigned char byte = *(const bool *)value ? 1 : 0;
        put(b, &byte, 1);
    } else {
        put(b, value, gguf_vtype_size(type));
    }
}

int gguf_add_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *value)
{
    if (!gguf_vtype_size(type)) return ds_fail(DS_EINTERNAL, "GGUF writer: key '%s': %s is not a scalar type", key,
                                     gguf_vtype_name(type));
    if (key && !strcmp(key, "general.alignment")) {
        uint32_t a = type == GGUF_U32 ? *(const uint32_t *)value : 0;
        if (!a || (a & (a - 1)))
            return ds_fail(DS_EINTERNAL, "GGUF writer: general.alignment must be a u32 power of two");
        w->alignment = a;
    }
    int rc = begin_kv(w, key, type);
    if (rc) return rc;
    put_value(&w->kv, type, value);
    return w->kv.oom ? DS_ENOMEM : DS_OK;
}

int gguf_add_string(gguf_writer *w, const char *key, const char *s)
{
    int rc = begin_kv(w, key, GGUF_STRING);
    if (rc) return rc;
    put_str(&w->kv, s);
    return w->kv.oom ? DS_ENOMEM : DS_OK;
}

int gguf_add_array(gguf_writer *w, const char *key, gguf_vtype elem, const void *values, size_t n)
{
    size_t size = gguf_vtype_size(elem);
    if (!size) return ds_fail(DS_EINTERNAL, "GGUF writer: key '%s': use gguf_add_string_array for strings", key);
    int rc = begin_kv(w, key, GGUF_ARRAY);
    if (rc) return rc;
    put_u32(&w->kv, (uint32_t)elem);
    put_u64(&w->kv, n);
    size_t stride = elem == GGUF_BOOL ? sizeof(bool) : size;   /* the caller's C array */
    for (size_t i = 0; i < n; i++) put_value(&w->kv, elem, (const unsigned char *)values + i * stride);
    return w->kv.oom ? DS_ENOMEM : DS_OK;
}

int gguf_add_string_array(gguf_writer *w, const char *key, const char *const *strs, size_t n)
{
    int rc = begin_kv(w, key, GGUF_ARRAY);
    if (rc) return rc;
    put_u32(&w->kv, GGUF_STRING);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) put_str(&w->kv, strs[i]);
    return w->kv.oom ? DS_ENOMEM : DS_OK;
}

static int add_tensor(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne, const void *data,
                      gguf_fill_fn fill, void *ctx)
{
    const ggml_type_info *ti = ggml_type_get(type);
    if (!name || !*name || strlen(name) > GGUF_MAX_NAME)
        return ds_fail(DS_EINTERNAL, "GGUF writer: tensor name '%s' is empty or longer than %d bytes",
                       name ? name : "", GGUF_MAX_NAME);
    if (!ti) return ds_fail(DS_EINTERNAL, "GGUF writer: tensor '%s': unknown ggml type %d", name, type);
    if (ndim < 1 || ndim > GGUF_MAX_DIMS)
        return ds_fail(DS_EINTERNAL, "GGUF writer: tensor '%s' has %d dims (1 to %d)", name, ndim, GGUF_MAX_DIMS);
    size_t nbytes = ggml_row_bytes(type, ne[0]);
    if (ne[0] < 1 || !nbytes)
        return ds_fail(DS_EINTERNAL, "GGUF writer: tensor '%s': a row of %lld values is not a whole number of %s "
                                     "blocks of %d", name, (long long)ne[0], ti->name, ti->block);
    for (int d = 1; d < ndim; d++) {
        if (ne[d] < 1) return ds_fail(DS_EINTERNAL, "GGUF writer: tensor '%s': dim %d is %lld", name, d, (long long)ne[d]);
        nbytes *= (size_t)ne[d];
    }
    for (int i = 0; i < w->nt; i++)
        if (!strcmp(w->t[i].name, name)) return ds_fail(DS_EINTERNAL, "GGUF writer: tensor '%s' added twice", name);
    if (ds_grow(&w->t, &w->cap_t, (size_t)w->nt + 1, sizeof *w->t)) return DS_ENOMEM;
    wtensor *t = &w->t[w->nt];
    *t = (wtensor){.type = type, .ndim = ndim, .nbytes = nbytes, .data = data, .fill = fill, .ctx = ctx};
    for (int d = 0; d < ndim; d++) t->ne[d] = ne[d];
    if (!(t->name = ds_strdup(name))) return DS_ENOMEM;
    w->nt++;
    w->data_bytes += nbytes;
    return DS_OK;
}

int gguf_add_tensor(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne, const void *data)
{
    return add_tensor(w, name, type, ndim, ne, data, NULL, NULL);
}

int gguf_add_tensor_lazy(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne, gguf_fill_fn fill,
                         void *ctx)
{
    return add_tensor(w, name, type, ndim, ne, NULL, fill, ctx);
}

static size_t pad_to(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Everything before the data section: header, key/values, tensor infos, padding. */
static int build_head(const gguf_writer *w, gbuf *h)
{
    put(h, "GGUF", 4);
    put_u32(h, GGUF_VERSION);
    put_u64(h, (uint64_t)w->nt);
    put_u64(h, (uint64_t)w->nkv);
    put(h, w->kv.b.p, w->kv.b.len);
    uint64_t offset = 0;
    for (int i = 0; i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        put_str(h, t->name);
        put_u32(h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, (uint32_t)t->type);
        put_u64(h, offset);
        offset += pad_to(t->nbytes, w->alignment);
    }
    static const unsigned char zeros[64];
    size_t pad = pad_to(h->b.len, w->alignment) - h->b.len;
    while (pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        put(h, zeros, k);
        pad -= k;
    }
    return h->oom ? DS_ENOMEM : DS_OK;
}

static int write_zeros(ds_out *o, size_t n)
{
    static const unsigned char zeros[64];
    int rc = DS_OK;
    while (!rc && n) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        rc = ds_out_write(o, zeros, k);
        n -= k;
    }
    return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path)
{
    if (w->kv.oom) return ds_fail(DS_ENOMEM, "%s: a key/value could not be kept for lack of memory", path);
    gbuf head = {0};
    int rc = build_head(w, &head);
    ds_out o;
    if (!rc) rc = ds_out_open(&o, path);
    if (rc) {
        ds_buf_free(&head.b);
        return rc;
    }
    rc = ds_out_write(&o, head.b.p, head.b.len);
    ds_buf_free(&head.b);
    unsigned char *buf = NULL;
    size_t cap = 0;
    for (int i = 0; !rc && i < w->nt; i++) {
        const wtensor *t = &w->t[i];
        const void *bytes = t->data;
        if (t->fill) {
            if (t->nbytes > cap) {
                free(buf);
                cap = t->nbytes;
                if (!(buf = ds_malloc(cap, "a GGUF tensor"))) {
                    cap = 0;
                    rc = ds_fail_context(DS_ENOMEM, "%s: tensor '%s': ", path, t->name);
                    break;
                }
            }
            rc = t->fill(t->ctx, buf, t->nbytes);
            bytes = buf;
        }
        if (!rc) rc = ds_out_write(&o, bytes, t->nbytes);
        if (!rc) rc = write_zeros(&o, pad_to(t->nbytes, w->alignment) - t->nbytes);
    }
    free(buf);
    if (!rc) rc = ds_out_commit(&o);
    else ds_out_abort(&o);
    return rc;
}
