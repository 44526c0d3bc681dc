/* GGUF files and llama.cpp's block formats: the writer and the reader
 * against each other and against malformed files; the quantizers against
 * known answers computed by llama.cpp's own library, and against the error
 * each format allows on random matrices of odd sizes. */
#include "testutil.h"

#include "core/files.h"
#include "core/numeric.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/status.h"
#include "data/gguf/gguf.h"
#include "quant/ggml_quant.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ files */

static char *write_sample(const char *dir, uint32_t alignment)
{
    gguf_writer *w = gguf_writer_new();
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int32_t i32 = -2000000000;
    uint64_t u64 = 18000000000000000000ull;
    int64_t i64 = -9000000000000000000ll;
    double f64 = 0.1;
    cr_assert_eq(gguf_add_string(w, "general.architecture", "llama"), 0);
    if (alignment) cr_assert_eq(gguf_add_u32(w, "general.alignment", alignment), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.u8", GGUF_U8, &u8), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.i8", GGUF_I8, &i8), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.u16", GGUF_U16, &u16), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.i16", GGUF_I16, &i16), 0);
    cr_assert_eq(gguf_add_u32(w, "t.u32", 4000000000u), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.i32", GGUF_I32, &i32), 0);
    cr_assert_eq(gguf_add_f32(w, "t.f32", 1.5f), 0);
    cr_assert_eq(gguf_add_bool(w, "t.bool", true), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.u64", GGUF_U64, &u64), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.i64", GGUF_I64, &i64), 0);
    cr_assert_eq(gguf_add_scalar(w, "t.f64", GGUF_F64, &f64), 0);
    cr_assert_eq(gguf_add_string(w, "t.empty", ""), 0);
    const char *strs[] = {"<s>", "", "ĠHello", "日本語"};
    cr_assert_eq(gguf_add_string_array(w, "t.strs", strs, 4), 0);
    int32_t ints[] = {1, -2, 3};
    cr_assert_eq(gguf_add_array(w, "t.ints", GGUF_I32, ints, 3), 0);
    bool bools[] = {true, false, true};
    cr_assert_eq(gguf_add_array(w, "t.bools", GGUF_BOOL, bools, 3), 0);
    cr_assert_eq(gguf_add_array(w, "t.none", GGUF_F64, NULL, 0), 0);
    static float v[3] = {1, 2, 3};
    static uint16_t h[5 * 7];
    static unsigned char q[34 * 3 * 2];
    for (int i = 0; i < 35; i++) h[i] = ds_f32_to_f16((float)i);
    for (size_t i = 0; i < sizeof q; i++) q[i] = (unsigned char)i;
    int64_t ne_v[1] = {3}, ne_h[2] = {5, 7}, ne_q[3] = {96, 2, 1};
    cr_assert_eq(gguf_add_tensor(w, "vec", GGML_F32, 1, ne_v, v), 0);
    cr_assert_eq(gguf_add_tensor(w, "half", GGML_F16, 2, ne_h, h), 0);
    cr_assert_eq(gguf_add_tensor(w, "blocks", GGML_Q8_0, 3, ne_q, q), 0);
    char *path = ds_path_join(dir, "sample.gguf");
    cr_assert_eq(gguf_writer_write(w, path), 0, "%s", ds_errmsg());
    gguf_writer_free(w);
    return path;
}

