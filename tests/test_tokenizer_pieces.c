/* tests/test_tokenizer_pieces.c - the tokenizer, continued: pre-tokenizer pieces (from
 * Hugging Face's own unit tests), byte fallback, added-token flags, UTF-8 and errors.
 * Helpers in tokenizer_helpers.h. */
#include "tokenizer_helpers.h"

/* ------------------------------------- pieces, from HF's own unit tests */

/* A byte-level vocabulary (every byte one token), no merges, and `pre` as
 * the pre-tokenizer; the pieces are checked through tk_pretokenize. */
static tokenizer *with_pretok(const char *pre)
{
    ds_buf j = {0};
    const char *head = "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {\"a\": 0}}, "
                       "\"pre_tokenizer\": ";
    cr_assert_eq(ds_buf_printf(&j, "%s%s}", head, pre), DS_OK);
    tokenizer *t = load_mem(j.p, NULL);
    ds_buf_free(&j);
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
