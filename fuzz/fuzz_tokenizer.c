/* Fuzz the tokenizer. The first byte of the input picks what the rest is:
 *   even: text, encoded with the tiny model's byte-level tokenizer (the
 *         DeepSeek pipeline) and with a SentencePiece-style one (normalizers,
 *         byte fallback, decoders); the ids are decoded again, and the rest
 *         is also read as ids to decode. A byte-level tokenizer whose
 *         vocabulary holds all 256 bytes must give back exactly the text.
 *   odd:  a tokenizer.json, optionally followed by a NUL and a
 *         tokenizer_config.json; if it loads, it encodes and decodes, and
 *         again after ids from the model fill what it lacks.
 * Every failure must be a clean status with a message; the sanitizers catch
 * the rest. */
#include "fixture_dir.h"
#include "core/files.h"
#include "core/status.h"
#include "data/tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tokenizer *g_bytelevel, *g_spm;

/* Llama-2's arrangement in miniature. */
static const char SPM_JSON[] =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    " {\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": false},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false, \"lstrip\": true, \"rstrip\": true, \"single_word\": false},"
    " {\"id\": 9, \"content\": \"ab\", \"special\": false, \"normalized\": true, \"lstrip\": false, \"rstrip\": false, \"single_word\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"}, {\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
    " \"pre_tokenizer\": {\"type\": \"Digits\", \"individual_digits\": true},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": \"<s> $A\", \"special_tokens\": {\"<s>\": {\"ids\": [1]}}},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"},"
    "  {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 1}]},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
    "  \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"<0x41>\": 2, \"<0xC3>\": 3, \"<0xA9>\": 4, \"\\u2581\": 5, \"a\": 6, \"b\": 7, \"1\": 8,"
    "   \"\\u2581a\": 10, \"aa\": 11},"
    "  \"merges\": [\"\\u2581 a\", \"a a\"]}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *dir = fuzz_fixture_dir("tiny-llama");
    if (tok_load(dir, &g_bytelevel) != DS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", ds_errmsg());
        abort();
    }
    free(dir);
    if (tok_load_json(SPM_JSON, strlen(SPM_JSON), NULL, 0, "spm.json", &g_spm) != DS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", ds_errmsg());
        abort();
    }
    return 0;
}

/* Encode and decode; the status must be clean either way. */
static void exercise(const tokenizer *t, const char *text, size_t n, bool exact)
{
    for (int special = 0; special < 2; special++) {
        tok_ids v = {0};
        ds_clear_error();
        int rc = tok_encode(t, text, n, special, &v);
        if (rc != DS_OK) {
            if (rc != DS_EDATA || !*ds_errmsg() || v.n) abort();
            tok_ids_free(&v);
            return;
        }
        for (size_t i = 0; i < v.n; i++)
            if (v.ids[i] < 0 || v.ids[i] >= tok_vocab_size(t)) abort();
        for (int skip = 0; skip < 2; skip++) {
            char *d = NULL;
            if (tok_decode(t, v.ids, v.n, skip, &d) != DS_OK) abort();
            /* byte-level BPE is lossless: the text comes back, special tokens written in it
             * too (a text with a NUL cannot be compared as a C string) */
            if (exact && !special && !skip && !memchr(text, '\0', n) && (strlen(d) != n || memcmp(d, text, n)))
                abort();
            free(d);
        }
        tok_ids_free(&v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (!(data[0] & 1)) {
        exercise(g_bytelevel, rest, n, true);
        exercise(g_spm, rest, n, false);
        /* the bytes as ids, in and out of range */
        size_t nid = n / 4;
        int32_t *ids = malloc((nid ? nid : 1) * sizeof *ids);
        memcpy(ids, rest, nid * 4);
        for (int skip = 0; skip < 2; skip++) {
            char *d = NULL;
            if (tok_decode(g_bytelevel, ids, nid, skip, &d) != DS_OK) abort();
            free(d);
            if (tok_decode(g_spm, ids, nid, skip, &d) != DS_OK) abort();
            free(d);
        }
        free(ids);
        return 0;
    }
    const char *nul = memchr(rest, '\0', n);
    size_t jlen = nul ? (size_t)(nul - rest) : n;
    const char *cfg = nul ? nul + 1 : NULL;
    size_t clen = nul ? n - jlen - 1 : 0;
    tokenizer *t = NULL;
    ds_clear_error();
    int rc = tok_load_json(rest, jlen, cfg, clen, "fuzz.json", &t);
    if (rc != DS_OK) {
        if (t || !*ds_errmsg()) abort();
        return 0;
    }
    static const char sample[] = "Hello  world 123 <s> ab c\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80\n\t!";
    exercise(t, sample, sizeof sample - 1, false);
    exercise(t, rest, jlen, false);
    for (int id = -1; id <= tok_vocab_size(t) && id < 300; id++) {
        const char *s = tok_token_str(t, id);
        if (s) (void)tok_token_id(t, s);
        (void)tok_is_special(t, id);
    }
    if (strlen(tok_digest(t)) != 64) abort();
    /* the model's ids (any, in range or not) fill what the tokenizer lacks; the ids it had stay */
    int had[3] = {tok_bos_id(t), tok_eos_id(t), tok_pad_id(t)};
    bool adds = tok_adds_bos(t);
    int want = jlen ? (unsigned char)rest[0] - 8 : 0;
    tok_set_default_ids(t, want, want + 1, want - 1);
    int now[3] = {tok_bos_id(t), tok_eos_id(t), tok_pad_id(t)};
    for (int i = 0; i < 3; i++)
        if ((had[i] >= 0 && now[i] != had[i]) || (now[i] >= 0 && !tok_token_str(t, now[i]))) abort();
    if (adds && !tok_adds_bos(t)) abort();
    exercise(t, sample, sizeof sample - 1, false);
    tok_free(t);
    return 0;
}
