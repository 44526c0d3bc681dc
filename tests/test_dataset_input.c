/* Dataset input: the record reader (JSONL, JSON arrays, zstd streams, line
 * numbers, bounded lines) and one test per kind of bad input, each checking
 * the status and that the message names file:line and the field. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/dataset/dataset.h"
#include "data/jsonl.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define TINY "fixtures/tiny-llama"

static data_options opts(const char *tmpl, int seq_len)
{
    data_options o = {tmpl, seq_len, false, false, NULL, NULL, NULL, 0};
    return o;
}

/* A file in a fresh temporary folder; drop_tmp() removes both. */
static char *tmp_file(const char *name, const void *bytes, size_t len)
{
    char *dir = tu_tmpdir();
    char *p = ds_path_join(dir, name);
    cr_assert_eq(ds_write_file(p, bytes, len), DS_OK);
    free(dir);
    return p;
}

static void drop_tmp(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = '\0';
        ds_remove_tree(path);
    }
    free(path);
}

/* ---- the record reader ---- */

Test(reader, jsonl_json_array_and_zstd_agree)
{
    static const char *files[] = {"alpaca.jsonl", "alpaca_array.json", "alpaca.jsonl.zst"};
    static const int lines[3][2] = {{1, 2}, {2, 7}, {1, 2}};
    for (int f = 0; f < 3; f++) {
        char *p = tu_dataset_path(files[f]);
        jsonl_reader *r;
        cr_assert_eq(jsonl_open(p, 0, &r), DS_OK, "%s", ds_errmsg());
        for (int k = 0; k < 2; k++) {
            json_t *o;
            int line;
            cr_assert_eq(jsonl_next(r, &o, &line), DS_OK, "%s", ds_errmsg());
            cr_assert(o);
            cr_expect_eq(line, lines[f][k], "%s record %d at line %d", files[f], k, line);
            cr_expect_str_eq(json_string_value(json_object_get(o, "output")),
                             k ? "A beta blocker." : "60 to 100 beats per minute.");
            json_decref(o);
        }
        json_t *o;
        int line;
        cr_expect_eq(jsonl_next(r, &o, &line), DS_OK);
        cr_expect_null(o, "%s: the end", files[f]);
        jsonl_close(r);
        free(p);
    }
}

/* Many records of varied length through zstd and through a file: records
 * cross every chunk boundary of the streaming reader. */
Test(reader, long_streams_cross_chunk_boundaries)
{
    size_t cap = 8 << 20, len = 0;
    char *text = malloc(cap);
    int nrec = 20000;
    for (int i = 0; i < nrec; i++) {
        len += (size_t)sprintf(text + len, "{\"i\": %d, \"pad\": \"", i);
        for (int k = 0; k < (i * 37) % 300; k++) text[len++] = 'a' + k % 26;
        len += (size_t)sprintf(text + len, "\"}\n%s", i % 1000 == 0 ? "\n" : "");
    }
    size_t bound = ZSTD_compressBound(len);
    char *z = malloc(bound);
    size_t zn = ZSTD_compress(z, bound, text, len, 1);
    cr_assert(!ZSTD_isError(zn));
    char *path = tmp_file("big.jsonl", text, len);
    for (int pass = 0; pass < 2; pass++) {
        jsonl_reader *r;
        if (pass == 0) cr_assert_eq(jsonl_open_mem(z, zn, "big.jsonl.zst", 0, &r), DS_OK, "%s", ds_errmsg());
        else cr_assert_eq(jsonl_open(path, 0, &r), DS_OK, "%s", ds_errmsg());
        int i = 0, expect_line = 1;
        for (;; i++) {
            json_t *o;
            int line;
            cr_assert_eq(jsonl_next(r, &o, &line), DS_OK, "%s", ds_errmsg());
            if (!o) break;
            cr_assert_eq(json_integer_value(json_object_get(o, "i")), i);
            cr_assert_eq(line, expect_line, "record %d", i);
            expect_line += i % 1000 == 0 ? 2 : 1;
            json_decref(o);
        }
        cr_expect_eq(i, nrec);
        jsonl_close(r);
    }
    drop_tmp(path);
    free(z);
    free(text);
}

static void read_all(const char *bytes, size_t len, size_t max, int *nrec, int *lines, int *err_line, char *err)
{
    jsonl_reader *r;
    cr_assert_eq(jsonl_open_mem(bytes, len, "mem.jsonl", max, &r), DS_OK);
    *nrec = 0;
    *err_line = 0;
    err[0] = 0;
    for (;;) {
        json_t *o;
        int line;
        int rc = jsonl_next(r, &o, &line);
        if (rc) {
            snprintf(err, 256, "%s", ds_errmsg());
            if (!*err_line) *err_line = 1;
            if (jsonl_can_continue(r)) continue;
            break;
        }
        if (!o) break;
        lines[(*nrec)++] = line;
        json_decref(o);
    }
    jsonl_close(r);
}

