/* tests/test_json_fast.c - the quick JSON reader (data/json_fast.c) against
 * jansson's: on every text, either it declines, or jansson accepts the text
 * too and builds an equal value (same types, same key order); and where
 * jansson refuses a text, it declines. Hand-written valid and invalid
 * records, every line of the shipped data, and random mutations of both. */
#include "core/rng.h"
#include "core/status.h"
#include "data/json_util.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int accepted, declined;

/* The fast reader's answer on text agrees with jansson's; returns whether it accepted. */
static bool agree(const char *text, size_t len)
{
    json_t *fast = NULL, *slow = NULL;
    json_error_t e;
    int frc = json_parse_fast(text, len, &fast);
    int src = json_parse(text, len, JSON_DECODE_ANY, &slow, &e);
    cr_assert(frc == DS_OK || frc == DS_EDATA, "fast reader: %d on '%.*s'", frc, (int)len, text);
    if (frc == DS_OK) {
        cr_assert_eq(src, DS_OK, "the fast reader took what jansson refuses (%s): '%.*s'", e.text, (int)len, text);
        char *a = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY), *b = json_dumps(slow, JSON_COMPACT | JSON_ENCODE_ANY);
        cr_assert(json_equal(fast, slow) && !strcmp(a, b), "'%.*s': fast %s, jansson %s", (int)len, text, a, b);
        free(a);
        free(b);
        accepted++;
    } else {
        declined++;
    }
    json_decref(fast);
    json_decref(slow);
    return frc == DS_OK;
}

static const char *const VALID[] = {
    "{\"instruction\": \"What is a normal heart rate?\", \"input\": \"\", \"output\": \"60 to 100 beats per minute.\"}",
    "{\"a\":1,\"b\":-2,\"c\":0,\"d\":-0,\"e\":1.5,\"f\":-2.25e-3,\"g\":1E10,\"h\":3e+2,\"i\":9223372036854775807}",
    "{\"i\":-9223372036854775808,\"r\":1e308,\"z\":0.0,\"n\":-0.0,\"t\":true,\"f\":false,\"u\":null}",
    "{\"s\":\"quote \\\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t end\"}",
    "{\"u\":\"\\u00e9\\u4e2d\\uD83D\\uDE00 \\u0041\\u00FF\"}",
    "{\"raw\":\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"}",
    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}",
    "  {\"a\" : [ 1 , [ ] , { } , [ [ \"x\" ] ] ] }  ",
    "{\"dup\":1,\"other\":2,\"dup\":3}",
    "{\"\":\"empty key\",\"k\\u00e9y\":\"escaped key\",\"k\\\"q\":1}",
    "{\"question\":\"Q?\",\"opa\":\"a\",\"opb\":\"b\",\"opc\":\"c\",\"opd\":\"d\",\"cop\":2,\"exp\":null}",
    "[1,2,3]", "\"a string\"", "42", "-1.0e-2", "true", "null", "{}", "[]",
    "{\"deep\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
    "{\"x\":1.7976931348623157e308,\"y\":2.2250738585072014e-308,\"w\":123456789012345678}",
};

static const char *const INVALID[] = {
    "", "   ", "{", "}", "{\"a\":1,}", "[1,]", "{\"a\" 1}", "{a:1}", "{'a':1}", "{\"a\":01}", "{\"a\":-}",
    "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":tru}", "{\"a\":truex}", "{\"a\":nul}",
    "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":1e400}", "{\"a\":-1e400}", "{\"a\":9223372036854775808}",
    "{\"a\":-9223372036854775809}", "{\"a\":1e-400}", "{\"a\":\"\\u0000\"}", "{\"a\":\"\\uD800\"}",
    "{\"a\":\"\\uDC00\"}", "{\"a\":\"\\uD800\\u0041\"}", "{\"a\":\"\\x41\"}", "{\"a\":\"\\u12\"}",
    "{\"a\":\"tab\there\"}", "{\"a\":\"unterminated}", "{\"a\":\"bad \xff byte\"}", "{\"a\":\"\xc0\xaf\"}",
    "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}", "\xef\xbb\xbf{\"a\":1}", "{\"a\":1} x",
    "{\"a\":1}{\"b\":2}", "{\"a\":[1 2]}", "{\"a\":\"x\"\"y\"}", "{\"\\u0000\":1}", "{\"a\":1}\x01",
};

