/* tests/test_tokenizer.c - the tokenizer against Hugging Face's own output.
 *
 * fixtures/tokenizer-deepseek_v3.jsonl and fixtures/tiny-llama/tokenizer-cases.jsonl
 * hold ids written by transformers/tokenizers for the real DeepSeek-V3
 * tokenizer and the tiny model's: every line must match exactly, with and
 * without special tokens, and decode back as transformers decodes. The real
 * Llama-3 and Qwen3 tokenizers must load and round-trip. The smaller cases
 * (split behaviours, digits, byte fallback, added-token flags) take their
 * expected pieces from the tokenizers library's own unit tests. Each kind of
 * malformed input has its own test of the status and the message.
 */
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

static tokenizer *load_shared(const char *rel)
{
    char *dir = tu_shared_path(rel);
    tokenizer *t;
    int rc = tok_load(dir, &t);
    cr_assert_eq(rc, DS_OK, "%s: %s", dir, ds_errmsg());
    free(dir);
    return t;
}

static tokenizer *load_mem(const char *json, const char *config)
{
    tokenizer *t;
    int rc = tok_load_json(json, strlen(json), config, config ? strlen(config) : 0, "test.json", &t);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    return t;
}

/* Loading must fail with `code` and a message containing each of `needles`. */
static void expect_load_error(const char *json, const char *config, int code, const char *needle1, const char *needle2)
{
    tokenizer *t = NULL;
    int rc = tok_load_json(json, strlen(json), config, config ? strlen(config) : 0, "test.json", &t);
    cr_assert_eq(rc, code, "status %d, message: %s", rc, ds_errmsg());
    cr_assert_null(t);
    cr_assert(strstr(ds_errmsg(), needle1), "message '%s' lacks '%s'", ds_errmsg(), needle1);
    if (needle2) cr_assert(strstr(ds_errmsg(), needle2), "message '%s' lacks '%s'", ds_errmsg(), needle2);
}

static void expect_ids(const tokenizer *t, const char *text, bool special, const int32_t *want, size_t n)
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

static char *decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip)
{
    char *s;
    int rc = tok_decode(t, ids, n, skip, &s);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    return s;
}

static bool same_ids(const tok_ids *v, json_t *want)
{
    if (!json_is_array(want) || json_array_size(want) != v->n) return false;
    for (size_t i = 0; i < v->n; i++)
        if (json_integer_value(json_array_get(want, i)) != v->ids[i]) return false;
    return true;
}

/* Check every line of a fixture: ids, ids_with_special, decoded. */
static void check_cases(const tokenizer *t, const char *cases_rel, size_t expect_lines)
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

static void check_fixture(const char *tok_rel, const char *cases_rel, size_t expect_lines)
{
    tokenizer *t = load_shared(tok_rel);
    check_cases(t, cases_rel, expect_lines);
    tok_free(t);
}

/* --------------------------------------------------- reference fixtures */

Test(tokenizer, deepseek_v3_matches_transformers, .timeout = 60)
{
    check_fixture("tokenizers/deepseek_v3", "fixtures/tokenizer-deepseek_v3.jsonl", 40);
}

Test(tokenizer, tiny_llama_matches_transformers, .timeout = 60)
{
    check_fixture("fixtures/tiny-llama", "fixtures/tiny-llama/tokenizer-cases.jsonl", 40);
}

/* A copy of the tiny model's folder without tokenizer_config.json: BOS, EOS
 * and pad come from generation_config.json / config.json, and BOS is added
 * as LlamaTokenizerFast adds it - the same ids as with the config. */
