/* data/gguf/gguf_read.c - reading a GGUF file: every count, length, type and
 * offset is checked against the bytes before it is used, and what does not
 * fit is refused naming the key or tensor. Values are copied out (strings
 * NUL-terminated); tensor data stay in the mapped file. */
#include "gguf.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gguf_file {
    char *what;
    ds_map map;                 /* empty when parsed from a caller's buffer */
    uint32_t version;
    size_t alignment, data_offset;
    gguf_kv *kv;
    int nkv;
    gguf_tensor *t;
    int nt;
};

/* A cursor over the file's bytes. */
typedef struct {
    const unsigned char *p;
    size_t pos, len;
    const char *what;
} rd;

static int truncated(const rd *r, const char *where)
{
    return ds_fail(DS_EDATA, "%s: %s: the file ends at byte %zu (truncated or not a GGUF file)", r->what, where,
                   r->len);
}

static int take(rd *r, size_t n, const char *where, const unsigned char **out)
{
    *out = NULL;
    if (n > r->len - r->pos) return truncated(r, where);
    *out = r->p + r->pos;
    r->pos += n;
    return DS_OK;
}

static int rd_u32(rd *r, const char *where, uint32_t *v)
{
    const unsigned char *s;
    int rc = take(r, 4, where, &s);
    if (!rc) memcpy(v, s, 4);
    return rc;
}

static int rd_u64(rd *r, const char *where, uint64_t *v)
{
    const unsigned char *s;
    int rc = take(r, 8, where, &s);
    if (!rc) memcpy(v, s, 8);
    return rc;
}

/* A string, copied and NUL-terminated. */
static int rd_str(rd *r, const char *where, char **out, uint64_t *len)
{
    uint64_t n;
    const unsigned char *s;
    int rc = rd_u64(r, where, &n);
    if (!rc && n > r->len - r->pos) rc = truncated(r, where);
    if (!rc) rc = take(r, (size_t)n, where, &s);
    if (rc) return rc;
    if (!(*out = ds_malloc((size_t)n + 1, "a GGUF string"))) return ds_fail_context(DS_ENOMEM, "%s: ", r->what);
    memcpy(*out, s, (size_t)n);
    (*out)[n] = '\0';
    if (len) *len = n;
    return DS_OK;
}

/* One scalar at s into kv->v, widened. */
static int decode_scalar(const rd *r, gguf_kv *kv, uint32_t t, const unsigned char *s)
{
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
            uint64_t u64; int64_t i64; double f64; } x;
    memcpy(&x, s, gguf_vtype_size(t));
    switch (t) {
    case GGUF_U8: kv->v.u = x.u8; break;
    case GGUF_I8: kv->v.i = x.i8; break;
    case GGUF_U16: kv->v.u = x.u16; break;
    case GGUF_I16: kv->v.i = x.i16; break;
    case GGUF_U32: kv->v.u = x.u32; break;
    case GGUF_I32: kv->v.i = x.i32; break;
    case GGUF_F32: kv->v.f = x.f32; break;
    case GGUF_U64: kv->v.u = x.u64; break;
    case GGUF_I64: kv->v.i = x.i64; break;
    case GGUF_F64: kv->v.f = x.f64; break;
    case GGUF_BOOL:
        if (x.u8 > 1) return ds_fail(DS_EDATA, "%s: key '%s': bool value %u is neither 0 nor 1", r->what, kv->key, x.u8);
        kv->v.b = x.u8;
        break;
    }
    return DS_OK;
}