Test(gguf, every_value_type_and_tensors_round_trip)
{
    char *dir = tu_tmpdir(), *path = write_sample(dir, 0);
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0, "%s", ds_errmsg());
    cr_expect_eq(gguf_version(f), 3);
    cr_expect_eq(gguf_alignment(f), 32);
    cr_expect_eq(gguf_data_offset(f) % 32, 0);
    cr_expect_eq(gguf_kv_count(f), 17);
    cr_expect_str_eq(gguf_find_kv(f, "general.architecture")->str, "llama");
    cr_expect_eq(gguf_find_kv(f, "t.u8")->v.u, 200);
    cr_expect_eq(gguf_find_kv(f, "t.i8")->v.i, -100);
    cr_expect_eq(gguf_find_kv(f, "t.u16")->v.u, 60000);
    cr_expect_eq(gguf_find_kv(f, "t.i16")->v.i, -30000);
    cr_expect_eq(gguf_find_kv(f, "t.u32")->v.u, 4000000000u);
    cr_expect_eq(gguf_find_kv(f, "t.i32")->v.i, -2000000000);
    cr_expect_eq(gguf_find_kv(f, "t.f32")->v.f, 1.5);
    cr_expect(gguf_find_kv(f, "t.bool")->v.b);
    cr_expect_eq(gguf_find_kv(f, "t.u64")->v.u, 18000000000000000000ull);
    cr_expect_eq(gguf_find_kv(f, "t.i64")->v.i, -9000000000000000000ll);
    cr_expect_eq(gguf_find_kv(f, "t.f64")->v.f, 0.1);
    cr_expect_eq(gguf_find_kv(f, "t.empty")->len, 0);
    const gguf_kv *s = gguf_find_kv(f, "t.strs");
    cr_assert_eq(s->type, GGUF_ARRAY);
    cr_assert_eq(s->elem, GGUF_STRING);
    cr_assert_eq(s->n, 4);
    cr_expect_str_eq(s->strs[2], "ĠHello");
    cr_expect_str_eq(s->strs[3], "日本語");
    cr_expect_str_eq(s->strs[1], "");
    const gguf_kv *ints = gguf_find_kv(f, "t.ints");
    cr_assert_eq(ints->elem, GGUF_I32);
    int32_t got[3];
    memcpy(got, ints->data, sizeof got);
    cr_expect(got[0] == 1 && got[1] == -2 && got[2] == 3);
    const gguf_kv *bools = gguf_find_kv(f, "t.bools");
    cr_expect(((const uint8_t *)bools->data)[0] == 1 && ((const uint8_t *)bools->data)[1] == 0);
    cr_expect_eq(gguf_find_kv(f, "t.none")->n, 0);
    char buf[256];
    cr_expect_str_eq(gguf_kv_format(s, buf, sizeof buf), "[4 strings: \"<s>\", \"\", \"ĠHello\", \"日本語\"]");
    cr_expect_str_eq(gguf_kv_format(ints, buf, sizeof buf), "[3 i32s: 1, -2, 3]");
    cr_assert_eq(gguf_tensor_count(f), 3);
    const gguf_tensor *v = gguf_find_tensor(f, "vec"), *h = gguf_find_tensor(f, "half"), *q = gguf_find_tensor(f, "blocks");
    cr_assert(v && h && q);
    cr_expect_eq(v->nbytes, 12);
    cr_expect(v->ndim == 1 && v->ne[0] == 3 && v->ne[1] == 1);
    cr_expect(h->ndim == 2 && h->ne[0] == 5 && h->ne[1] == 7 && h->nbytes == 70);
    cr_expect(q->ndim == 3 && q->nbytes == 34 * 3 * 2 && q->type == GGML_Q8_0);
    cr_expect_eq(((const float *)v->data)[2], 3.0f);
    cr_expect_eq(ds_f16_to_f32(((const uint16_t *)h->data)[34]), 34.0f);
    for (int i = 0; i < 3; i++) cr_expect_eq(gguf_tensor_at(f, i)->offset % 32, 0, "tensor %d unaligned", i);
    cr_expect_eq(((const unsigned char *)q->data)[203], 203);
    gguf_close(f);
    free(path);
    free(dir);
}

Test(gguf, custom_alignment_pads_every_tensor)
{
    char *dir = tu_tmpdir(), *path = write_sample(dir, 256);
    gguf_file *f;
    cr_assert_eq(gguf_open(path, &f), 0, "%s", ds_errmsg());
    cr_expect_eq(gguf_alignment(f), 256);
    cr_expect_eq(gguf_data_offset(f) % 256, 0);
    for (int i = 0; i < gguf_tensor_count(f); i++) cr_expect_eq(gguf_tensor_at(f, i)->offset % 256, 0);
    gguf_close(f);
    free(path);
    free(dir);
}