Test(tokenizer, model_folder_without_tokenizer_config, .timeout = 60)
{
    char *dir = tu_tmpdir();
    static const char *const files[] = {"tokenizer.json", "config.json", "generation_config.json"};
    for (int i = 0; i < 3; i++) {
        char *rel = ds_strdupf("fixtures/tiny-llama/%s", files[i]), *from = tu_shared_path(rel);
        char *to = ds_path_join(dir, files[i]);
        cr_assert_eq(ds_copy_file(from, to), DS_OK, "%s", ds_errmsg());
        free(rel);
        free(from);
        free(to);
    }
    tokenizer *t;
    cr_assert_eq(tok_load(dir, &t), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(tok_bos_id(t), -1, "nothing names BOS yet");
    cr_expect(!tok_adds_bos(t));
    tok_ids plain = {0}, special = {0};
    cr_assert_eq(tok_encode(t, "Hello", 5, false, &plain), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(tok_encode(t, "Hello", 5, true, &special), DS_OK, "%s", ds_errmsg());
    cr_expect(special.n == plain.n && !memcmp(special.ids, plain.ids, plain.n * 4), "no BOS without its id");
    char *digest = strdup(tok_digest(t));
    model_config c;
    cr_assert_eq(model_config_load(dir, &c), DS_OK, "%s", ds_errmsg());
    tok_set_default_ids(t, c.bos_id, c.eos_id, c.pad_id);
    cr_expect_eq(tok_bos_id(t), 0);
    cr_expect_eq(tok_eos_id(t), 1);
    cr_expect_eq(tok_pad_id(t), 1);
    cr_expect(tok_adds_bos(t));
    cr_expect_str_eq(tok_digest(t), digest, "the digest is of the files");
    check_cases(t, "fixtures/tiny-llama/tokenizer-cases.jsonl", 40);
    tok_set_default_ids(t, c.bos_id, c.eos_id, c.pad_id);   /* a second call changes nothing */
    special.n = 0;
    cr_assert_eq(tok_encode(t, "Hello", 5, true, &special), DS_OK, "%s", ds_errmsg());
    cr_expect(special.n == plain.n + 1 && special.ids[0] == 0 && !memcmp(special.ids + 1, plain.ids, plain.n * 4),
              "BOS once, then the text");
    tok_ids_free(&plain);
    tok_ids_free(&special);
    tokenizer *full = load_shared("fixtures/tiny-llama");
    cr_expect_str_neq(tok_digest(full), digest, "tokenizer_config.json is part of the digest");
    tok_free(full);
    tok_free(t);
    free(digest);
    ds_remove_tree(dir);
    free(dir);
}

Test(tokenizer, deepseek_v3_special_tokens, .timeout = 60)
{
    tokenizer *t = load_shared("tokenizers/deepseek_v3");
    cr_expect_eq(tok_bos_id(t), 0);
    cr_expect_eq(tok_eos_id(t), 1);
    cr_expect_eq(tok_pad_id(t), 1);   /* tokenizer_config: pad_token = the EOS string */
    cr_expect(tok_adds_bos(t));
    cr_expect_eq(tok_vocab_size(t), 128815);
    cr_expect_str_eq(tok_token_str(t, 0), "<｜begin▁of▁sentence｜>");
    cr_expect_str_eq(tok_token_str(t, 19923), "Hello");
    cr_expect_eq(tok_token_id(t, "<｜end▁of▁sentence｜>"), 1);
    cr_expect_eq(tok_token_id(t, "Hello"), 19923);
    cr_expect_eq(tok_token_id(t, "no such token"), -1);
    cr_expect(tok_is_special(t, 0));
    cr_expect(!tok_is_special(t, 19923));
    cr_expect_null(tok_token_str(t, 1 << 20));
    /* skip_special drops BOS/EOS, keeps the text */
    const int32_t ids[] = {0, 19923, 2058, 1};
    char *a = decode(t, ids, 4, false), *b = decode(t, ids, 4, true);
    cr_expect_str_eq(a, "<｜begin▁of▁sentence｜>Hello world<｜end▁of▁sentence｜>");
    cr_expect_str_eq(b, "Hello world");
    free(a);
    free(b);
    /* ids without a token are skipped, as HF's decode does */
    const int32_t holes[] = {19923, -5, 1 << 20, 2058};
    a = decode(t, holes, 4, false);
    cr_expect_str_eq(a, "Hello world");
    free(a);
    /* the empty text: nothing, or just BOS */
    EXPECT_IDS(t, "", true, 0);
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, "", 0, false, &v), DS_OK);
    cr_expect_eq(v.n, 0);
    /* encoding appends */
    tk_ids_push(&v, 42);
    cr_assert_eq(tok_encode(t, "Hello world", 11, true, &v), DS_OK);
    cr_expect_eq(v.n, 4);
    cr_expect_eq(v.ids[0], 42);
    cr_expect_eq(v.ids[1], 0);
    tok_ids_free(&v);
    tok_free(t);
}

