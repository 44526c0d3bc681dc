/* data/gguf/gguf.h - GGUF v3, the single-file model format llama.cpp, Ollama
 * and LM Studio load: a writer (atomic, one tensor at a time) and a reader
 * (every length, count, type and offset checked against the file).
 *
 * Layout, all little-endian:
 *   "GGUF", u32 version (3), i64 tensor count, i64 key/value count
 *   key/values: string key, i32 value type, value
 *               (an array: i32 element type, u64 count, the elements)
 *   tensor infos: string name, u32 n_dims, i64 ne[n_dims] (innermost first:
 *               a torch weight [out, in] is ne = {in, out}), i32 ggml type,
 *               u64 offset of its data from the start of the data section
 *   zero padding to the alignment, then the data section: each tensor starts
 *   at a multiple of the alignment (u32 key "general.alignment", default 32).
 * A string is a u64 byte count and the bytes (UTF-8, no terminating NUL); a
 * bool is one byte. The ggml tensor types are stored by their number in
 * ggml.h; a type's data is rows of ne[0] values cut into blocks.
 */
#ifndef DS_DATA_GGUF_H
#define DS_DATA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 63   /* llama.cpp's limit on a tensor name (GGML_MAX_NAME - 1) */

/* Value types of the key/values, numbered as in the file. */
typedef enum {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6,
    GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12,
    GGUF_NTYPES
} gguf_vtype;

/* The ggml tensor types ds-ft writes and reads (numbers as in ggml.h; the
 * reader knows every type's block size, see ggml_type_get). */
typedef enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
    GGML_BF16 = 30, GGML_NTYPES = 43
} ggml_type;

typedef struct {
    const char *name;   /* "q4_K", as ggml names it */
    int block;          /* values per block */
    int bytes;          /* bytes per block */
} ggml_type_info;

/* ggml_type_get(type) : the type's name and block layout, @return NULL for a
 * number ggml does not define (or has removed). */
const ggml_type_info *ggml_type_get(int type);
/* ggml_row_bytes(type, n) : bytes of n values of a known type, n a multiple of
 * its block, @return 0 otherwise. */
size_t ggml_row_bytes(int type, int64_t n);
/* gguf_vtype_name(t) : "u32", "string", ... ("?" for others). */
const char *gguf_vtype_name(int t);
/* gguf_vtype_size(t) : bytes of one value of a fixed-size type (a bool is
 * one byte), @return 0 for string, array and unknown types. */
size_t gguf_vtype_size(int t);

/* ------------------------------------------------------------------ writing */

typedef struct gguf_writer gguf_writer;

/* gguf_writer_new() : an empty file description, @return NULL when out of memory. */
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

/* Key/values, written in the order they are added. A key added twice, an
 * empty key, or a type that is not a scalar of that kind is DS_EINTERNAL.
 * gguf_add_scalar(w, key, type, value) : `value` points to a C value of the
 * type (uint8_t, ..., float, double, bool), @return DS_OK or a status. */
int gguf_add_scalar(gguf_writer *w, const char *key, gguf_vtype type, const void *value);
int gguf_add_string(gguf_writer *w, const char *key, const char *s);
/* gguf_add_array(w, key, elem, values, n) : n numeric or bool values of type elem. */
int gguf_add_array(gguf_writer *w, const char *key, gguf_vtype elem, const void *values, size_t n);
/* gguf_add_string_array(w, key, strs, n) : n NUL-terminated strings (copied). */
int gguf_add_string_array(gguf_writer *w, const char *key, const char *const *strs, size_t n);
static inline int gguf_add_u32(gguf_writer *w, const char *key, uint32_t v) { return gguf_add_scalar(w, key, GGUF_U32, &v); }
static inline int gguf_add_f32(gguf_writer *w, const char *key, float v) { return gguf_add_scalar(w, key, GGUF_F32, &v); }
static inline int gguf_add_bool(gguf_writer *w, const char *key, bool v) { return gguf_add_scalar(w, key, GGUF_BOOL, &v); }

