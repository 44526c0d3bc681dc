/* safetensors: reading every fixture, rejecting malformed files with a clear
 * message and DS_EDATA, writing byte-identical to Python's safetensors, and
 * sharded model folders. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/safetensors.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A safetensors image from a header text and `data_len` data bytes. */
static unsigned char *image(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

static void expect_rejected(const char *header, size_t data_len, const char *needle)
{
    size_t len;
    unsigned char *b = image(header, data_len, &len);
    st_file *f = NULL;
    int rc = st_file_parse(b, len, "bad.safetensors", &f);
    cr_expect_eq(rc, DS_EDATA, "expected DS_EDATA for %s, got %d", header, rc);
    cr_expect(strstr(ds_errmsg(), needle) != NULL, "message '%s' lacks '%s'", ds_errmsg(), needle);
    cr_expect(strstr(ds_errmsg(), "bad.safetensors") != NULL, "message '%s' does not name the file", ds_errmsg());
    cr_expect_null(f);
    free(b);
}

Test(safetensors, reads_a_valid_image)
{
    size_t len;
    unsigned char *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"__metadata__\":{\"format\":\"pt\"}}", 8, &len);
    float v[2] = {1.5f, -2.0f};
    memcpy(b + len - 8, v, 8);
    st_file *f;
    cr_assert_eq(st_file_parse(b, len, "x", &f), DS_OK, "%s", ds_errmsg());
    const st_tensor *t = st_file_find(f, "a");
    cr_assert(t);
    float out[2];
    cr_assert_eq(st_to_f32(t, out), 0);
    cr_expect(out[0] == 1.5f && out[1] == -2.0f);
    cr_expect_str_eq(st_file_meta(f, "format"), "pt");
    st_file_close(f);
    free(b);
}

Test(safetensors, truncated_file) {
    st_file *f;
    unsigned char b[5] = {1, 2, 3, 4, 5};
    cr_expect_eq(st_file_parse(b, 5, "bad.safetensors", &f), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "truncated"), "%s", ds_errmsg());
}

Test(safetensors, header_length_past_the_end)
{
    unsigned char b[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    st_file *f;
    cr_expect_eq(st_file_parse(b, sizeof b, "bad.safetensors", &f), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "past the end"), "%s", ds_errmsg());
}

Test(safetensors, overlapping_offsets)
{
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap");
}

Test(safetensors, offsets_leave_the_file)
{
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "leave the file");
}

Test(safetensors, offsets_out_of_order)
{
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "out of order");
}

Test(safetensors, unknown_dtype)
{
    expect_rejected("{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F17'");
}

Test(safetensors, shape_disagrees_with_byte_count)
{
    expect_rejected("{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "offsets span");
}

Test(safetensors, header_not_json)
{
    expect_rejected("{\"a\": nope}", 0, "not valid JSON");
}

Test(safetensors, bad_shape_entry)
{
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "bad shape");
}

Test(safetensors, duplicate_names)
{
    expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, "not valid JSON");
}

Test(safetensors, missing_tensor_is_named)
{
    char *dir = tu_shared_path("fixtures/tiny-llama");
    st_set *s;
    cr_assert_eq(st_set_open(dir, &s), 0, "%s", ds_errmsg());
    const st_tensor *t;
    cr_expect_eq(st_set_require(s, "model.layers.9.mlp.up_proj.weight", &t), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "model.layers.9.mlp.up_proj.weight"), "%s", ds_errmsg());
    st_set_close(s);
    free(dir);
}

Test(safetensors, missing_folder_is_no_input)
{
    st_set *s;
    cr_expect_eq(st_set_open("/nonexistent/model", &s), DS_ENOINPUT);
}

/* Writing every tensor of a fixture back gives the very same bytes: our layout
 * (dtype order, names, header padding) is Python safetensors'. */