/* ------------------------------------------------- Llama-3 and Qwen3 */

static const char *const ROUND_TRIP[] = {
    "Hello world",
    "  two leading spaces and two trailing  ",
    "The patient was given 500mg of amoxicillin twice daily.",
    "def forward(self, x):\n    return self.proj(x) * 2\n",
    "for (int i = 0; i < n; ++i) { y[i] += a * x[i]; }",
    "1234567890 3.14159265358979 1,000,000",
    "Tabs\tand\nnewlines\r\nmixed\n\n\n",
    "can't won't I'M you're THEY'VE he'd she'll",
    "患者男性，45岁，主诉胸痛3天。日本語のテキスト。한국어 텍스트.",
    "Здравствуйте, как дела? مرحبا بالعالم शुभ प्रभात",
    "emoji: 😀🎉👍🏽 ❤️ 👨‍👩‍👧",
    "Ünïcödé àccents ñ ç ß ﬁ Ω ≤ ≥ ≠ ± × ÷ √ ∞",
    "\u3000ideographic\u00a0no-break\u2028line\u2029para\u200bzero",
    "<|im_start|>user\nHi<|im_end|> <|endoftext|> <|begin_of_text|>",
    "                                                                      many spaces",
    "x",
    " ",
};

static void check_round_trip(const char *rel)
{
    tokenizer *t = load_shared(rel);
    for (size_t i = 0; i < sizeof ROUND_TRIP / sizeof *ROUND_TRIP; i++) {
        tok_ids v = {0};
        cr_assert_eq(tok_encode(t, ROUND_TRIP[i], strlen(ROUND_TRIP[i]), false, &v), DS_OK, "%s", ds_errmsg());
        cr_expect_gt(v.n, 0);
        for (size_t k = 0; k < v.n; k++) cr_expect(v.ids[k] >= 0 && v.ids[k] < tok_vocab_size(t));
        char *d = decode(t, v.ids, v.n, false);
        cr_expect_str_eq(d, ROUND_TRIP[i], "%s: round trip", rel);
        free(d);
        tok_ids_free(&v);
    }
    tok_free(t);
}

Test(tokenizer, llama3_round_trip, .timeout = 60)
{
    check_round_trip("tokenizers/llama3");
    tokenizer *t = load_shared("tokenizers/llama3");
    /* well-known Llama-3 ids; this tokenizer.json's post-processor adds no BOS */
    EXPECT_IDS(t, "Hello world", false, 9906, 1917);
    EXPECT_IDS(t, "Hello world", true, 9906, 1917);
    EXPECT_IDS(t, "<|begin_of_text|>Hi", false, 128000, 13347);
    cr_expect_eq(tok_bos_id(t), 128000);
    cr_expect_eq(tok_eos_id(t), 128001);
    cr_expect_eq(tok_pad_id(t), -1);
    cr_expect(!tok_adds_bos(t));
    cr_expect_eq(tok_vocab_size(t), 128256);
    tok_free(t);
}

Test(tokenizer, qwen3_round_trip_and_nfc, .timeout = 60)
{
    check_round_trip("tokenizers/qwen3");
    tokenizer *t = load_shared("tokenizers/qwen3");
    EXPECT_IDS(t, "Hello world", true, 9707, 1879);
    EXPECT_IDS(t, "<|im_start|>user\nHi<|im_end|>", false, 151644, 872, 198, 13048, 151645);
    cr_expect_eq(tok_bos_id(t), -1);   /* bos_token: null */
    cr_expect_eq(tok_eos_id(t), 151645);
    cr_expect_eq(tok_pad_id(t), 151643);
    /* the NFC normalizer: a decomposed é encodes as the composed one */
    tok_ids a = {0}, b = {0};
    cr_assert_eq(tok_encode(t, "caf\xC3\xA9", 5, false, &a), DS_OK);
    cr_assert_eq(tok_encode(t, "cafe\xCC\x81", 6, false, &b), DS_OK);
    cr_expect_eq(a.n, b.n);
    cr_expect(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof *a.ids));
    char *d = decode(t, b.ids, b.n, false);
    cr_expect_str_eq(d, "caf\xC3\xA9");
    free(d);
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_free(t);
}