/* Every prefix of a valid file is refused with DS_EDATA, never read past. */
Test(gguf, every_truncation_is_refused)
{
    char *dir = tu_tmpdir(), *path = write_sample(dir, 0), *bytes;
    size_t len;
    cr_assert_eq(ds_read_file(path, &bytes, &len), 0);
    for (size_t n = 0; n < len; n++) {
        unsigned char *copy = malloc(n ? n : 1);
        memcpy(copy, bytes, n);
        gguf_file *f = NULL;
        int rc = gguf_parse(copy, n, "cut", &f);
        /* the data of the last tensor is padded: cuts in the padding still hold every tensor */
        if (rc == DS_OK) {
            for (int i = 0; i < gguf_tensor_count(f); i++) {
                const gguf_tensor *t = gguf_tensor_at(f, i);
                cr_assert((const unsigned char *)t->data + t->nbytes <= copy + n, "tensor past a cut at %zu", n);
            }
            gguf_close(f);
        } else {
            cr_assert_eq(rc, DS_EDATA, "cut at %zu: status %d", n, rc);
            cr_assert_null(f);
        }
        free(copy);
    }
    free(bytes);
    free(path);
    free(dir);
}

/* A header by hand: magic, version, counts, then `rest`. */
static int parse_raw(uint32_t version, uint64_t nt, uint64_t nkv, const void *rest, size_t n, const char *want)
{
    unsigned char buf[512];
    memcpy(buf, "GGUF", 4);
    memcpy(buf + 4, &version, 4);
    memcpy(buf + 8, &nt, 8);
    memcpy(buf + 16, &nkv, 8);
    memcpy(buf + 24, rest, n);
    gguf_file *f = NULL;
    int rc = gguf_parse(buf, 24 + n, "raw", &f);
    if (want) cr_expect(strstr(ds_errmsg(), want), "message '%s' lacks '%s'", ds_errmsg(), want);
    gguf_close(f);
    return rc;
}

/* key "k" of type `type` followed by `value` */
static size_t kv(unsigned char *p, uint32_t type, const void *value, size_t n)
{
    uint64_t one = 1;
    memcpy(p, &one, 8);
    p[8] = 'k';
    memcpy(p + 9, &type, 4);
    memcpy(p + 13, value, n);
    return 13 + n;
}

Test(gguf, malformed_headers_are_refused_by_name)
{
    unsigned char rest[256] = {0};
    cr_expect_eq(parse_raw(1, 0, 0, rest, 0, "version 1"), DS_EDATA);
    cr_expect_eq(parse_raw(4, 0, 0, rest, 0, "version 4"), DS_EDATA);
    cr_expect_eq(parse_raw(3, 0, 1000000, rest, 0, "cannot fit"), DS_EDATA);
    uint32_t x = 13;
    cr_expect_eq(parse_raw(3, 0, 1, rest, kv(rest, 99, &x, 4), "unknown value type 99"), DS_EDATA);
    uint32_t nested[3] = {GGUF_ARRAY, 0, 0};
    cr_expect_eq(parse_raw(3, 0, 1, rest, kv(rest, GGUF_ARRAY, nested, 12), "arrays of arrays"), DS_EDATA);
    uint8_t two = 2;
    cr_expect_eq(parse_raw(3, 0, 1, rest, kv(rest, GGUF_BOOL, &two, 1), "neither 0 nor 1"), DS_EDATA);
    size_t k = kv(rest, GGUF_U32, &x, 4);
    k += kv(rest + k, GGUF_U32, &x, 4);
    cr_expect_eq(parse_raw(3, 0, 2, rest, k, "'k' occurs twice"), DS_EDATA);
    unsigned char bad[4] = {'G', 'G', 'M', 'L'};
    gguf_file *f = NULL;
    cr_expect_eq(gguf_parse(bad, 4, "raw", &f), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "magic"));
    /* general.alignment of another type, or not a power of two */
    unsigned char al[64];
    uint64_t len = 17;
    memcpy(al, &len, 8);
    memcpy(al + 8, "general.alignment", 17);
    uint32_t t32 = GGUF_I32, a = 64;
    memcpy(al + 25, &t32, 4);
    memcpy(al + 29, &a, 4);
    cr_expect_eq(parse_raw(3, 0, 1, al, 33, "general.alignment"), DS_EDATA);
    t32 = GGUF_U32;
    a = 48;
    memcpy(al + 25, &t32, 4);
    memcpy(al + 29, &a, 4);
    cr_expect_eq(parse_raw(3, 0, 1, al, 33, "power of two"), DS_EDATA);
}