static void expect_rewrite_identical(const char *rel)
{
    char *path = tu_shared_path(rel);
    st_file *f;
    cr_assert_eq(st_file_open(path, &f), 0, "%s", ds_errmsg());
    st_writer *w = st_writer_new();
    if (st_file_meta(f, "format")) st_writer_meta(w, "format", st_file_meta(f, "format"));
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        cr_assert_eq(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    char *dir = tu_tmpdir(), *out = ds_path_join(dir, "x.safetensors");
    cr_assert_eq(st_writer_write(w, out), 0, "%s", ds_errmsg());
    char *a, *b;
    size_t la, lb;
    cr_assert_eq(ds_read_file(path, &a, &la), 0);
    cr_assert_eq(ds_read_file(out, &b, &lb), 0);
    cr_expect_eq(la, lb, "%s: %zu vs %zu bytes", rel, la, lb);
    cr_expect(la == lb && memcmp(a, b, la) == 0, "%s: rewritten file differs", rel);
    st_writer_free(w);
    st_file_close(f);
    free(a); free(b); free(dir); free(out); free(path);
}

Test(safetensors, writer_matches_python_layout_bf16) { expect_rewrite_identical("fixtures/tiny-llama/model.safetensors"); }
Test(safetensors, writer_matches_python_layout_mixed) { expect_rewrite_identical("fixtures/tiny-llama-bnb-4bit/model.safetensors"); }
Test(safetensors, writer_matches_python_layout_i64_f32) { expect_rewrite_identical("fixtures/tiny-llama/reference.safetensors"); }

/* Split tiny-llama into two shards + index: the set finds every tensor. */
Test(safetensors, sharded_folder)
{
    char *src = tu_shared_path("fixtures/tiny-llama/model.safetensors");
    st_file *f;
    cr_assert_eq(st_file_open(src, &f), 0);
    char *dir = tu_tmpdir();
    st_writer *w[2] = {st_writer_new(), st_writer_new()};
    char *index = strdup("{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_at(f, i);
        st_writer_add(w[i % 2], t->name, t->dtype, t->ndim, t->shape, t->data);
        char *n = ds_strdupf("%s%s\"%s\": \"model-0000%d-of-00002.safetensors\"", index, i ? ", " : "", t->name, i % 2 + 1);
        free(index);
        index = n;
    }
    char *n = ds_strdupf("%s}}", index);
    free(index);
    for (int k = 0; k < 2; k++) {
        char *name = ds_strdupf("%s/model-0000%d-of-00002.safetensors", dir, k + 1);
        cr_assert_eq(st_writer_write(w[k], name), 0);
        free(name);
        st_writer_free(w[k]);
    }
    char *ipath = ds_path_join(dir, "model.safetensors.index.json");
    ds_write_file(ipath, n, strlen(n));
    st_set *s;
    cr_assert_eq(st_set_open(dir, &s), 0, "%s", ds_errmsg());
    cr_expect_eq(st_set_nfiles(s), 2);
    cr_expect_eq(st_set_count(s), st_file_count(f));
    for (int i = 0; i < st_file_count(f); i++) {
        const st_tensor *a = st_file_at(f, i), *b = st_set_find(s, a->name);
        cr_assert(b, "%s missing from the sharded set", a->name);
        cr_expect(a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes), "%s differs", a->name);
    }
    st_set_close(s);
    /* An index naming a tensor its shard lacks is refused. */
    char *bad = ds_strdupf("{\"weight_map\": {\"ghost.weight\": \"model-00001-of-00002.safetensors\"}}");
    ds_write_file(ipath, bad, strlen(bad));
    cr_expect_eq(st_set_open(dir, &s), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "ghost.weight"), "%s", ds_errmsg());
    /* So is one naming the wrong shard for a tensor the other shard holds
     * (tensor 1 is in shard 2; both shards are opened). */
    free(bad);
    const char *t0 = st_file_at(f, 0)->name, *t1 = st_file_at(f, 1)->name, *t3 = st_file_at(f, 3)->name;
    bad = ds_strdupf("{\"weight_map\": {\"%s\": \"model-00001-of-00002.safetensors\", \"%s\": "
                     "\"model-00002-of-00002.safetensors\", \"%s\": \"model-00001-of-00002.safetensors\"}}",
                     t0, t3, t1);
    ds_write_file(ipath, bad, strlen(bad));
    cr_expect_eq(st_set_open(dir, &s), DS_EDATA);
    char *named = ds_strdupf("tensor '%s' listed in the index is missing from model-00001-of-00002.safetensors", t1);
    cr_expect(strstr(ds_errmsg(), named), "%s", ds_errmsg());
    free(named);
    st_file_close(f);
    free(src); free(dir); free(n); free(ipath); free(bad);
}