/* A megabyte of spaces backtracks through \s+(?!\S) once per character. */
Test(tokenizer, long_whitespace_run, .timeout = 60)
{
    tokenizer *t = load_shared("tokenizers/llama3");
    size_t n = 1 << 20;
    char *s = malloc(n + 2);
    memset(s, ' ', n);
    s[n] = 'x';
    s[n + 1] = '\0';
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, s, n + 1, false, &v), DS_OK, "%s", ds_errmsg());
    char *d = decode(t, v.ids, v.n, false);
    cr_expect(strlen(d) == n + 1 && !strcmp(d, s));
    free(d);
    free(s);
    tok_ids_free(&v);
    tok_free(t);
}

/* Encoding from several threads at once gives the single-thread ids. */
struct job {
    const tokenizer *t;
    tok_ids want;
    int ok;
};

static void *encode_job(void *p)
{
    struct job *j = p;
    const char *text = ROUND_TRIP[8];
    j->ok = 1;
    for (int k = 0; k < 200; k++) {
        tok_ids v = {0};
        if (tok_encode(j->t, text, strlen(text), false, &v) || v.n != j->want.n ||
            memcmp(v.ids, j->want.ids, v.n * sizeof *v.ids))
            j->ok = 0;
        tok_ids_free(&v);
    }
    return NULL;
}

Test(tokenizer, threads, .timeout = 60)
{
    tokenizer *t = load_shared("tokenizers/deepseek_v3");
    tok_ids want = {0};
    cr_assert_eq(tok_encode(t, ROUND_TRIP[8], strlen(ROUND_TRIP[8]), false, &want), DS_OK);
    struct job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){t, want, 0};
        pthread_create(&th[i], NULL, encode_job, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect(jobs[i].ok, "thread %d", i);
    }
    tok_ids_free(&want);
    tok_free(t);
}

/* ------------------------------------- pieces, from HF's own unit tests */

/* A byte-level vocabulary (every byte one token), no merges, and `pre` as
 * the pre-tokenizer; the pieces are checked through tk_pretokenize. */
static tokenizer *with_pretok(const char *pre)
{
    tk_buf j = {0};
    const char *head = "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {\"a\": 0}}, "
                       "\"pre_tokenizer\": ";
    tk_buf_put(&j, head, strlen(head));
    tk_buf_put(&j, pre, strlen(pre));
    tk_buf_put(&j, "}", 2);
    tokenizer *t = load_mem(j.p, NULL);
    tk_buf_free(&j);
    return t;
}

static void expect_pieces(const tokenizer *t, const char *text, const char *const *want, size_t n)
{
    tk_pieces *p;
    int rc = tk_pretokenize(t, tk_scratch_get(t), text, strlen(text), &p);
    cr_assert_eq(rc, DS_OK, "%s", ds_errmsg());
    cr_assert_eq(p->n, n, "'%s': %zu pieces, expected %zu", text, p->n, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = p->span[i][1];
        cr_expect(len == strlen(want[i]) && !memcmp(p->text.p + p->span[i][0], want[i], len),
                  "'%s': piece %zu is '%.*s', expected '%s'", text, i, (int)len, p->text.p + p->span[i][0], want[i]);
    }
}
#define EXPECT_PIECES(t, text, ...)                                                                          \
    do {                                                                                                     \
        const char *const want_[] = {__VA_ARGS__};                                                           \
        expect_pieces((t), (text), want_, sizeof want_ / sizeof *want_);                                     \
    } while (0)

/* split.rs: r"\w+|[^\w\s]+" with invert (\w spelled out for this ASCII text) */
#define WORDS "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[A-Za-z0-9_]+|[^A-Za-z0-9_\\\\s]+\"}, \"invert\": true, \"behavior\": "