Test(reader, blank_lines_crlf_bom_and_line_numbers)
{
    const char text[] = "\xef\xbb\xbf\r\n{\"a\": 1}\r\n\n   \n{\"a\": 2}\n{\"a\": 3}";
    int n, lines[8], el;
    char err[256];
    read_all(text, sizeof text - 1, 0, &n, lines, &el, err);
    cr_expect_eq(n, 3, "%s", err);
    cr_expect_eq(lines[0], 2);
    cr_expect_eq(lines[1], 5);
    cr_expect_eq(lines[2], 6, "a last line without a newline");
    cr_expect_eq(el, 0, "%s", err);
}

Test(reader, line_length_is_bounded)
{
    char text[512];
    snprintf(text, sizeof text, "{\"a\": 1}\n{\"a\": \"%0200d\"}\n{\"a\": 3}\n", 0);
    jsonl_reader *r;
    cr_assert_eq(jsonl_open_mem(text, strlen(text), "big.jsonl", 64, &r), DS_OK);
    json_t *o;
    int line;
    cr_assert_eq(jsonl_next(r, &o, &line), DS_OK);
    json_decref(o);
    cr_expect_eq(jsonl_next(r, &o, &line), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "big.jsonl:2: line longer than 64 bytes"), "%s", ds_errmsg());
    cr_assert(jsonl_can_continue(r), "the next line can still be read");
    cr_assert_eq(jsonl_next(r, &o, &line), DS_OK);
    cr_expect_eq(line, 3);
    json_decref(o);
    jsonl_close(r);
}

Test(reader, json_array_errors_name_the_line)
{
    const char bad_elem[] = "[\n {\"a\": 1},\n {\"a\": },\n {\"a\": 3}\n]";
    int n, lines[8], el;
    char err[256];
    read_all(bad_elem, sizeof bad_elem - 1, 0, &n, lines, &el, err);
    cr_expect_eq(n, 2, "a bad element can be skipped");
    cr_expect(strstr(err, "mem.jsonl:3: malformed JSON"), "%s", err);
    const char no_comma[] = "[\n {\"a\": 1}\n {\"a\": 2}\n]";
    read_all(no_comma, sizeof no_comma - 1, 0, &n, lines, &el, err);
    cr_expect_eq(n, 1);
    cr_expect(strstr(err, "mem.jsonl:3: malformed JSON: expected ',' or ']'"), "%s", err);
    const char unclosed[] = "[\n {\"a\": 1},\n {\"a\": [2, 3}\n";
    read_all(unclosed, sizeof unclosed - 1, 0, &n, lines, &el, err);
    cr_expect(strstr(err, "unexpected end of data"), "%s", err);
    const char scalar[] = "[1, {\"a\": 1}]";
    read_all(scalar, sizeof scalar - 1, 0, &n, lines, &el, err);
    cr_expect_eq(n, 1);
    cr_expect(strstr(err, "mem.jsonl:1: expected a JSON object, found a number"), "%s", err);
}

/* ---- bad input: one test each, through dataset_load ---- */

static int load_bad(const char *name, const char *text, size_t len, const char *type, bool skip, dataset *d)
{
    tokenizer *tok = tu_tokenizer(TINY);
    char *p = tmp_file(name, text, len);
    data_source src = {p, (char *)type, NULL, -1, 0, NULL, NULL};
    data_options o = opts("plain", 512);
    o.skip_bad_lines = skip;
    memset(d, 0, sizeof *d);
    int rc = dataset_load(&src, 1, EX_SFT, tok, &o, d);
    drop_tmp(p);
    return rc;
}

static void expect_bad(const char *name, const char *text, const char *type, const char *needle)
{
    dataset d;
    int rc = load_bad(name, text, strlen(text), type, false, &d);
    cr_expect_eq(rc, DS_EDATA, "%s: expected DS_EDATA, got %d (%s)", name, rc, ds_errmsg());
    cr_expect(strstr(ds_errmsg(), needle), "message \"%s\" lacks \"%s\"", ds_errmsg(), needle);
}

#define GOOD "{\"instruction\": \"a\", \"output\": \"b\"}\n"

Test(bad_input, invalid_utf8)
{
    expect_bad("utf8.jsonl", GOOD "{\"instruction\": \"caf\xe9\", \"output\": \"b\"}\n", "alpaca",
               "utf8.jsonl:2: invalid UTF-8 (byte 0xe9 at column 21)");
}

Test(bad_input, invalid_utf8_surrogate_escape)
{
    expect_bad("surrogate.jsonl", GOOD GOOD "{\"instruction\": \"\\ud800\", \"output\": \"b\"}\n", "alpaca",
               "surrogate.jsonl:3: malformed JSON");
}

