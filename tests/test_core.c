/* The allocation policy (core/mem.h) and the growable buffer (core/buf.h):
 * growth, refusal of sizes that overflow, formatted text, handing the bytes
 * over, a buffer that keeps what it had after a failed append and takes
 * more afterwards; the failure hook of core/mem_test.h; whole files read
 * through the buffer. */
#include "testutil.h"

#include "core/buf.h"
#include "core/files.h"
#include "core/mem.h"
#include "core/mem_test.h"
#include "core/status.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void expect_oom(int rc)
{
    cr_expect_eq(rc, DS_ENOMEM, "expected DS_ENOMEM, got %d (%s)", rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), "out of memory") != NULL, "message '%s'", ds_errmsg());
}

/* ------------------------------------------------------------------ mem.h */

Test(mem, malloc_calloc_strdup)
{
    unsigned char *p = ds_malloc(0, "nothing");   /* zero bytes still gives a pointer to free */
    cr_assert_not_null(p);
    free(p);
    int *z = ds_calloc(1000, sizeof *z, "zeros");
    cr_assert_not_null(z);
    for (int i = 0; i < 1000; i++) cr_assert_eq(z[i], 0);
    free(z);
    char *s = ds_strdup("hello");
    cr_assert_str_eq(s, "hello");
    free(s);
}

Test(mem, calloc_refuses_an_overflowing_count)
{
    ds_clear_error();
    cr_expect_null(ds_calloc(SIZE_MAX / 2, 4, "a huge table"));
    expect_oom(DS_ENOMEM);
    cr_expect(strstr(ds_errmsg(), "for a huge table") != NULL, "message '%s'", ds_errmsg());
}

Test(mem, malloc_failure_names_what)
{
    ds_mem_fail_after(0);
    cr_expect_null(ds_malloc(123, "the logits"));
    cr_expect_str_eq(ds_errmsg(), "out of memory allocating 123 bytes for the logits");
}

Test(mem, grow_doubles_and_zeroes)
{
    int *v = NULL;
    size_t cap = 0;
    cr_assert_eq(ds_grow(&v, &cap, 1, sizeof *v), DS_OK);
    cr_expect_eq(cap, 8);
    for (int i = 0; i < 8; i++) v[i] = i + 1;
    cr_assert_eq(ds_grow(&v, &cap, 8, sizeof *v), DS_OK);   /* enough already: nothing changes */
    cr_expect_eq(cap, 8);
    cr_assert_eq(ds_grow(&v, &cap, 9, sizeof *v), DS_OK);
    cr_expect_eq(cap, 16);
    for (int i = 0; i < 8; i++) cr_expect_eq(v[i], i + 1, "element %d kept", i);
    for (int i = 8; i < 16; i++) cr_expect_eq(v[i], 0, "new element %d zeroed", i);
    cr_assert_eq(ds_grow(&v, &cap, 100, sizeof *v), DS_OK);
    cr_expect_eq(cap, 128);
    free(v);
}

Test(mem, grow_refuses_overflow_and_keeps_the_array)
{
    double *v = NULL;
    size_t cap = 0;
    cr_assert_eq(ds_grow(&v, &cap, 3, sizeof *v), DS_OK);
    double *before = v;
    expect_oom(ds_grow(&v, &cap, SIZE_MAX / 4, sizeof *v));   /* count * size overflows */
    expect_oom(ds_grow(&v, &cap, SIZE_MAX, 1));               /* the doubling overflows */
    cr_expect_eq(v, before);
    cr_expect_eq(cap, 8);
    ds_mem_fail_after(0);
    expect_oom(ds_grow(&v, &cap, 9, sizeof *v));
    cr_expect_eq(v, before);
    cr_expect_eq(cap, 8);
    free(v);
}

Test(mem, fail_after_counts_allocations_and_fails_once)
{
    ds_mem_fail_after(2);
    cr_expect(ds_mem_fail_pending());
    void *a = ds_malloc(8, "a"), *b = ds_calloc(2, 4, "b");
    cr_expect_not_null(a);
    cr_expect_not_null(b);
    cr_expect(ds_mem_fail_pending());
    char *s = ds_strdup("x");   /* the third allocation */
    cr_expect_null(s);
    cr_expect_not(ds_mem_fail_pending());
    void *c = ds_malloc(8, "c");   /* the failure was a single one */
    cr_expect_not_null(c);
    free(a), free(b), free(c);
    ds_mem_fail_after(5);
    ds_mem_fail_after(-1);
    cr_expect_not(ds_mem_fail_pending());
    void *d = ds_malloc(8, "d");
    cr_expect_not_null(d);
    free(d);
}

/* ------------------------------------------------------------------ buf.h */

Test(buf, append_puts_putc_printf)
{
    ds_buf b = {0};
    cr_assert_eq(ds_buf_puts(&b, "abc"), DS_OK);
    cr_assert_eq(ds_buf_putc(&b, '-'), DS_OK);
    cr_assert_eq(ds_buf_append(&b, "xyz\0tail", 8), DS_OK);   /* bytes, NULs included */
    cr_assert_eq(ds_buf_printf(&b, "[%d %s %.2f]", 42, "w", 1.5), DS_OK);
    cr_expect_eq(b.len, 4 + 8 + 11);
    cr_expect_eq(memcmp(b.p, "abc-xyz\0tail[42 w 1.50]", b.len), 0);
    cr_expect_eq(b.p[b.len], '\0');
    cr_expect_gt(b.cap, b.len);
    ds_buf_free(&b);
    cr_expect_null(b.p);
    cr_expect_eq(b.len, 0);
    cr_assert_eq(ds_buf_puts(&b, "again"), DS_OK);   /* reusable after free */
    cr_expect_str_eq(b.p, "again");
    ds_buf_free(&b);
}