Test(tokenizer, split_behaviours)
{
    tokenizer *t = with_pretok(WORDS "\"Removed\"}");
    EXPECT_PIECES(t, "How are you doing?", "How", "are", "you", "doing", "?");
    tok_free(t);
    t = with_pretok(WORDS "\"Isolated\"}");
    EXPECT_PIECES(t, "How are you doing?", "How", " ", "are", " ", "you", " ", "doing", "?");
    tok_free(t);
    t = with_pretok(WORDS "\"MergedWithPrevious\"}");
    EXPECT_PIECES(t, "How are you doing?", "How ", "are ", "you ", "doing", "?");
    tok_free(t);
    t = with_pretok(WORDS "\"MergedWithNext\"}");
    EXPECT_PIECES(t, "How are you doing?", "How", " are", " you", " doing", "?");
    tok_free(t);
    t = with_pretok(WORDS "\"Contiguous\"}");
    EXPECT_PIECES(t, "How are you doing?", "How", " ", "are", " ", "you", " ", "doing?");
    tok_free(t);
    /* a String pattern is literal */
    t = with_pretok("{\"type\": \"Split\", \"pattern\": {\"String\": \".*\"}, \"invert\": false, \"behavior\": \"Removed\"}");
    EXPECT_PIECES(t, "a.*b.*", "a", "b");
    tok_free(t);
}

Test(tokenizer, digits)
{
    /* digits.rs */
    tokenizer *t = with_pretok("{\"type\": \"Digits\", \"individual_digits\": false}");
    EXPECT_PIECES(t, "Hey 123 friend!", "Hey ", "123", " friend!");
    tok_free(t);
    t = with_pretok("{\"type\": \"Digits\", \"individual_digits\": true}");
    EXPECT_PIECES(t, "Hey 123 friend!", "Hey ", "1", "2", "3", " friend!");
    tok_free(t);
}

Test(tokenizer, byte_level_pre_tokenizer)
{
    /* byte_level.rs: the GPT-2 regex, then every byte as its character */
    tokenizer *t = with_pretok("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}");
    EXPECT_PIECES(t, "Hello my friend, how is your day going?", "Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour",
                  "Ġday", "Ġgoing", "?");
    tok_free(t);
    t = with_pretok("{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}");
    EXPECT_PIECES(t, "Hello my friend", "ĠHello", "Ġmy", "Ġfriend");
    tok_free(t);
    t = with_pretok("{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}");
    EXPECT_PIECES(t, "i⭢j \n", "iâŃ¢jĠĊ");
    tok_free(t);
}

/* --------------------------- a SentencePiece-style BPE with byte fallback */

/* Llama-2's arrangement: spaces become ▁ in the normalizer, unknown
 * characters fall back to <0xAB> tokens, and the decoder undoes both. */
static const char *SPM_JSON =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "  {\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": false},"
    "  {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": false},"
    "  {\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": false}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"▁\"},"
    "   {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"▁\"}]},"
    " \"pre_tokenizer\": null,"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
    "   {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"▁\"}, \"content\": \" \"},"
    "   {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
    "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0xE5>\": 3, \"<0x8F>\": 4, \"<0xAB>\": 5, \"▁\": 6, \"H\": 7,"
    "     \"e\": 8, \"y\": 9, \"He\": 10, \"Hey\": 11, \"▁Hey\": 12},"
    "   \"merges\": [\"H e\", \"He y\", \"▁ Hey\"]}}";

