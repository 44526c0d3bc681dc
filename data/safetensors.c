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

#define MAX_HEADER (100u << 20)   /* the Python library refuses larger headers too */

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_NDTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},     [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},   [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

size_t st_dtype_size(st_dtype t) { return t < ST_NDTYPES ? DTYPES[t].size : 0; }
const char *st_dtype_name(st_dtype t) { return t < ST_NDTYPES ? DTYPES[t].name : "?"; }

int st_dtype_parse(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(s, DTYPES[i].name)) {
            *out = (st_dtype)i;
            return DS_OK;
        }
    return -1;
}

/* ------------------------------------------------------------------ reading */

struct st_file {
    char *path;
    ds_map map;             /* empty when parsed from a caller's buffer */
    st_tensor *tensors;     /* sorted by data offset */
    int n;
    json_t *meta;           /* __metadata__ object or NULL */
};

const char *st_file_path(const st_file *f) { return f->path; }
int st_file_count(const st_file *f) { return f->n; }
const st_tensor *st_file_at(const st_file *f, int i) { return &f->tensors[i]; }

const st_tensor *st_file_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *st_file_meta(const st_file *f, const char *key)
{
    return f->meta ? json_string_value(json_object_get(f->meta, key)) : NULL;
}

void st_file_close(st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    if (f->meta) json_decref(f->meta);
    ds_map_close(&f->map);
    free(f->path);
    free(f);
}

static int by_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* Parse one header entry into t; `data` is the start of the data section. */
static int parse_entry(const char *what, const char *name, json_t *v, const unsigned char *data, size_t datalen,
                       st_tensor *t)
{
    if (!json_is_object(v)) return ds_fail(DS_EDATA, "%s: header entry '%s' is not an object", what, name);
    const char *dt = json_string_value(json_object_get(v, "dtype"));
    json_t *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    if (!dt) return ds_fail(DS_EDATA, "%s: tensor '%s' has no dtype", what, name);
    if (st_dtype_parse(dt, &t->dtype) != DS_OK)
        return ds_fail(DS_EDATA, "%s: tensor '%s' has unknown dtype '%s'", what, name, dt);
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return ds_fail(DS_EDATA, "%s: tensor '%s' has a bad shape", what, name);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return ds_fail(DS_EDATA, "%s: tensor '%s' has bad data_offsets", what, name);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *e = json_array_get(shape, d);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return ds_fail(DS_EDATA, "%s: tensor '%s' has a bad shape", what, name);
        uint64_t dim = (uint64_t)json_integer_value(e);
        if (dim != 0 && numel > (UINT64_MAX / 16) / dim)
            return ds_fail(DS_EDATA, "%s: tensor '%s' shape overflows", what, name);
        numel *= dim;
        t->shape[d] = (int64_t)dim;
    }
    json_int_t b = json_integer_value(json_array_get(offs, 0)), e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b)
        return ds_fail(DS_EDATA, "%s: tensor '%s' has data_offsets [%lld, %lld] out of order", what, name,
                       (long long)b, (long long)e);
    if ((uint64_t)e > datalen)
        return ds_fail(DS_EDATA, "%s: tensor '%s' data_offsets [%lld, %lld] leave the file (%zu data bytes)",
                       what, name, (long long)b, (long long)e, datalen);
    uint64_t want = numel * st_dtype_size(t->dtype);
    if ((uint64_t)(e - b) != want)
        return ds_fail(DS_EDATA, "%s: tensor '%s' is %s with %llu bytes but its offsets span %lld", what, name, dt,
                       (unsigned long long)want, (long long)(e - b));
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)want;
    t->data = data + b;
    return DS_OK;
}

