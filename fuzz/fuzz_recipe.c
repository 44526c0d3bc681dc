/* fuzz/fuzz_recipe.c - the recipe loader on arbitrary bytes and arbitrary
 * command-line overrides.
 *
 * Input: the recipe text, then optionally NUL-separated override strings
 * ("train.max_steps=3", ...; at most 8). A recipe that loads must print as
 * YAML that loads again and prints the same text (the resolved recipe a run
 * writes must read back as the recipe it ran). A refusal must be DS_ECONFIG
 * with a message. */
#define _GNU_SOURCE
#include "core/status.h"
#include "finetune/recipe/recipe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OVERRIDES 8

static char *print_recipe(const recipe *r, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f) __builtin_trap();
    if (recipe_print(r, f) != DS_OK) __builtin_trap();
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t text_len = nul ? (size_t)(nul - data) : size;
    char *text = malloc(text_len + 1);   /* an exact-size copy, so reading past the end is caught */
    memcpy(text, data, text_len);

    char *ov[MAX_OVERRIDES];
    int n = 0;
    for (size_t at = text_len + 1; nul && at <= size && n < MAX_OVERRIDES;) {
        const uint8_t *end = memchr(data + at, 0, size - at);
        size_t len = end ? (size_t)(end - (data + at)) : size - at;
        ov[n++] = strndup((const char *)data + at, len);
        at += len + 1;
    }

    recipe *r = NULL;
    int rc = recipe_parse(text, text_len, "fuzz.yaml", ov, n, NULL, &r);
    if (rc == DS_OK) {
        size_t n1, n2;
        char *t1 = print_recipe(r, &n1);
        recipe *again = NULL;
        if (recipe_parse(t1, n1, "resolved.yaml", NULL, 0, NULL, &again) != DS_OK) {
            fprintf(stderr, "the resolved recipe does not load: %s\n---\n%s", ds_errmsg(), t1);
            __builtin_trap();
        }
        char *t2 = print_recipe(again, &n2);
        if (n1 != n2 || memcmp(t1, t2, n1)) {
            fprintf(stderr, "the resolved recipe prints differently:\n%s\n---\n%s", t1, t2);
            __builtin_trap();
        }
        free(t1);
        free(t2);
        recipe_free(again);
        recipe_free(r);
    } else if (rc != DS_ECONFIG || !*ds_errmsg() || r) {
        fprintf(stderr, "refused with %d: '%s'\n", rc, ds_errmsg());
        __builtin_trap();
    }
    for (int i = 0; i < n; i++) free(ov[i]);
    free(text);
    return 0;
}