static int read_array(rd *r, gguf_kv *kv)
{
    uint32_t elem;
    int rc = rd_u32(r, kv->key, &elem);
    if (!rc) rc = rd_u64(r, kv->key, &kv->n);
    if (rc) return rc;
    if (elem == GGUF_ARRAY) return ds_fail(DS_EDATA, "%s: key '%s': arrays of arrays are not supported", r->what, kv->key);
    if (elem != GGUF_STRING && !gguf_vtype_size(elem))
        return ds_fail(DS_EDATA, "%s: key '%s': unknown array element type %u", r->what, kv->key, elem);
    kv->elem = (gguf_vtype)elem;
    if (elem == GGUF_STRING) {
        if (kv->n > (r->len - r->pos) / 8) return truncated(r, kv->key);   /* each string takes 8 bytes at least */
        if (!(kv->strs = ds_calloc((size_t)kv->n, sizeof *kv->strs, "a GGUF string array")))
            return ds_fail_context(DS_ENOMEM, "%s: ", r->what);
        for (uint64_t i = 0; !rc && i < kv->n; i++) rc = rd_str(r, kv->key, &kv->strs[i], NULL);
        return rc;
    }
    size_t size = gguf_vtype_size(elem);
    const unsigned char *s;
    if (kv->n > (r->len - r->pos) / size) return truncated(r, kv->key);
    if ((rc = take(r, (size_t)kv->n * size, kv->key, &s))) return rc;
    void *copy = ds_malloc((size_t)kv->n * size + 1, "a GGUF array");
    if (!copy) return ds_fail_context(DS_ENOMEM, "%s: ", r->what);
    memcpy(copy, s, (size_t)kv->n * size);
    kv->data = copy;
    for (uint64_t i = 0; elem == GGUF_BOOL && i < kv->n; i++)
        if (s[i] > 1) return ds_fail(DS_EDATA, "%s: key '%s': element %" PRIu64 " is not a bool", r->what, kv->key, i);
    return DS_OK;
}

static int read_kv(rd *r, gguf_kv *kv, int index)
{
    char where[48];
    snprintf(where, sizeof where, "key/value %d", index);
    char *key;
    uint32_t type;
    int rc = rd_str(r, where, &key, NULL);
    if (rc) return rc;
    kv->key = key;
    kv->n = 1;
    if (!*key) return ds_fail(DS_EDATA, "%s: %s has an empty key", r->what, where);
    if ((rc = rd_u32(r, key, &type))) return rc;
    kv->type = (gguf_vtype)type;
    if (type == GGUF_ARRAY) return read_array(r, kv);
    if (type == GGUF_STRING) return rd_str(r, key, (char **)&kv->str, &kv->len);
    if (!gguf_vtype_size(type)) return ds_fail(DS_EDATA, "%s: key '%s': unknown value type %u", r->what, key, type);
    const unsigned char *s;
    if ((rc = take(r, gguf_vtype_size(type), key, &s))) return rc;
    return decode_scalar(r, kv, type, s);
}

static int read_tensor_info(rd *r, gguf_tensor *t, int index)
{
    char where[48];
    snprintf(where, sizeof where, "tensor info %d", index);
    char *name;
    uint32_t ndim, type;
    int rc = rd_str(r, where, &name, NULL);
    if (rc) return rc;
    t->name = name;
    if (!*name || strlen(name) > GGUF_MAX_NAME)
        return ds_fail(DS_EDATA, "%s: %s: tensor name '%.80s' is empty or longer than %d bytes", r->what, where, name,
                       GGUF_MAX_NAME);
    if ((rc = rd_u32(r, name, &ndim))) return rc;
    if (ndim > GGUF_MAX_DIMS)
        return ds_fail(DS_EDATA, "%s: tensor '%s' has %u dims (at most %d)", r->what, name, ndim, GGUF_MAX_DIMS);
    t->ndim = (int)ndim;
    t->nelem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)ndim && (rc = rd_u64(r, name, &ne))) return rc;
        if (ne > (uint64_t)INT64_MAX || (ne && (uint64_t)t->nelem > (uint64_t)INT64_MAX / ne))
            return ds_fail(DS_EDATA, "%s: tensor '%s': dim %d = %" PRIu64 " is too large", r->what, name, d, ne);
        t->ne[d] = (int64_t)ne;
        t->nelem *= (int64_t)ne;
    }
    if ((rc = rd_u32(r, name, &type)) || (rc = rd_u64(r, name, &t->offset))) return rc;
    const ggml_type_info *ti = ggml_type_get((int)type);
    if (!ti) return ds_fail(DS_EDATA, "%s: tensor '%s': unknown ggml type %u", r->what, name, type);
    t->type = (int)type;
    if (t->ne[0] % ti->block)
        return ds_fail(DS_EDATA, "%s: tensor '%s': a row of %lld values is not a whole number of %s blocks of %d",
                       r->what, name, (long long)t->ne[0], ti->name, ti->block);
    uint64_t blocks = (uint64_t)t->nelem / (uint64_t)ti->block;
    if (blocks > SIZE_MAX / (uint64_t)ti->bytes)
        return ds_fail(DS_EDATA, "%s: tensor '%s' is too large", r->what, name);
    t->nbytes = (size_t)blocks * (size_t)ti->bytes;
    return DS_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(**(char *const *const *)a, **(char *const *const *)b); }