/* one tensor info "t": ndim dims, type, offset; then `data` bytes after padding to 32 */
static int parse_tensor(uint32_t ndim, const uint64_t *ne, uint32_t type, uint64_t offset, size_t data, const char *want)
{
    unsigned char rest[400] = {0};
    uint64_t one = 1;
    size_t k = 0;
    memcpy(rest, &one, 8);
    rest[8] = 't';
    memcpy(rest + 9, &ndim, 4);
    k = 13;
    for (uint32_t d = 0; d < ndim; d++, k += 8) memcpy(rest + k, &ne[d], 8);
    memcpy(rest + k, &type, 4);
    memcpy(rest + k + 4, &offset, 8);
    k += 12;
    size_t head = 24 + k, pad = (head + 31) / 32 * 32 - head;
    return parse_raw(3, 1, 0, rest, k + pad + data, want);
}

Test(gguf, malformed_tensor_infos_are_refused_by_name)
{
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    cr_expect_eq(parse_tensor(2, ne, GGML_F32, 0, 256, NULL), DS_OK);
    cr_expect_eq(parse_tensor(5, ne, GGML_F32, 0, 256, "5 dims"), DS_EDATA);
    cr_expect_eq(parse_tensor(2, ne, 4, 0, 256, "unknown ggml type 4"), DS_EDATA);   /* removed q4_2 */
    uint64_t odd[2] = {33, 2};
    cr_expect_eq(parse_tensor(2, odd, GGML_Q8_0, 0, 256, "not a whole number"), DS_EDATA);
    cr_expect_eq(parse_tensor(2, ne, GGML_F32, 16, 256, "not a multiple of the alignment"), DS_EDATA);
    cr_expect_eq(parse_tensor(2, ne, GGML_F32, 0, 100, "past the end"), DS_EDATA);
    cr_expect_eq(parse_tensor(2, ne, GGML_F32, 1ull << 62, 256, "past the end"), DS_EDATA);
    uint64_t huge[2] = {1ull << 40, 1ull << 40};
    cr_expect_eq(parse_tensor(2, huge, GGML_F32, 0, 256, "too large"), DS_EDATA);
}

Test(gguf, writer_refuses_what_llama_cpp_cannot_read)
{
    gguf_writer *w = gguf_writer_new();
    float x[64] = {0};
    int64_t ne[2] = {33, 1}, ok[1] = {64};
    cr_expect_eq(gguf_add_u32(w, "a", 1), 0);
    cr_expect_eq(gguf_add_u32(w, "a", 2), DS_EINTERNAL);
    cr_expect_eq(gguf_add_string(w, "", "x"), DS_EINTERNAL);
    cr_expect_eq(gguf_add_u32(w, "general.alignment", 48), DS_EINTERNAL);
    cr_expect_eq(gguf_add_tensor(w, "q", GGML_Q8_0, 2, ne, x), DS_EINTERNAL);
    cr_expect(strstr(ds_errmsg(), "'q'"));
    cr_expect_eq(gguf_add_tensor(w, "a_name_that_is_far_too_long_for_llama_cpp_to_take_as_a_tensor_name", GGML_F32, 1,
                                 ok, x), DS_EINTERNAL);
    cr_expect_eq(gguf_add_tensor(w, "v", GGML_F32, 1, ok, x), 0);
    cr_expect_eq(gguf_add_tensor(w, "v", GGML_F32, 1, ok, x), DS_EINTERNAL);
    gguf_writer_free(w);
}

static int failing_fill(void *ctx, void *dst, size_t n) { return ds_fail(DS_EDATA, "no data for %s", (char *)ctx); }

Test(gguf, a_failed_write_leaves_nothing)
{
    char *dir = tu_tmpdir(), *path = ds_path_join(dir, "x.gguf"), *missing = ds_path_join(dir, "no/such/x.gguf");
    gguf_writer *w = gguf_writer_new();
    int64_t ne[1] = {8};
    cr_assert_eq(gguf_add_tensor_lazy(w, "t", GGML_F32, 1, ne, failing_fill, "t"), 0);
    cr_expect_eq(gguf_writer_write(w, path), DS_EDATA);
    cr_expect_not(ds_exists(path));
    char *tmp = ds_strdupf("%s.tmp-%d", path, (int)getpid());
    cr_expect_not(ds_exists(tmp), "temporary file left");
    cr_expect_eq(gguf_writer_write(w, missing), DS_EIO);
    gguf_writer_free(w);
    free(tmp);
    free(missing);
    free(path);
    free(dir);
}
