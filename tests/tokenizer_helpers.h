/* tests/tokenizer_helpers.h - helpers shared by the tokenizer suites. */
#ifndef TESTS_TOKENIZER_HELPERS_H
#define TESTS_TOKENIZER_HELPERS_H
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "core/utf8.h"
#include "data/model_config.h"
#include "data/tokenizer/tokenizer.h"
#include "data/tokenizer/tokenizer_internal.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- helpers */

static inline tokenizer *load_shared(const char *rel)
{
    char *dir = tu_shared_path(rel);
    tokenizer *t;
    int rc = tok_load(dir, &t);
    cr_assert_eq(rc, DS_OK, "%s: %s", dir, ds_errmsg());
    free(dir);
    return t;
}

static inline tokenizer *load_mem(const char *json, const char *config)
{
    tokenizer *t;
    int rc = tok_load_json(json, strlen(json), config, config ? strlen(config) : 0, "test.json", &t);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    return t;
}

/* Loading must fail with `code` and a message containing each of `needles`. */
static inline void expect_load_error(const char *json, const char *config, int code, const char *needle1, const char *needle2)
{
    tokenizer *t = NULL;
    int rc = tok_load_json(json, strlen(json), config, config ? strlen(config) : 0, "test.json", &t);
    cr_assert_eq(rc, code, "status %d, message: %s", rc, ds_errmsg());
    cr_assert_null(t);
    cr_assert(strstr(ds_errmsg(), needle1), "message '%s' lacks '%s'", ds_errmsg(), needle1);
    if (needle2) cr_assert(strstr(ds_errmsg(), needle2), "message '%s' lacks '%s'", ds_errmsg(), needle2);
}

static inline void expect_ids(const tokenizer *t, const char *text, bool special, const int32_t *want, size_t n)
{
    tok_ids v = {0};
    int rc = tok_encode(t, text, strlen(text), special, &v);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    cr_assert_eq(v.n, n, "'%s': %zu ids, expected %zu", text, v.n, n);
    for (size_t i = 0; i < n; i++) cr_assert_eq(v.ids[i], want[i], "'%s': id %zu is %d, expected %d", text, i, v.ids[i], want[i]);
    tok_ids_free(&v);
}
#define EXPECT_IDS(t, text, special, ...)                                                                    \
    do {                                                                                                     \
        const int32_t want_[] = {__VA_ARGS__};                                                               \
        expect_ids((t), (text), (special), want_, sizeof want_ / sizeof *want_);                            \
    } while (0)

static inline char *decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip)
{
    char *s;
    int rc = tok_decode(t, ids, n, skip, &s);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    return s;
}

static inline bool same_ids(const tok_ids *v, json_t *want)
{
    if (!json_is_array(want) || json_array_size(want) != v->n) return false;
    for (size_t i = 0; i < v->n; i++)
        if (json_integer_value(json_array_get(want, i)) != v->ids[i]) return false;
    return true;
}

/* Check every line of a fixture: ids, ids_with_special, decoded. */
static inline void check_cases(const tokenizer *t, const char *cases_rel, size_t expect_lines)
{
    char *path = tu_shared_path(cases_rel), *data;
    size_t len, lines = 0;
    cr_assert_eq(ds_read_file(path, &data, &len), DS_OK, "%s", ds_errmsg());
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lines++;
        json_error_t e;
        json_t *c = json_loads(line, 0, &e);
        cr_assert_not_null(c, "%s:%zu: %s", path, lines, e.text);
        json_t *text = json_object_get(c, "text");
        const char *s = json_string_value(text);
        size_t n = json_string_length(text);
        tok_ids v = {0}, w = {0};
        cr_assert_eq(tok_encode(t, s, n, false, &v), DS_OK, "%s:%zu: %s", path, lines, ds_errmsg());
        cr_expect(same_ids(&v, json_object_get(c, "ids")), "%s:%zu: ids differ for '%s'", path, lines, s);
        cr_assert_eq(tok_encode(t, s, n, true, &w), DS_OK, "%s:%zu: %s", path, lines, ds_errmsg());
        cr_expect(same_ids(&w, json_object_get(c, "ids_with_special")), "%s:%zu: ids_with_special differ for '%s'",
                  path, lines, s);
        char *d = decode(t, v.ids, v.n, false);
        cr_expect_str_eq(d, json_string_value(json_object_get(c, "decoded")), "%s:%zu: decoded", path, lines);
        free(d);
        tok_ids_free(&v);
        tok_ids_free(&w);
        json_decref(c);
    }
    cr_assert_eq(lines, expect_lines, "%s: %zu cases", path, lines);
    free(data);
    free(path);
}

static inline void check_fixture(const char *tok_rel, const char *cases_rel, size_t expect_lines)
{
    tokenizer *t = load_shared(tok_rel);
    check_cases(t, cases_rel, expect_lines);
    tok_free(t);
}

#endif