/* The first name that occurs twice among n names (each reached through
 * base + i * stride) into *dup, NULL when none. */
static int duplicate(const void *base, int n, size_t stride, const char **dup)
{
    *dup = NULL;
    if (n < 2) return DS_OK;
    const char ***p = ds_calloc((size_t)n, sizeof *p, "checking names");
    if (!p) return DS_ENOMEM;
    for (int i = 0; i < n; i++) p[i] = (const char **)((const char *)base + (size_t)i * stride);
    qsort(p, (size_t)n, sizeof *p, by_name);
    for (int i = 1; i < n && !*dup; i++)
        if (!strcmp(*p[i - 1], *p[i])) *dup = *p[i];
    free(p);
    return DS_OK;
}

static int by_offset(const void *a, const void *b)
{
    uint64_t x = (*(const gguf_tensor *const *)a)->offset, y = (*(const gguf_tensor *const *)b)->offset;
    return (x > y) - (x < y);
}

/* Each tensor aligned, inside the data section, and not overlapping another. */
static int check_layout(gguf_file *f, const unsigned char *buf, size_t len)
{
    if (f->nt == 0) return DS_OK;
    if (f->data_offset > len) return ds_fail(DS_EDATA, "%s: the data section starts past the end of the file", f->what);
    size_t data_len = len - f->data_offset;
    const gguf_tensor **order = ds_calloc((size_t)f->nt, sizeof *order, "checking the tensors");
    if (!order) return ds_fail_context(DS_ENOMEM, "%s: ", f->what);
    int rc = DS_OK;
    for (int i = 0; !rc && i < f->nt; i++) {
        gguf_tensor *t = &f->t[i];
        order[i] = t;
        if (t->offset % f->alignment)
            rc = ds_fail(DS_EDATA, "%s: tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %zu", f->what,
                         t->name, t->offset, f->alignment);
        else if (t->offset > data_len || t->nbytes > data_len - t->offset)
            rc = ds_fail(DS_EDATA, "%s: tensor '%s' (%zu bytes at offset %" PRIu64 ") lies past the end of the file",
                         f->what, t->name, t->nbytes, t->offset);
        else
            t->data = buf + f->data_offset + t->offset;
    }
    if (!rc) qsort(order, (size_t)f->nt, sizeof *order, by_offset);
    for (int i = 1; !rc && i < f->nt; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
            rc = ds_fail(DS_EDATA, "%s: tensors '%s' and '%s' overlap", f->what, order[i - 1]->name, order[i]->name);
    free(order);
    return rc;
}

static int parse(gguf_file *f, const unsigned char *buf, size_t len)
{
    rd r = {.p = buf, .len = len, .what = f->what};
    const unsigned char *magic;
    uint64_t nt, nkv;
    int rc = take(&r, 4, "magic", &magic);
    if (!rc && memcmp(magic, "GGUF", 4)) rc = ds_fail(DS_EDATA, "%s: not a GGUF file (no \"GGUF\" magic)", f->what);
    if (!rc) rc = rd_u32(&r, "version", &f->version);
    if (!rc && f->version != 2 && f->version != 3)
        rc = ds_fail(DS_EDATA, "%s: GGUF version %u is not supported (2 or 3)", f->what, f->version);
    if (!rc) rc = rd_u64(&r, "tensor count", &nt);
    if (!rc) rc = rd_u64(&r, "key/value count", &nkv);
    if (rc) return rc;
    /* a key/value takes 12 bytes at least, a tensor info 24 */
    if (nkv > (len - r.pos) / 12 || nt > (len - r.pos) / 24 || nkv > INT32_MAX || nt > INT32_MAX)
        return ds_fail(DS_EDATA, "%s: %" PRIu64 " key/values and %" PRIu64 " tensors cannot fit in %zu bytes", f->what,
                       nkv, nt, len);
    f->kv = ds_calloc((size_t)nkv + 1, sizeof *f->kv, "the GGUF key/values");
    f->t = ds_calloc((size_t)nt + 1, sizeof *f->t, "the GGUF tensors");
    if (!f->kv || !f->t) return ds_fail_context(DS_ENOMEM, "%s: ", f->what);
    for (uint64_t i = 0; !rc && i < nkv; i++, f->nkv++) rc = read_kv(&r, &f->kv[i], (int)i);
    const char *dup = NULL;
    if (!rc) rc = duplicate(&f->kv[0].key, f->nkv, sizeof *f->kv, &dup);
    if (dup) return ds_fail(DS_EDATA, "%s: key '%s' occurs twice", f->what, dup);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *a = rc ? NULL : gguf_find_kv(f, "general.alignment");
    if (a) {
        if (a->type != GGUF_U32 || !a->v.u || (a->v.u & (a->v.u - 1)))
            return ds_fail(DS_EDATA, "%s: key 'general.alignment' must be a u32 power of two", f->what);
        f->alignment = (size_t)a->v.u;
    }
    for (uint64_t i = 0; !rc && i < nt; i++, f->nt++) rc = read_tensor_info(&r, &f->t[i], (int)i);
    if (!rc) rc = duplicate(&f->t[0].name, f->nt, sizeof *f->t, &dup);
    if (dup) return ds_fail(DS_EDATA, "%s: tensor '%s' occurs twice", f->what, dup);
    if (rc) return rc;
    f->data_offset = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    return check_layout(f, buf, len);
}

int gguf_parse(const void *buf, size_t len, const char *what, gguf_file **out)
{
    *out = NULL;
    gguf_file *f = ds_calloc(1, sizeof *f, "a GGUF file");
    if (!f || !(f->what = ds_strdup(what))) {
        free(f);
        return ds_fail_context(DS_ENOMEM, "%s: ", what);
    }
    int rc = parse(f, buf, len);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return DS_OK;
}

int gguf_open(const char *path, gguf_file **out)
{
    *out = NULL;
    ds_map m;
    int rc = ds_map_open(path, &m);
    if (rc) return rc;
    rc = gguf_parse(m.data, m.size, path, out);
    if (rc) ds_map_close(&m);
    else (*out)->map = m;
    return rc;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->nkv; i++) {
        gguf_kv *kv = &f->kv[i];
        free((char *)kv->key);
        free((char *)kv->str);
        free((void *)kv->data);
        for (uint64_t j = 0; kv->strs && j < kv->n; j++) free(kv->strs[j]);
        free(kv->strs);
    }
    /* a key/value or tensor that failed half-way was counted: its parts are freed above or below */
    for (int i = 0; i < f->nt; i++) free((char *)f->t[i].name);
    free(f->kv);
    free(f->t);
    ds_map_close(&f->map);
    free(f->what);
    free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_alignment(const gguf_file *f) { return f->alignment; }
size_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
int gguf_kv_count(const gguf_file *f) { return f->nkv; }
const gguf_kv *gguf_kv_at(const gguf_file *f, int i) { return &f->kv[i]; }
int gguf_tensor_count(const gguf_file *f) { return f->nt; }
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i) { return &f->t[i]; }

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    for (int i = 0; i < f->nkv; i++)
        if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (int i = 0; i < f->nt; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}
