/* fuzz/fuzz_clean.c - the cleaner's parsers on arbitrary bytes: the first
 * byte picks what the rest is.
 *   0: clean.yaml (libyaml document, then every key through the tables);
 *      a config that loads must pass or fail clean_config_check cleanly
 *   1: text for the PII scanner: matches in order, inside the text, not
 *      overlapping, and the masked text exactly as long as they say
 *   2: text for the words, fingerprints and the repetition and charset rules
 *   3: a dataset file: each record's text as every dataset type reads it
 * Every failure must be a clean status with a message; the sanitizers catch
 * the rest. */
#include "core/status.h"
#include "data/clean/clean_internal.h"
#include "data/jsonl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_config(const uint8_t *data, size_t size)
{
    clean_config cfg;
    if (clean_config_defaults(&cfg) != DS_OK) abort();
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) abort();
    yaml_parser_set_input_string(&p, data, size);
    if (yaml_parser_load(&p, &doc)) {
        ds_clear_error();
        int rc = clean_config_from_yaml_node(&cfg, &doc, yaml_document_get_root_node(&doc), "fuzz.yaml");
        if (rc == DS_OK) rc = clean_config_check(&cfg);
        if (rc != DS_OK && (!ds_errmsg()[0] || (rc != DS_ECONFIG && rc != DS_ENOMEM && rc != DS_EINTERNAL))) abort();
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&p);
    clean_config_free(&cfg);
}

static void fuzz_pii(const char *text, size_t len)
{
    clean_pii_matches m = {0};
    if (clean_pii_find(text, len, &m) != DS_OK) abort();
    size_t want = len;
    for (size_t k = 0; k < m.n; k++) {
        if (m.m[k].start >= m.m[k].end || m.m[k].end > len) abort();
        if (k && m.m[k].start < m.m[k - 1].end) abort();
        want += strlen(clean_pii_placeholder(m.m[k].type)) - (m.m[k].end - m.m[k].start);
    }
    bool mask[CLEAN_PII_NCAT];
    for (int c = 0; c < CLEAN_PII_NCAT; c++) mask[c] = true;
    size_t n;
    char *out = clean_pii_mask(text, len, &m, mask, &n);
    if (!out || n != want) abort();
    free(out);
    clean_pii_matches_free(&m);
}

static void fuzz_text(const char *text, size_t len)
{
    clean_config cfg;
    if (clean_config_defaults(&cfg) != DS_OK) abort();
    clean_words w = {0};
    clean_scratch s = {0};
    if (clean_words_scan(&w, text, len) == DS_OK) {
        for (size_t i = 0; i < w.n; i++)
            if ((size_t)w.start[i] + w.len[i] > len || !w.len[i]) abort();
        clean_repetition r;
        if (clean_repetition_measure(text, 0, len, &w, 0, w.n, &s, &r) != DS_OK) abort();
        clean_repetition_broken(&r, &cfg);
        clean_charset_broken(&w, &cfg);
        uint16_t sig[32];
        clean_minhash(&w, 3, 32, sig);
        if (w.n == 0 && (clean_simhash(&w, 3) || clean_exact_hash(&w))) abort();
    }
    clean_scratch_free(&s);
    clean_words_free(&w);
    clean_config_free(&cfg);
}

static void fuzz_records(const char *data, size_t size)
{
    static const char *const types[] = {"alpaca", "messages", "prompt_completion", "text", "preference", "mcq"};
    jsonl_reader *r;
    if (jsonl_open_mem(data, size, "fuzz.jsonl", 1 << 16, &r) != DS_OK) return;
    clean_text t = {0};
    for (int n = 0; n < 32; n++) {
        json_t *obj;
        int line;
        if (jsonl_next(r, &obj, &line) != DS_OK) {
            if (!jsonl_can_continue(r)) break;
            continue;
        }
        if (!obj) break;
        clean_guess_type(obj);
        for (int k = 0; k < 6; k++) {
            ds_clear_error();
            int rc = clean_text_of(types[k], k & 1, obj, "fuzz.jsonl", line, &t);
            if (rc != DS_OK && !ds_errmsg()[0]) abort();
            if (rc == DS_OK && (strlen(t.all) != t.all_len || t.counted_len > t.all_len)) abort();
        }
        json_decref(obj);
    }
    clean_text_free(&t);
    jsonl_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    char *text = malloc(size);   /* an exact-size copy, so reading past the end is caught */
    memcpy(text, data + 1, size - 1);
    switch (data[0] % 4) {
    case 0: fuzz_config((const uint8_t *)text, size - 1); break;
    case 1: fuzz_pii(text, size - 1); break;
    case 2: fuzz_text(text, size - 1); break;
    default: fuzz_records(text, size - 1); break;
    }
    free(text);
    return 0;
}
