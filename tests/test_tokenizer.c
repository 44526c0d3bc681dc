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
#include "tokenizer_helpers.h"

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
