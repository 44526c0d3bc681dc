/* data/safetensors.h - the safetensors format: read (memory-mapped, every
 * offset checked) and write (atomically, in the same layout as Python's
 * safetensors library, so our files are byte-for-byte what torch would write).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, "name": {"dtype", "shape", "data_offsets": [b, e]}, ...}
 * padded with spaces, then the data; offsets are relative to the data start.
 */
#ifndef DS_DATA_SAFETENSORS_H
#define DS_DATA_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64,
    ST_NDTYPES
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data;      /* inside the mapped file (read) or the caller's buffer (write) */
    size_t nbytes;
} st_tensor;

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);          /* "BF16", ... */
int st_dtype_parse(const char *s, st_dtype *out); /* DS_OK or -1 */

/* ---- reading one file ---- */
typedef struct st_file st_file;

int st_file_open(const char *path, st_file **out);
/* Parse a safetensors image already in memory (not copied; `what` names it in errors). */
int st_file_parse(const void *buf, size_t len, const char *what, st_file **out);
void st_file_close(st_file *f);
int st_file_count(const st_file *f);
const st_tensor *st_file_at(const st_file *f, int i);     /* in data order */
const st_tensor *st_file_find(const st_file *f, const char *name);
const char *st_file_meta(const st_file *f, const char *key); /* __metadata__ value or NULL */
const char *st_file_path(const st_file *f);

/* ---- reading a model folder: model.safetensors or sharded with an index ---- */
typedef struct st_set st_set;

int st_set_open(const char *dir, st_set **out);
/* A set made of one already-open file (the set takes ownership of f: on
 * failure, out of memory, f is closed). */
int st_set_wrap(st_file *f, const char *name, st_set **out);
void st_set_close(st_set *s);
int st_set_count(const st_set *s);
const st_tensor *st_set_at(const st_set *s, int i);
const st_tensor *st_set_find(const st_set *s, const char *name);
/* Like find, but a missing tensor is DS_EDATA naming it and the folder. */
int st_set_require(const st_set *s, const char *name, const st_tensor **out);
int st_set_nfiles(const st_set *s);
const char *st_set_dir(const st_set *s);

/* ---- tensor helpers ---- */
/* Convert a BF16/F16/F32/F64 tensor to fp32 (n = numel). Other dtypes: DS_EDATA. */
int st_to_f32(const st_tensor *t, float *dst);
/* Convert an integer tensor (I64/I32/U8...) to int32; values outside int32: DS_EDATA. */
int st_to_i32(const st_tensor *t, int32_t *dst);
/* st_first_nonfinite() : the index of the first NaN or infinity of a
 * BF16/F16/F32/F64 tensor (read from the bits, nothing converted), or -1 when
 * all are finite or the dtype is not floating-point. */
int64_t st_first_nonfinite(const st_tensor *t);
/* DS_EDATA naming the tensor unless dtype-agnostic shape matches exactly. */
int st_check_shape(const st_tensor *t, int ndim, const int64_t *shape);
/* Format "[a, b, c]" into buf. */
const char *st_shape_str(const st_tensor *t, char *buf, size_t n);

/* ---- writing ---- */
typedef struct st_writer st_writer;

/* st_writer_new() : an empty writer. @return NULL when out of memory (message
 * set, status DS_ENOMEM). */
st_writer *st_writer_new(void);
void st_writer_free(st_writer *w);
/* Add a tensor; `data` must stay valid until st_writer_write (not copied). */
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* Same, but the writer keeps its own copy of the bytes. */
int st_writer_add_copy(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* A tensor whose bytes are produced at write time, in layout order, by
 * fill(ctx, dst) (dst has the tensor's byte size), so that a large model is
 * written one tensor at a time. fill returns DS_OK or a status. */
typedef int (*st_fill_fn)(void *ctx, void *dst);
int st_writer_add_lazy(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                       st_fill_fn fill, void *ctx);
int st_writer_meta(st_writer *w, const char *key, const char *value);
/* Write atomically. Tensors are laid out as Python's safetensors does:
 * by dtype (widest first, its enum order) then by name. */
int st_writer_write(st_writer *w, const char *path);
size_t st_writer_bytes(const st_writer *w);   /* data bytes so far */

#endif
