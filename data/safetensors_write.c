/* data/safetensors_write.c - writing safetensors files, atomically and in the
 * layout Python's safetensors library writes (see safetensors.h). */
#include "safetensors.h"
#include "json_util.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/numeric.h"
#include "core/status.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    st_tensor t;
    void *owned;    /* our copy of the bytes, or NULL */
    st_fill_fn fill;/* lazy tensors: produces the bytes at write time */
    void *ctx;
} entry;

struct st_writer {
    entry *e;
    int n;
    size_t cap;
    json_t *meta;
    size_t bytes;
};

st_writer *st_writer_new(void)
{
    st_writer *w = ds_calloc(1, sizeof *w, "a safetensors writer");
    if (w && !(w->meta = json_object())) {   /* jansson's allocation set the message */
        free(w);
        w = NULL;
    }
    return w;
}

void st_writer_free(st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free((char *)w->e[i].t.name);
        free(w->e[i].owned);
    }
    free(w->e);
    json_decref(w->meta);
    free(w);
}

size_t st_writer_bytes(const st_writer *w) { return w->bytes; }

/* A new entry for the tensor; DS_EINTERNAL for a duplicate or malformed one. */
static int writer_push(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, entry **out)
{
    *out = NULL;
    bool dup = false;
    for (int i = 0; i < w->n && !dup; i++) dup = !strcmp(w->e[i].t.name, name);
    if (dup || ndim < 0 || ndim > ST_MAX_DIMS)
        return ds_fail(DS_EINTERNAL, "safetensors writer: duplicate or malformed tensor '%s'", name);
    char *copy = ds_strdup(name);
    if (!copy || ds_grow(&w->e, &w->cap, (size_t)w->n + 1, sizeof *w->e)) {
        free(copy);
        return DS_ENOMEM;
    }
    entry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->t.name = copy;
    e->t.dtype = dtype;
    e->t.ndim = ndim;
    e->t.numel = 1;
    for (int d = 0; d < ndim; d++) {
        e->t.shape[d] = shape[d];
        e->t.numel *= shape[d];
    }
    e->t.nbytes = (size_t)e->t.numel * st_dtype_size(dtype);
    w->bytes += e->t.nbytes;
    *out = e;
    return DS_OK;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    entry *e;
    int rc = writer_push(w, name, dtype, ndim, shape, &e);
    if (!rc) e->t.data = data;
    return rc;
}

int st_writer_add_copy(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    entry *e;
    int rc = writer_push(w, name, dtype, ndim, shape, &e);
    if (rc) return rc;
    if (!(e->owned = ds_malloc(e->t.nbytes, "a tensor's copy"))) {   /* take the entry back */
        free((char *)e->t.name);
        w->bytes -= e->t.nbytes;
        w->n--;
        return DS_ENOMEM;
    }
    memcpy(e->owned, data, e->t.nbytes);
    e->t.data = e->owned;
    return DS_OK;
}

int st_writer_add_lazy(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       st_fill_fn fill, void *ctx)
{
    entry *e;
    int rc = writer_push(w, name, dtype, ndim, shape, &e);
    if (!rc) {
        e->fill = fill;
        e->ctx = ctx;
    }
    return rc;
}

int st_writer_meta(st_writer *w, const char *key, const char *value)
{
    json_alloc_reset();
    if (json_object_set_new(w->meta, key, json_string(value)) == 0) return DS_OK;
    if (json_alloc_failed()) return DS_ENOMEM;
    return ds_fail(DS_EINTERNAL, "safetensors writer: metadata '%s' is not UTF-8 text", key);
}

static int by_layout(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->t.dtype != y->t.dtype) return x->t.dtype > y->t.dtype ? -1 : 1;
    return strcmp(x->t.name, y->t.name);
}

int st_writer_write(st_writer *w, const char *path)
{
    qsort(w->e, (size_t)w->n, sizeof *w->e, by_layout);
    json_alloc_reset();   /* a member that could not be allocated makes the header fail */
    json_t *hdr = json_object();
    if (json_object_size(w->meta)) json_object_set(hdr, "__metadata__", w->meta);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const st_tensor *t = &w->e[i].t;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *o = json_object();
        json_object_set_new(o, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + t->nbytes)));
        json_object_set_new(hdr, t->name, o);
        off += t->nbytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(hdr);
    if (json_alloc_failed()) {
        free(text);
        return ds_fail_context(DS_ENOMEM, "%s: writing the header: ", path);
    }
    if (!text) return ds_fail(DS_EINTERNAL, "%s: cannot encode safetensors header", path);
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    ds_out o;
    int rc = ds_out_open(&o, path);
    if (rc) {
        free(text);
        return rc;
    }
    ds_out_write(&o, lenbuf, 8);
    ds_out_write(&o, text, hlen);
    for (size_t i = hlen; i < padded; i++) ds_out_write(&o, " ", 1);
    free(text);
    for (int i = 0; i < w->n && !rc; i++) {
        const entry *e = &w->e[i];
        if (!e->fill) {
            rc = ds_out_write(&o, e->t.data, e->t.nbytes);
            continue;
        }
        void *buf = ds_malloc(e->t.nbytes, "a tensor");
        if (!buf) rc = ds_fail_context(DS_ENOMEM, "%s: tensor '%s': ", path, e->t.name);
        if (!rc) rc = e->fill(e->ctx, buf);
        if (!rc) rc = ds_out_write(&o, buf, e->t.nbytes);
        free(buf);
    }
    if (rc) {
        ds_out_abort(&o);
        return rc;
    }
    return ds_out_commit(&o);
}