static int parse_image(st_file *f, const unsigned char *buf, size_t len)
{
    const char *what = f->path;
    if (len < 8) return ds_fail(DS_EDATA, "%s: truncated: %zu bytes, no room for the header length", what, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > len - 8)
        return ds_fail(DS_EDATA, "%s: header length %llu runs past the end of the file (%zu bytes)", what,
                       (unsigned long long)hlen, len);
    if (hlen > MAX_HEADER) return ds_fail(DS_EDATA, "%s: header of %llu bytes is too large", what, (unsigned long long)hlen);
    if (hlen < 2 || buf[8] != '{') return ds_fail(DS_EDATA, "%s: header is not a JSON object", what);
    json_error_t jerr;
    json_t *root;
    int rc = json_parse((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &root, &jerr);
    if (rc == DS_ENOMEM) return ds_fail_context(rc, "%s: reading the header: ", what);
    if (rc) return ds_fail(DS_EDATA, "%s: header is not valid JSON: %s", what, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return ds_fail(DS_EDATA, "%s: header is not a JSON object", what);
    }
    const unsigned char *data = buf + 8 + hlen;
    size_t datalen = len - 8 - (size_t)hlen;
    f->tensors = ds_calloc(json_object_size(root), sizeof *f->tensors, "the tensor list");
    if (!f->tensors) rc = ds_fail_context(DS_ENOMEM, "%s: ", what);
    const char *key;
    json_t *v;
    if (!rc) json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v)) { rc = ds_fail(DS_EDATA, "%s: __metadata__ is not an object", what); break; }
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
                rc = ds_fail(DS_EDATA, "%s: __metadata__ value '%s' is not a string", what, mk);
                break;
            }
            if (rc) break;
            f->meta = json_incref(v);
            continue;
        }
        st_tensor *t = &f->tensors[f->n];
        rc = parse_entry(what, key, v, data, datalen, t);
        if (!rc && !(t->name = ds_strdup(key))) rc = DS_ENOMEM;
        if (rc) break;
        f->n++;
    }
    json_decref(root);
    if (rc) return rc;
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, by_offset);
    for (int i = 1; i < f->n; i++) {
        const st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if ((const char *)a->data + a->nbytes > (const char *)b->data)
            return ds_fail(DS_EDATA, "%s: tensors '%s' and '%s' overlap", what, a->name, b->name);
    }
    return DS_OK;
}

/* An empty file named `path`; NULL when out of memory (message set). */
static st_file *file_new(const char *path)
{
    st_file *f = ds_calloc(1, sizeof *f, "a safetensors file");
    if (f && !(f->path = ds_strdup(path))) {
        free(f);
        f = NULL;
    }
    return f;
}

int st_file_parse(const void *buf, size_t len, const char *what, st_file **out)
{
    *out = NULL;
    st_file *f = file_new(what);
    if (!f) return DS_ENOMEM;
    int rc = parse_image(f, buf, len);
    if (rc) {
        st_file_close(f);
        return rc;
    }
    *out = f;
    return DS_OK;
}

int st_file_open(const char *path, st_file **out)
{
    *out = NULL;
    st_file *f = file_new(path);
    if (!f) return DS_ENOMEM;
    int rc = ds_map_open(path, &f->map);
    if (!rc) rc = parse_image(f, f->map.data, f->map.size);
    if (rc) {
        st_file_close(f);
        return rc;
    }
    *out = f;
    return DS_OK;
}

/* --------------------------------------------------------------- model sets */

struct st_set {
    char *dir;
    st_file **files;
    char **shards;           /* (nfiles) each file's name as the index gives it; NULL without an index */
    int nfiles;
    const st_tensor **all;   /* every tensor of every file, files in order */
    int n;
    size_t cap_files, cap_shards, cap_all;
};

int st_set_count(const st_set *s) { return s->n; }
const st_tensor *st_set_at(const st_set *s, int i) { return s->all[i]; }
int st_set_nfiles(const st_set *s) { return s->nfiles; }
const char *st_set_dir(const st_set *s) { return s->dir; }

const st_tensor *st_set_find(const st_set *s, const char *name)
{
    for (int i = 0; i < s->nfiles; i++) {
        const st_tensor *t = st_file_find(s->files[i], name);
        if (t) return t;
    }
    return NULL;
}