Test(tokenizer, byte_fallback_pipeline)
{
    tokenizer *t = load_mem(SPM_JSON, "{\"bos_token\": \"<s>\"}");
    /* "▁Hey▁叫": ▁Hey merges, 叫 is not in the vocabulary: its three bytes */
    EXPECT_IDS(t, "Hey 叫", false, 12, 6, 3, 4, 5);
    EXPECT_IDS(t, "Hey 叫", true, 1, 12, 6, 3, 4, 5);
    /* 🎉 has bytes without <0x..> tokens, so it is the unknown token */
    EXPECT_IDS(t, "Hey🎉", false, 12, 0);
    const int32_t ids[] = {12, 6, 3, 4, 5};
    char *d = decode(t, ids, 5, false);
    cr_expect_str_eq(d, "Hey 叫");
    free(d);
    /* byte_fallback.rs: an incomplete sequence is one U+FFFD per byte */
    const int32_t broken[] = {3, 4, 9};
    d = decode(t, broken, 3, false);
    cr_expect_str_eq(d, "\xEF\xBF\xBD\xEF\xBF\xBDy");
    free(d);
    cr_expect(tok_adds_bos(t));
    tok_free(t);
}

/* --------------------------------------------------- added-token flags */

static const char *ADDED_JSON =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "  {\"id\": 5, \"content\": \"<mask>\", \"special\": true, \"normalized\": false, \"lstrip\": true, \"rstrip\": true, \"single_word\": false},"
    "  {\"id\": 6, \"content\": \"ab\", \"special\": false, \"normalized\": true, \"lstrip\": false, \"rstrip\": false, \"single_word\": true},"
    "  {\"id\": 7, \"content\": \"<mask>x\", \"special\": false, \"normalized\": false, \"lstrip\": false, \"rstrip\": false, \"single_word\": false}],"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \" \": 2, \"c\": 3, \"x\": 4}, \"merges\": []}}";

Test(tokenizer, added_token_flags)
{
    tokenizer *t = load_mem(ADDED_JSON, NULL);
    /* lstrip/rstrip: the spaces around <mask> belong to it */
    EXPECT_IDS(t, "a  <mask>  b", false, 0, 5, 1);
    /* the longest match wins */
    EXPECT_IDS(t, "<mask>x", false, 7);
    /* single_word: "ab" only when not inside a word */
    EXPECT_IDS(t, "ab c", false, 6, 2, 3);
    EXPECT_IDS(t, "cab", false, 3, 0, 1);
    EXPECT_IDS(t, "abc", false, 0, 1, 3);
    cr_expect(tok_is_special(t, 5));
    cr_expect(!tok_is_special(t, 6));
    const int32_t ids[] = {0, 5, 1};
    char *d = decode(t, ids, 3, true);   /* no decoder: tokens joined with spaces, <mask> skipped */
    cr_expect_str_eq(d, "a b");
    free(d);
    tok_free(t);
}

Test(tokenizer, config_special_tokens)
{
    /* a named token that tokenizer.json lacks is added (as transformers does) */
    tokenizer *t = load_mem(ADDED_JSON, "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"c\"}, \"add_bos_token\": true,"
                                        " \"add_eos_token\": true, \"model_max_length\": 1000000000000000019884624838656}");
    cr_expect_eq(tok_bos_id(t), 8);
    cr_expect_eq(tok_eos_id(t), 3);
    EXPECT_IDS(t, "a<s>", true, 8, 0, 8, 3);
    tok_free(t);
    /* split_special_tokens: special tokens are plain text */
    t = load_mem(ADDED_JSON, "{\"split_special_tokens\": true}");
    tok_ids v = {0};
    cr_assert_eq(tok_encode(t, "<mask>", 6, false, &v), DS_OK);
    for (size_t i = 0; i < v.n; i++) cr_expect_neq(v.ids[i], 5);
    tok_ids_free(&v);
    tok_free(t);
}

/* The model's ids fill only what the tokenizer leaves out, and never change
 * whether BOS is added. */