Test(bad_input, malformed_jsonl_line)
{
    expect_bad("broken.jsonl", GOOD GOOD "{\"instruction\": \"a\", \"output\": \"b\"\n" GOOD, "alpaca",
               "broken.jsonl:3: malformed JSON");
}

Test(bad_input, not_an_object)
{
    expect_bad("list.jsonl", GOOD "[1, 2]\n", "alpaca", "list.jsonl:2: expected a JSON object, found an array");
}

Test(bad_input, missing_field_is_named)
{
    expect_bad("missing.jsonl", GOOD "{\"instruction\": \"a\", \"input\": \"x\"}\n", "alpaca",
               "missing.jsonl:2: missing field \"output\"");
    expect_bad("missing_msg.jsonl", "{\"messages\": [{\"role\": \"user\"}]}\n", "messages",
               "missing_msg.jsonl:1: missing field \"messages[0].content\"");
}

Test(bad_input, wrong_type_is_named)
{
    expect_bad("type.jsonl", GOOD "{\"instruction\": \"a\", \"output\": 42}\n", "alpaca",
               "type.jsonl:2: field \"output\" must be a string, found a number");
    expect_bad("role.jsonl", "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n", "messages",
               "role.jsonl:1: field \"messages[0].role\": unknown role \"robot\"");
    expect_bad("choices.jsonl", "{\"question\": \"q\", \"choices\": \"A or B\", \"answer\": 0}\n", "mcq",
               "choices.jsonl:1: field \"choices\" must be a list of strings, found a string");
}

Test(bad_input, truncated_zstd)
{
    const char text[] = GOOD GOOD GOOD GOOD;
    size_t bound = ZSTD_compressBound(sizeof text);
    char *z = malloc(bound);
    size_t n = ZSTD_compress(z, bound, text, sizeof text - 1, 3);
    cr_assert(!ZSTD_isError(n));
    dataset d;
    int rc = load_bad("cut.jsonl.zst", z, n - 6, "alpaca", true, &d);
    cr_expect_eq(rc, DS_EDATA, "even with skip_bad_lines");
    cr_expect(strstr(ds_errmsg(), "cut.jsonl.zst: truncated zstd stream"), "%s", ds_errmsg());
    rc = load_bad("plain.jsonl.zst", text, sizeof text - 1, "alpaca", false, &d);
    cr_expect_eq(rc, DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "plain.jsonl.zst: not a zstd stream"), "%s", ds_errmsg());
    free(z);
}

Test(bad_input, answer_out_of_range)
{
    expect_bad("range.jsonl", "{\"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 1}\n"
                              "{\"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 2}\n",
               "mcq", "range.jsonl:2: field \"answer\": answer 2 out of range (2 choices");
#define MEDMCQA(cop) "{\"question\": \"q\", \"opa\": \"a\", \"opb\": \"b\", \"opc\": \"c\", \"opd\": \"d\", \"cop\": " cop "}\n"
    /* the numbering is told from the file (a 0: from 0, a 4: from 1); the range follows it */
    expect_bad("cop.jsonl", MEDMCQA("0") MEDMCQA("7"), "mcq", "cop.jsonl:2: field \"cop\": answer 7 out of range (4 choices: 0..3");
    expect_bad("cop1.jsonl", MEDMCQA("4") MEDMCQA("5"), "mcq", "cop1.jsonl:2: field \"cop\": answer 5 out of range (4 choices: 1..4");
    expect_bad("idx.jsonl", "{\"question\": \"q\", \"options\": {\"A\": \"a\", \"B\": \"b\"}, \"answer_idx\": \"C\"}\n",
               "mcq", "idx.jsonl:1: field \"answer_idx\": answer \"C\" out of range");
}

Test(bad_input, skip_bad_lines_counts)
{
    const char text[] = GOOD "not json\n" GOOD "{\"instruction\": 1, \"output\": \"b\"}\n{\"instruction\": \"caf\xe9\"}\n" GOOD;
    dataset d;
    int rc = load_bad("skip.jsonl", text, sizeof text - 1, "alpaca", true, &d);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    cr_expect_eq(d.n, 3);
    cr_expect_eq(d.skipped_lines, 3);
    dataset_free(&d);
}

Test(bad_input, missing_file)
{
    tokenizer *tok = tu_tokenizer(TINY);
    data_source src = {"/nonexistent/train.jsonl", "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts("plain", 512);
    dataset d;
    cr_expect_eq(dataset_load(&src, 1, EX_SFT, tok, &o, &d), DS_ENOINPUT);
    cr_expect(strstr(ds_errmsg(), "/nonexistent/train.jsonl"), "%s", ds_errmsg());
}

Test(bad_input, empty_file)
{
    expect_bad("empty.jsonl", "\n\n", "alpaca", "empty.jsonl: no records");
}