int st_set_require(const st_set *s, const char *name, const st_tensor **out)
{
    *out = st_set_find(s, name);
    return *out ? DS_OK : ds_fail(DS_EDATA, "%s: missing tensor '%s'", s->dir, name);
}

void st_set_close(st_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->nfiles; i++) {
        st_file_close(s->files[i]);
        if (s->shards) free(s->shards[i]);
    }
    free(s->files);
    free(s->shards);
    free(s->all);
    free(s->dir);
    free(s);
}

/* An empty set named `name`; NULL when out of memory (message set). */
static st_set *set_new(const char *name)
{
    st_set *s = ds_calloc(1, sizeof *s, "a model's tensors");
    if (s && !(s->dir = ds_strdup(name))) {
        free(s);
        s = NULL;
    }
    return s;
}

/* Add an open file, which the set owns from then on (it is closed here when
 * there is no room to add it). */
static int set_add(st_set *s, st_file *f)
{
    if (ds_grow(&s->files, &s->cap_files, (size_t)s->nfiles + 1, sizeof *s->files) ||
        ds_grow(&s->all, &s->cap_all, (size_t)s->n + (size_t)f->n, sizeof *s->all)) {
        st_file_close(f);
        return DS_ENOMEM;
    }
    s->files[s->nfiles++] = f;
    for (int i = 0; i < f->n; i++) {
        if (st_set_find(s, f->tensors[i].name) != &f->tensors[i])
            return ds_fail(DS_EDATA, "%s: tensor '%s' appears in two shards", s->dir, f->tensors[i].name);
        s->all[s->n++] = &f->tensors[i];
    }
    return DS_OK;
}

static int set_add_file(st_set *s, const char *path)
{
    st_file *f;
    int rc = st_file_open(path, &f);
    return rc ? rc : set_add(s, f);
}

int st_set_wrap(st_file *f, const char *name, st_set **out)
{
    *out = NULL;
    st_set *s = set_new(name);
    if (!s) {
        st_file_close(f);
        return DS_ENOMEM;
    }
    int rc = set_add(s, f);
    if (rc) {
        st_set_close(s);
        return rc;
    }
    *out = s;
    return DS_OK;
}

/* The opened file of a shard named in the index, or -1. */
static int shard_index(const st_set *s, const char *shard)
{
    for (int i = 0; i < s->nfiles; i++)
        if (!strcmp(s->shards[i], shard)) return i;
    return -1;
}

static int set_open_index(st_set *s, const char *index_path)
{
    json_t *root;
    int rc = json_file_load(index_path, 0, &root);
    if (rc) return rc;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return ds_fail(DS_EDATA, "%s: no \"weight_map\" object", index_path);
    }
    /* Open each shard once, in order of first appearance. */
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        const char *shard = json_string_value(v);
        if (!shard || strchr(shard, '/') || !strcmp(shard, "..")) {
            rc = ds_fail(DS_EDATA, "%s: weight_map entry '%s' is not a file name", index_path, name);
            break;
        }
        if (shard_index(s, shard) >= 0) continue;
        /* room for the shard's name first: shards[] has an entry for every opened file */
        if ((rc = ds_grow(&s->shards, &s->cap_shards, (size_t)s->nfiles + 1, sizeof *s->shards))) break;
        char *path = ds_path_join(s->dir, shard);
        int before = s->nfiles;
        rc = path ? set_add_file(s, path) : DS_ENOMEM;
        free(path);
        /* a file opened (even one whose tensors were then refused) gets its name */
        if (s->nfiles > before && !(s->shards[s->nfiles - 1] = ds_strdup(shard)) && !rc) rc = DS_ENOMEM;
        if (rc) break;
    }
    /* Every tensor the index names must be in the shard it names. */
    if (!rc) json_object_foreach(map, name, v) {
        const char *shard = json_string_value(v);
        if (!st_file_find(s->files[shard_index(s, shard)], name)) {
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' listed in the index is missing from %s", index_path, name, shard);
            break;
        }
    }
    json_decref(root);
    return rc;
}

