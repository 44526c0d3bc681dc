/* fuzz/fuzz_report.c - the HTML report on arbitrary run folders.
 *
 * Input: NUL-separated parts, written as the files of a run folder in this
 * order: metrics.jsonl, eval/set.json, recipe.resolved.yaml,
 * clean_report.json, run_info.json, train.log (missing parts: no file). The
 * page must be written, or refused with DS_EDATA and a message; a written
 * page must hold no non-finite number in its SVG coordinates. */
#define _GNU_SOURCE
#include "core/files.h"
#include "core/status.h"
#include "finetune/report/report_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *g_dir;

static const char *const FILES[] = {"metrics.jsonl", "eval/set.json", "recipe.resolved.yaml",
                                    "clean_report.json", "run_info.json", "train.log"};

/* Whether p lies inside an attribute's value: an odd number of quotes since
 * its tag opened (values escape their quotes, so a run's text that reads
 * ` y2="` ends up as the end of some value, not as an attribute). */
static bool inside_value(const char *html, const char *p)
{
    const char *lt = p;
    while (lt > html && *lt != '<') lt--;
    int quotes = 0;
    for (const char *c = lt; c < p; c++) quotes += *c == '"';
    return quotes % 2 == 1;
}

/* Coordinates: only digits, signs, dots, exponents and path letters. */
static void check_numbers(const char *html)
{
    static const char *const attrs[] = {" d=\"", " x=\"", " y=\"", " cx=\"", " cy=\"", " x1=\"", " x2=\"",
                                        " y1=\"", " y2=\"", " width=\"", " height=\"", NULL};
    for (int a = 0; attrs[a]; a++)
        for (const char *p = strstr(html, attrs[a]); p; p = strstr(p + 1, attrs[a])) {
            if (inside_value(html, p)) continue;
            const char *v = p + strlen(attrs[a]), *end = strchr(v, '"');
            if (!end || strcspn(v, "nNiI") < (size_t)(end - v)) {
                fprintf(stderr, "a non-finite coordinate: %.80s\n", p);
                __builtin_trap();
            }
        }
}

static void remove_dir(void) { ds_remove_tree(g_dir); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_dir) {
        char shm[] = "/dev/shm/fuzz-report-XXXXXX", tmp[] = "/tmp/fuzz-report-XXXXXX";   /* memory first: six files per input */
        g_dir = mkdtemp(shm) ? strdup(shm) : mkdtemp(tmp) ? strdup(tmp) : NULL;
        if (!g_dir) __builtin_trap();
        atexit(remove_dir);
        char *eval = ds_path_join(g_dir, "eval");
        ds_mkdirs(eval);
        free(eval);
    }
    size_t at = 0;
    for (int i = 0; i < 6; i++) {
        char *path = ds_path_join(g_dir, FILES[i]);
        if (at > size) {
            unlink(path);
        } else {
            const uint8_t *nul = memchr(data + at, 0, size - at);
            size_t len = nul ? (size_t)(nul - (data + at)) : size - at;
            FILE *f = fopen(path, "wb");   /* plain writes: no fsync, so that the fuzzer runs fast */
            if (!f || fwrite(data + at, 1, len, f) != len || fclose(f) != 0) __builtin_trap();
            at += len + 1;
        }
        free(path);
    }
    const char *dir = g_dir;
    sbuf html = {0};
    int rc = report_render(&dir, 1, &html);
    if (rc == DS_OK) {
        check_numbers(html.buf.p);
    } else if (rc != DS_EDATA || !*ds_errmsg()) {
        fprintf(stderr, "refused with %d: '%s'\n", rc, ds_errmsg());
        __builtin_trap();
    }
    sb_free(&html);
    ds_clear_error();
    return 0;
}