Test(tokenizer, default_ids_fill_only_what_is_missing)
{
    tokenizer *t = load_mem(SPM_JSON, "{\"bos_token\": \"<s>\"}");
    tok_set_default_ids(t, 2, 2, 0);
    cr_expect_eq(tok_bos_id(t), 1, "named by the config");
    cr_expect_eq(tok_eos_id(t), 2);
    cr_expect_eq(tok_pad_id(t), 0);
    cr_expect(tok_adds_bos(t));
    EXPECT_IDS(t, "Hey", true, 1, 12);
    tok_free(t);
    /* the post-processor decides, with or without a config */
    t = load_mem(SPM_JSON, NULL);
    cr_expect(!tok_adds_bos(t));
    EXPECT_IDS(t, "Hey", true, 1, 12);
    tok_set_default_ids(t, 1, 2, -1);
    cr_expect(tok_adds_bos(t));
    EXPECT_IDS(t, "Hey", true, 1, 12);
    cr_expect_eq(tok_pad_id(t), -1);
    tok_free(t);
    /* add_bos_token: false stays false */
    t = load_mem(ADDED_JSON, "{\"add_bos_token\": false}");
    tok_set_default_ids(t, 3, -1, -1);
    cr_expect_eq(tok_bos_id(t), 3);
    cr_expect(!tok_adds_bos(t));
    EXPECT_IDS(t, "a", true, 0);
    tok_free(t);
    /* no config, no post-processor: BOS once the model names it; ids that are no token are ignored */
    t = load_mem(ADDED_JSON, NULL);
    tok_set_default_ids(t, 99999, 77, -5);
    cr_expect_eq(tok_bos_id(t), -1);
    cr_expect_eq(tok_eos_id(t), -1);
    EXPECT_IDS(t, "a", true, 0);
    tok_set_default_ids(t, 3, 4, -1);
    cr_expect(tok_adds_bos(t));
    EXPECT_IDS(t, "a", true, 3, 0);
    tok_free(t);
}

/* ------------------------------------------------------------------ UTF-8 */

Test(utf8, validate_decode_encode)
{
    static const struct {
        const char *s;
        size_t bad;   /* offset of the first ill-formed sequence */
    } cases[] = {
        {"plain ascii, long enough for the fast path", 42},
        {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14},
        {"ab\xFF", 2},              /* a byte that starts nothing */
        {"abcdefgh\xC3", 8},        /* cut short */
        {"\xC0\xAF", 0},            /* overlong */
        {"x\xE0\x80\x80", 1},       /* overlong */
        {"\xED\xA0\x80", 0},        /* a surrogate */
        {"a\xF4\x90\x80\x80", 1},   /* past U+10FFFF */
        {"\xE2\x82z", 0},           /* a continuation byte missing */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cr_expect_eq(ds_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].bad, "case %zu", i);
    size_t k;
    cr_expect_eq(ds_utf8_decode("\xF0\x9F\x98\x80", 4, &k), 0x1F600u);
    cr_expect_eq(k, 4);
    cr_expect_eq(ds_utf8_decode("\xE2\x82\xAC", 3, &k), 0x20ACu);
    cr_expect_eq(ds_utf8_decode("\xF0\x9F\x98", 3, &k), DS_UTF8_BAD);
    cr_expect_eq(k, 3, "the maximal subpart of a cut sequence");
    cr_expect_eq(ds_utf8_decode("\xE2\x82z", 3, &k), DS_UTF8_BAD);
    cr_expect_eq(k, 2);
    cr_expect_eq(ds_utf8_decode("\xED\xA0\x80", 3, &k), DS_UTF8_BAD);
    cr_expect_eq(k, 1, "a surrogate's lead byte alone");
    char buf[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += cp < 0x800 ? 1 : 61) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        size_t n = ds_utf8_encode(cp, buf);
        cr_assert_eq(ds_utf8_lead_len((unsigned char)buf[0]), n, "U+%04X", cp);
        cr_assert_eq(ds_utf8_decode(buf, n, &k), cp, "U+%04X", cp);
        cr_assert_eq(k, n);
    }
}

/* ---------------------------------------------------------------- errors */

Test(tokenizer, invalid_utf8_text)
{
    tokenizer *t = load_mem(ADDED_JSON, NULL);
    tok_ids v = {0};
    tk_ids_push(&v, 7);
    const char *bad[] = {"ab\xFF", "\xC3", "\xED\xA0\x80", "\xC0\xAF", "a\xF4\x90\x80\x80"};
    for (size_t i = 0; i < 5; i++) {
        int rc = tok_encode(t, bad[i], strlen(bad[i]), true, &v);
        cr_expect_eq(rc, DS_EDATA, "case %zu", i);
        cr_expect(strstr(ds_errmsg(), "UTF-8"), "%s", ds_errmsg());
        cr_expect_eq(v.n, 1, "nothing appended on failure");
    }
    tok_ids_free(&v);
    tok_free(t);
}