int st_set_open(const char *dir, st_set **out)
{
    *out = NULL;
    st_set *s = set_new(dir);
    if (!s) return DS_ENOMEM;
    char *single = ds_path_join(dir, "model.safetensors");
    char *index = ds_path_join(dir, "model.safetensors.index.json");
    int rc;
    if (!single || !index) rc = DS_ENOMEM;
    else if (ds_exists(single)) rc = set_add_file(s, single);
    else if (ds_exists(index)) rc = set_open_index(s, index);
    else if (!ds_is_dir(dir)) rc = ds_fail(DS_ENOINPUT, "%s: no such model folder", dir);
    else rc = ds_fail(DS_ENOINPUT, "%s: no model.safetensors or model.safetensors.index.json", dir);
    free(single);
    free(index);
    if (rc) {
        st_set_close(s);
        return rc;
    }
    *out = s;
    return DS_OK;
}

/* ------------------------------------------------------------------ helpers */

int st_to_f32(const st_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case ST_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case ST_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = ds_bf16_to_f32(h); break; }
        case ST_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = ds_f16_to_f32(h); break; }
        case ST_F64: { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; break; }
        default: return ds_fail(DS_EDATA, "tensor '%s' is %s, expected a floating-point dtype", t->name,
                                st_dtype_name(t->dtype));
        }
    }
    return DS_OK;
}

int64_t st_first_nonfinite(const st_tensor *t)
{
    int64_t n = t->numel;
    switch (t->dtype) {
    case ST_BF16:
    case ST_F16: {
        const uint16_t *v = t->data;
        uint16_t exp = t->dtype == ST_BF16 ? 0x7f80 : 0x7c00;   /* all-ones exponent: NaN or infinity */
        for (int64_t i = 0; i < n; i++)
            if ((v[i] & exp) == exp) return i;
        return -1;
    }
    case ST_F32: {
        const uint32_t *v = t->data;
        for (int64_t i = 0; i < n; i++)
            if ((v[i] & 0x7f800000u) == 0x7f800000u) return i;
        return -1;
    }
    case ST_F64: {
        const uint64_t *v = t->data;
        for (int64_t i = 0; i < n; i++)
            if ((v[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) return i;
        return -1;
    }
    default:
        return -1;
    }
}

int st_to_i32(const st_tensor *t, int32_t *dst)
{
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        switch (t->dtype) {
        case ST_I64: memcpy(&v, p + 8 * i, 8); break;
        case ST_I32: { int32_t x; memcpy(&x, p + 4 * i, 4); v = x; break; }
        case ST_I16: { int16_t x; memcpy(&x, p + 2 * i, 2); v = x; break; }
        case ST_U8: v = p[i]; break;
        case ST_I8: v = (int8_t)p[i]; break;
        default: return ds_fail(DS_EDATA, "tensor '%s' is %s, expected an integer dtype", t->name,
                                st_dtype_name(t->dtype));
        }
        if (v < INT32_MIN || v > INT32_MAX)
            return ds_fail(DS_EDATA, "tensor '%s' holds %lld, outside int32", t->name, (long long)v);
        dst[i] = (int32_t)v;
    }
    return DS_OK;
}

/* "[a, b, c]" into buf. */
static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *st_shape_str(const st_tensor *t, char *buf, size_t n) { return shape_str(t->ndim, t->shape, buf, n); }

int st_check_shape(const st_tensor *t, int ndim, const int64_t *shape)
{
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (ok) return DS_OK;
    char got[160], want[160];
    return ds_fail(DS_EDATA, "tensor '%s' has shape %s, expected %s", t->name, st_shape_str(t, got, sizeof got),
                   shape_str(ndim, shape, want, sizeof want));
}