/* Produces a tensor's bytes at write time into dst (nbytes long). */
typedef int (*gguf_fill_fn)(void *ctx, void *dst, size_t nbytes);

/* gguf_add_tensor(w, name, type, ndim, ne, data) : a tensor whose bytes are at
 * `data` (borrowed until gguf_writer_write), ne innermost first. A name that
 * is empty, too long or used twice, a type not known, more than 4 dims, or a
 * row (ne[0]) that is not a whole number of blocks is DS_EINTERNAL naming it.
 * @return DS_OK or a status. */
int gguf_add_tensor(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne, const void *data);
/* gguf_add_tensor_lazy(...) : the same, its bytes made by fill(ctx, dst, nbytes)
 * while the file is written, in the order tensors were added (so a model is
 * converted one tensor at a time). */
int gguf_add_tensor_lazy(gguf_writer *w, const char *name, int type, int ndim, const int64_t *ne, gguf_fill_fn fill,
                         void *ctx);
/* gguf_writer_write(w, path) : write the file under a temporary name and
 * rename it onto path (core/files.h); an existing path is replaced. The
 * alignment is the u32 "general.alignment" when it was added (a power of two),
 * else 32. @return DS_OK, or the first failure (a fill's status, DS_EIO). */
int gguf_writer_write(gguf_writer *w, const char *path);
/* gguf_writer_data_bytes(w) : bytes of tensor data added so far (unpadded). */
size_t gguf_writer_data_bytes(const gguf_writer *w);

/* ------------------------------------------------------------------ reading */

typedef struct {
    const char *key;
    gguf_vtype type;        /* GGUF_ARRAY for an array */
    gguf_vtype elem;        /* an array's element type (never GGUF_ARRAY) */
    uint64_t n;             /* an array's element count */
    union {
        uint64_t u;         /* GGUF_U8 .. GGUF_U64, widened */
        int64_t i;          /* GGUF_I8 .. GGUF_I64, widened */
        double f;           /* GGUF_F32, GGUF_F64, widened */
        bool b;             /* GGUF_BOOL */
    } v;
    const char *str;        /* GGUF_STRING (NUL-terminated copy; may hold NUL bytes, see len) */
    uint64_t len;           /* GGUF_STRING: byte count */
    const void *data;       /* a numeric or bool array: n elements as stored (little-endian) */
    char **strs;            /* a string array: n NUL-terminated copies */
} gguf_kv;

typedef struct {
    const char *name;
    int type;               /* ggml type number, known to ggml_type_get */
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];   /* innermost first; unused dims are 1 */
    int64_t nelem;
    uint64_t offset;        /* from the start of the data section */
    size_t nbytes;
    const void *data;       /* inside the file */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* gguf_open(path, out) : map and parse a GGUF file. Missing file DS_ENOINPUT;
 * anything malformed DS_EDATA naming the file and the key or tensor: a bad
 * magic, a version other than 2 or 3, counts or lengths past the end, an
 * unknown value or tensor type, duplicate keys or names, more than 4 dims, a
 * row not a whole number of blocks, a tensor outside the data, unaligned or
 * overlapping another. @return DS_OK or a status. */
int gguf_open(const char *path, gguf_file **out);
/* gguf_parse(buf, len, what, out) : the same for bytes in memory (not copied;
 * they must outlive the file); `what` names them in messages. */
int gguf_parse(const void *buf, size_t len, const char *what, gguf_file **out);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_alignment(const gguf_file *f);
size_t gguf_data_offset(const gguf_file *f);   /* file offset of the data section */
int gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int i);
/* gguf_find_kv(f, key) : @return the key/value or NULL. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
int gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int i);
/* gguf_find_tensor(f, name) : @return the tensor or NULL. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* gguf_kv_format(kv, buf, n) : the value as one line of text ("2048", "\"llama\"",
 * "[32000 strings: \"<unk>\", \"<s>\", ...]"), truncated to fit; @return buf. */
const char *gguf_kv_format(const gguf_kv *kv, char *buf, size_t n);

#endif