Test(json_fast, valid_records_read_as_jansson_reads_them)
{
    for (size_t i = 0; i < sizeof VALID / sizeof *VALID; i++)
        cr_expect(agree(VALID[i], strlen(VALID[i])), "declined a valid text: %s", VALID[i]);
}

Test(json_fast, invalid_records_are_left_to_jansson)
{
    for (size_t i = 0; i < sizeof INVALID / sizeof *INVALID; i++)
        cr_expect(!agree(INVALID[i], strlen(INVALID[i])), "accepted: %s", INVALID[i]);
    /* a NUL byte inside */
    cr_expect(!agree("{\"a\":\"x\0y\"}", 11));
}

Test(json_fast, deep_nesting_is_left_to_jansson)
{
    char text[2 * 3000 + 8];
    size_t n = 0;
    for (int i = 0; i < 3000; i++) text[n++] = '[';
    for (int i = 0; i < 3000; i++) text[n++] = ']';
    cr_expect(!agree(text, n));
    n = 0;
    for (int i = 0; i < 300; i++) text[n++] = '[';
    for (int i = 0; i < 300; i++) text[n++] = ']';
    cr_expect(!agree(text, n), "deeper than the fast reader goes: declined");
}

/* Every line of a shipped data file. */
static void each_line(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n) cr_expect(agree(line, (size_t)n), "%s: declined '%.*s'", path, (int)n, line);
    }
    free(line);
    fclose(f);
}

Test(json_fast, the_shipped_data_reads_fast)
{
    each_line(DSFT_SOURCE_DIR_FOR_TESTS "/data/tiny/train.jsonl");
    each_line(DSFT_SOURCE_DIR_FOR_TESTS "/data/tiny/eval.jsonl");
    each_line(DSFT_SOURCE_DIR_FOR_TESTS "/data/tiny/dpo.jsonl");
}

/* Random byte edits of every case: the property holds on whatever comes out. */
Test(json_fast, mutations_agree_with_jansson)
{
    static const char ALPHABET[] = "{}[]:,\"\\/ \n\tu0123456789abcdefABCDEF.eE+-tfnrl\x80\xc3\xa9\xed\xf0\x9f";
    ds_rng rng = ds_rng_make(20261205, 1);
    char buf[512];
    int n_cases = (int)(sizeof VALID / sizeof *VALID + sizeof INVALID / sizeof *INVALID);
    accepted = declined = 0;
    for (int it = 0; it < 40000; it++) {
        int c = (int)(ds_rng_u64(&rng) % (uint64_t)n_cases);
        const char *src = c < (int)(sizeof VALID / sizeof *VALID) ? VALID[c] : INVALID[c - sizeof VALID / sizeof *VALID];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + (int)(ds_rng_u64(&rng) % 3);
        for (int e = 0; e < edits; e++) {
            uint64_t r = ds_rng_u64(&rng);
            size_t at = n ? (size_t)(r >> 8) % n : 0;
            char ch = ALPHABET[(r >> 40) % (sizeof ALPHABET - 1)];
            switch (r % 3) {
            case 0: if (n) buf[at] = ch; break;                                     /* replace */
            case 1: if (n < sizeof buf - 1) { memmove(buf + at + 1, buf + at, n - at); buf[at] = ch; n++; } break;
            default: if (n) { memmove(buf + at, buf + at + 1, n - at - 1); n--; } break;   /* delete */
            }
        }
        agree(buf, n);
    }
    cr_expect(accepted > 1000 && declined > 1000, "accepted %d, declined %d: both sides exercised", accepted, declined);
}