#define MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}"

Test(tokenizer, unsupported_components_are_named)
{
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"},"
                      " {\"type\": \"Metaspace\", \"replacement\": \"_\"}]}, " MODEL "}",
                      NULL, DS_EDATA, "'Metaspace'", "pre_tokenizer.pretokenizers[1]");
    expect_load_error("{\"normalizer\": {\"type\": \"Lowercase\"}, " MODEL "}", NULL, DS_EDATA, "'Lowercase'",
                      "normalizer");
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\"}, " MODEL "}", NULL, DS_EDATA,
                      "'WordPiece'", "decoder");
    expect_load_error("{\"post_processor\": {\"type\": \"Weird\"}, " MODEL "}", NULL, DS_EDATA, "'Weird'",
                      "post_processor");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", NULL, DS_EDATA, "'Unigram'", "model");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Sideways\","
                      " \"invert\": false}, " MODEL "}",
                      NULL, DS_EDATA, "'Sideways'", "pre_tokenizer");
    /* patterns whose meaning differs between regex engines are refused, not approximated */
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\","
                      " \"invert\": false}, " MODEL "}",
                      NULL, DS_EDATA, "\\w", "pre_tokenizer");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{Han}\"}, \"behavior\": \"Isolated\","
                      " \"invert\": false}, " MODEL "}",
                      NULL, DS_EDATA, "Han", "pre_tokenizer");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\","
                      " \"invert\": false}, " MODEL "}",
                      NULL, DS_EDATA, "does not compile", "pre_tokenizer");
}

Test(tokenizer, malformed_json)
{
    expect_load_error("{\"model\": {\"type\": \"BPE\",\n \"vocab\": {\"a\": 0}, \"merges\": [}", NULL, DS_EDATA,
                      "test.json:2:", "invalid JSON");
    expect_load_error("[1, 2]", NULL, DS_EDATA, "test.json", "not a JSON object");
    expect_load_error("{\"version\": \"1.0\"}", NULL, DS_EDATA, "\"model\"", NULL);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", NULL,
                      DS_EDATA, "merges[0]", "'c'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", NULL,
                      DS_EDATA, "merges[0]", "'ab'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", NULL, DS_EDATA,
                      "model.vocab", "'a'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", NULL,
                      DS_EDATA, "id 0", NULL);
    expect_load_error("{\"added_tokens\": [{\"id\": 1}], " MODEL "}", NULL, DS_EDATA, "added_tokens[0]", "content");
    expect_load_error("{" MODEL "}", "{\"add_bos_token\": \"yes\"}", DS_EDATA, "add_bos_token", NULL);
    expect_load_error("{" MODEL "}", "{\"bos_token\": ", DS_EDATA, "invalid JSON", NULL);
    expect_load_error("{" MODEL "}", "{\"add_bos_token\": true, \"bos_token\": null}", DS_EDATA, "bos_token", NULL);
}

Test(tokenizer, missing_files)
{
    tokenizer *t = NULL;
    cr_expect_eq(tok_load("/nonexistent/tokenizer-dir", &t), DS_ENOINPUT);
    cr_expect(strstr(ds_errmsg(), "/nonexistent/tokenizer-dir"), "%s", ds_errmsg());
    char *dir = tu_tmpdir();
    cr_expect_eq(tok_load(dir, &t), DS_ENOINPUT);
    cr_expect(strstr(ds_errmsg(), "tokenizer.json"), "%s", ds_errmsg());
    cr_expect_null(t);
    /* a tokenizer.json alone is enough; tokenizer_config.json is optional */
    char *path = ds_path_join(dir, "tokenizer.json");
    cr_assert_eq(ds_write_file(path, ADDED_JSON, strlen(ADDED_JSON)), DS_OK);
    cr_assert_eq(tok_load(dir, &t), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(tok_bos_id(t), -1);
    tok_free(t);
    ds_remove_tree(dir);
    free(path);
    free(dir);
}