Test(buf, grows_over_many_appends)
{
    ds_buf b = {0};
    for (int i = 0; i < 100000; i++) cr_assert_eq(ds_buf_printf(&b, "%d,", i % 10), DS_OK);
    cr_expect_eq(b.len, 200000);
    for (size_t i = 0; i < b.len; i += 2) cr_assert_eq(b.p[i], '0' + (char)(i / 2 % 10));
    cr_expect_eq(b.p[b.len], '\0');
    ds_buf_free(&b);
}

Test(buf, long_printf)
{
    char big[5000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ds_buf b = {0};
    cr_assert_eq(ds_buf_puts(&b, "<"), DS_OK);
    cr_assert_eq(ds_buf_printf(&b, "%s>", big), DS_OK);
    cr_expect_eq(b.len, 5001);
    cr_expect_eq(b.p[0], '<');
    cr_expect_eq(b.p[4999], 'q');
    cr_expect_eq(b.p[5000], '>');
    ds_buf_free(&b);
}

Test(buf, take_hands_over_and_resets)
{
    ds_buf b = {0};
    char *empty = ds_buf_take(&b);   /* an empty buffer gives "" */
    cr_assert_not_null(empty);
    cr_expect_str_eq(empty, "");
    free(empty);
    cr_assert_eq(ds_buf_puts(&b, "text"), DS_OK);
    char *s = ds_buf_take(&b);
    cr_expect_str_eq(s, "text");
    cr_expect_null(b.p);
    cr_expect_eq(b.len, 0);
    cr_expect_eq(b.cap, 0);
    free(s);
    ds_mem_fail_after(0);
    cr_expect_null(ds_buf_take(&b));   /* not even "" could be allocated */
    expect_oom(DS_ENOMEM);
}

Test(buf, refuses_overflow)
{
    ds_buf b = {0};
    cr_assert_eq(ds_buf_puts(&b, "kept"), DS_OK);
    expect_oom(ds_buf_reserve(&b, SIZE_MAX));
    expect_oom(ds_buf_reserve(&b, SIZE_MAX - 3));
    cr_expect_eq(b.len, 4);
    cr_expect_str_eq(b.p, "kept");
    ds_buf_free(&b);
}

Test(buf, append_after_a_failure)
{
    ds_buf b = {0};
    cr_assert_eq(ds_buf_puts(&b, "first"), DS_OK);
    size_t cap = b.cap;
    char more[300];
    memset(more, 'm', sizeof more);
    ds_mem_fail_after(0);
    expect_oom(ds_buf_append(&b, more, sizeof more));   /* needs to grow: fails */
    cr_expect_eq(b.len, 5);
    cr_expect_eq(b.cap, cap);
    cr_expect_str_eq(b.p, "first");
    ds_mem_fail_after(0);
    expect_oom(ds_buf_printf(&b, "%300s", "x"));
    cr_expect_str_eq(b.p, "first");
    cr_assert_eq(ds_buf_append(&b, more, sizeof more), DS_OK);   /* and later appends work */
    cr_expect_eq(b.len, 305);
    cr_expect_eq(memcmp(b.p, "first", 5), 0);
    cr_expect_eq(b.p[304], 'm');
    cr_expect_eq(b.p[305], '\0');
    ds_buf_free(&b);
}

/* ---------------------------------------------------------------- files.h */

Test(files, strdupf_and_path_join)
{
    char *s = ds_strdupf("%s=%d", "n", 7);
    cr_expect_str_eq(s, "n=7");
    free(s);
    char *p = ds_path_join("a/b//", "/c");
    cr_expect_str_eq(p, "a/b/c");
    free(p);
    ds_mem_fail_after(0);
    cr_expect_null(ds_strdupf("%d", 1));
    expect_oom(DS_ENOMEM);
    ds_mem_fail_after(0);
    cr_expect_null(ds_path_join("a", "b"));
    expect_oom(DS_ENOMEM);
}

Test(files, read_file_of_several_chunks)
{
    char *dir = tu_tmpdir(), *path = ds_path_join(dir, "big.bin");
    size_t n = 300000;   /* several 64 KiB reads and two doublings */
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 7 + i / 1000);
    cr_assert_eq(ds_write_file(path, data, n), DS_OK, "%s", ds_errmsg());
    char *back;
    size_t len;
    cr_assert_eq(ds_read_file(path, &back, &len), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(len, n);
    cr_expect_eq(memcmp(back, data, n), 0);
    cr_expect_eq(back[n], '\0');
    free(back);
    ds_mem_fail_after(1);   /* the first chunk is read, the growth fails */
    back = (char *)1;
    expect_oom(ds_read_file(path, &back, &len));
    cr_expect_null(back);
    cr_expect(strstr(ds_errmsg(), path) != NULL, "message '%s' names the file", ds_errmsg());
    cr_assert_eq(ds_write_file(path, "", 0), DS_OK);
    cr_assert_eq(ds_read_file(path, &back, &len), DS_OK);   /* an empty file is "" */
    cr_expect_eq(len, 0);
    cr_expect_str_eq(back, "");
    free(back);
    free(data);
    free(path);
    ds_remove_tree(dir);
    free(dir);
}
