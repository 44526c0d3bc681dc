/* The token cache: a second load hits and gives the same dataset; a change
 * to a data file, the tokenizer (its files, the ids the model gives it) or
 * any option that changes tokens is a miss; a corrupt or truncated cache
 * file is rebuilt, never trusted. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/dataset/dataset.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;        /* temporary folder */
    char *tokdir;     /* a copy of the tiny tokenizer */
    char *data;       /* a copy of alpaca.jsonl */
    char *cache;
    tokenizer *tok;
} fixture;

static void copy_into(const char *src_rel, bool shared, const char *dst)
{
    char *src = shared ? tu_shared_path(src_rel) : tu_source_path(src_rel);
    cr_assert_eq(ds_copy_file(src, dst), DS_OK, "%s", ds_errmsg());
    free(src);
}

static void setup(fixture *f)
{
    f->dir = tu_tmpdir();
    f->tokdir = ds_path_join(f->dir, "tok");
    cr_assert_eq(ds_mkdirs(f->tokdir), DS_OK);
    char *tj = ds_path_join(f->tokdir, "tokenizer.json"), *tc = ds_path_join(f->tokdir, "tokenizer_config.json");
    copy_into("fixtures/tiny-llama/tokenizer.json", true, tj);
    copy_into("fixtures/tiny-llama/tokenizer_config.json", true, tc);
    free(tj);
    free(tc);
    f->data = ds_path_join(f->dir, "train.jsonl");
    copy_into("tests/data/datasets/alpaca.jsonl", false, f->data);
    char *cache_dir = ds_path_join(f->dir, "cache");
    cr_assert_eq(ds_mkdirs(cache_dir), DS_OK);   /* the caller's: dataset_load_cached writes into it */
    free(cache_dir);
    f->cache = ds_path_join(f->dir, "cache/train.tokens.zst");
    cr_assert_eq(tok_load(f->tokdir, &f->tok), DS_OK, "%s", ds_errmsg());
}

static void teardown(fixture *f)
{
    tok_free(f->tok);
    ds_remove_tree(f->dir);
    free(f->dir);
    free(f->tokdir);
    free(f->data);
    free(f->cache);
}

static bool load(fixture *f, data_source *src, int nsrc, example_kind kind, const data_options *o, dataset *d)
{
    bool hit = true;
    cr_assert_eq(dataset_load_cached(f->cache, src, nsrc, kind, f->tok, o, d, &hit), DS_OK, "%s", ds_errmsg());
    return hit;
}

static void expect_same(const dataset *a, const dataset *b)
{
    cr_assert_eq(a->kind, b->kind);
    cr_assert_eq(a->n, b->n);
    cr_expect_eq(a->skipped_lines, b->skipped_lines);
    cr_expect_eq(a->truncated, b->truncated);
    cr_expect_eq(a->dropped, b->dropped);
    for (int i = 0; i < a->n; i++) {
        if (a->kind == EX_SFT) {
            cr_assert_eq(a->sft[i].n, b->sft[i].n);
            cr_assert(memcmp(a->sft[i].ids, b->sft[i].ids, (size_t)a->sft[i].n * 4) == 0);
            cr_assert(memcmp(a->sft[i].train, b->sft[i].train, (size_t)a->sft[i].n) == 0);
        } else if (a->kind == EX_PREF) {
            const pref_example *x = &a->pref[i], *y = &b->pref[i];
            cr_assert(x->n_prompt == y->n_prompt && x->n_chosen == y->n_chosen && x->n_rejected == y->n_rejected);
            cr_assert(memcmp(x->prompt, y->prompt, (size_t)x->n_prompt * 4) == 0);
            cr_assert(memcmp(x->chosen, y->chosen, (size_t)x->n_chosen * 4) == 0);
            cr_assert(memcmp(x->rejected, y->rejected, (size_t)x->n_rejected * 4) == 0);
        } else {
            const mcq_example *x = &a->mcq[i], *y = &b->mcq[i];
            cr_assert(x->n_prompt == y->n_prompt && x->nchoices == y->nchoices && x->answer == y->answer);
            cr_assert(memcmp(x->prompt, y->prompt, (size_t)x->n_prompt * 4) == 0);
            for (int c = 0; c < x->nchoices; c++) {
                cr_assert_eq(x->n_choice[c], y->n_choice[c]);
                cr_assert(memcmp(x->choice[c], y->choice[c], (size_t)x->n_choice[c] * 4) == 0);
                cr_assert_str_eq(x->choice_text[c], y->choice_text[c]);
            }
        }
    }
}

static data_options opts(void)
{
    data_options o = {"alpaca", 512, false, false, NULL, NULL, NULL, 0};
    return o;
}

Test(token_cache, second_load_hits)
{
    fixture f;
    setup(&f);
    data_source src = {f.data, "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts();
    dataset a, b, direct;
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "first load tokenizes");
    cr_expect(ds_exists(f.cache), "the cache is written");
    cr_expect(load(&f, &src, 1, EX_SFT, &o, &b), "second load hits");
    expect_same(&a, &b);
    cr_assert_eq(dataset_load(&src, 1, EX_SFT, f.tok, &o, &direct), DS_OK);
    expect_same(&direct, &b);
    dataset_free(&a);
    dataset_free(&b);
    dataset_free(&direct);
    teardown(&f);
}

Test(token_cache, preference_and_mcq_round_trip)
{
    fixture f;
    setup(&f);
    char *pref = tu_source_path("tests/data/datasets/preference.jsonl");
    char *mcq = tu_source_path("tests/data/datasets/medqa.jsonl");
    data_source ps = {pref, "preference", NULL, -1, 0, NULL, NULL}, ms = {mcq, "mcq", "cloze", -1, 0, NULL, NULL};
    data_options o = opts();
    dataset a, b;
    cr_expect(!load(&f, &ps, 1, EX_PREF, &o, &a));
    cr_expect(load(&f, &ps, 1, EX_PREF, &o, &b));
    expect_same(&a, &b);
    dataset_free(&a);
    dataset_free(&b);
    cr_expect(!load(&f, &ms, 1, EX_MCQ, &o, &a), "another kind: a miss");
    cr_expect(load(&f, &ms, 1, EX_MCQ, &o, &b));
    expect_same(&a, &b);
    dataset_free(&a);
    dataset_free(&b);
    free(pref);
    free(mcq);
    teardown(&f);
}

Test(token_cache, data_change_is_a_miss)
{
    fixture f;
    setup(&f);
    data_source src = {f.data, "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts();
    dataset a, b;
    load(&f, &src, 1, EX_SFT, &o, &a);
    FILE *fp = fopen(f.data, "a");
    fputs("{\"instruction\": \"One more.\", \"output\": \"Done.\"}\n", fp);
    fclose(fp);
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &b), "the file changed");
    cr_expect_eq(b.n, a.n + 1);
    dataset_free(&a);
    dataset_free(&b);
    teardown(&f);
}

/* The tokenizer is loaded again after its files change, as a run would. */
static void reload_tokenizer(fixture *f)
{
    tok_free(f->tok);
    cr_assert_eq(tok_load(f->tokdir, &f->tok), DS_OK, "%s", ds_errmsg());
}

Test(token_cache, tokenizer_change_is_a_miss)
{
    fixture f;
    setup(&f);
    data_source src = {f.data, "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts();
    dataset a;
    load(&f, &src, 1, EX_SFT, &o, &a);
    dataset_free(&a);
    char *digest = strdup(tok_digest(f.tok));
    reload_tokenizer(&f);
    cr_expect_str_eq(tok_digest(f.tok), digest, "the same files give the same digest");
    cr_expect(load(&f, &src, 1, EX_SFT, &o, &a), "the same tokenizer loaded again hits");
    dataset_free(&a);
    char *tc = ds_path_join(f.tokdir, "tokenizer_config.json");
    FILE *fp = fopen(tc, "a");
    fputs("\n", fp);   /* any byte of the tokenizer files counts */
    fclose(fp);
    reload_tokenizer(&f);
    cr_expect_str_neq(tok_digest(f.tok), digest);
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "tokenizer_config.json changed");
    dataset_free(&a);
    cr_expect(load(&f, &src, 1, EX_SFT, &o, &a));
    dataset_free(&a);
    char *tj = ds_path_join(f.tokdir, "tokenizer.json");
    fp = fopen(tj, "a");
    fputs(" ", fp);
    fclose(fp);
    reload_tokenizer(&f);
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "tokenizer.json changed");
    dataset_free(&a);
    /* without tokenizer_config.json: another tokenizer, and the ids the model gives it count too */
    cr_assert_eq(remove(tc), 0);
    reload_tokenizer(&f);
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "tokenizer_config.json removed");
    dataset_free(&a);
    cr_expect(load(&f, &src, 1, EX_SFT, &o, &a));
    dataset_free(&a);
    tok_set_default_ids(f.tok, 0, 1, 1);
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "BOS/EOS from the model change the tokens");
    cr_expect_eq(a.sft[0].ids[0], 0, "the model's BOS starts each example");
    dataset_free(&a);
    free(digest);
    free(tc);
    free(tj);
    teardown(&f);
}

Test(token_cache, option_changes_are_misses)
{
    fixture f;
    setup(&f);
    char *mcq = tu_source_path("tests/data/datasets/mcq.jsonl");
    data_source src = {f.data, "alpaca", NULL, -1, 0, NULL, NULL}, ms = {mcq, "mcq", "letters", -1, 0, NULL, NULL};
    data_options base = opts();
    char k0[65], k[65];
    cr_assert_eq(dataset_cache_key(&src, 1, EX_SFT, f.tok, &base, k0), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(strlen(k0), 64);
    cr_assert_eq(dataset_cache_key(&src, 1, EX_SFT, f.tok, &base, k), DS_OK);
    cr_expect_str_eq(k, k0, "the key is a pure function of its inputs");

    data_options o = base;
    o.sequence_len = 256;
    dataset_cache_key(&src, 1, EX_SFT, f.tok, &o, k);
    cr_expect_str_neq(k, k0, "sequence_len");
    o = base;
    o.chat_template = "deepseek";
    dataset_cache_key(&src, 1, EX_SFT, f.tok, &o, k);
    cr_expect_str_neq(k, k0, "chat_template");
    o = base;
    o.train_on_inputs = true;
    dataset_cache_key(&src, 1, EX_SFT, f.tok, &o, k);
    cr_expect_str_neq(k, k0, "train_on_inputs");
    o = base;
    o.skip_bad_lines = true;
    dataset_cache_key(&src, 1, EX_SFT, f.tok, &o, k);
    cr_expect_str_neq(k, k0, "skip_bad_lines");
    data_source s2 = src;
    s2.limit = 1;
    dataset_cache_key(&s2, 1, EX_SFT, f.tok, &base, k);
    cr_expect_str_neq(k, k0, "limit");
    s2 = src;
    s2.type = "text";
    dataset_cache_key(&s2, 1, EX_SFT, f.tok, &base, k);
    cr_expect_str_neq(k, k0, "type");
    char m0[65], m1[65];
    dataset_cache_key(&ms, 1, EX_MCQ, f.tok, &base, m0);
    ms.mcq_format = "cloze";
    dataset_cache_key(&ms, 1, EX_MCQ, f.tok, &base, m1);
    cr_expect_str_neq(m0, m1, "mcq_format");
    dataset_cache_key(&ms, 1, EX_SFT, f.tok, &base, m0);
    cr_expect_str_neq(m0, m1, "kind");

    /* and through the loader */
    dataset a;
    cr_expect(!load(&f, &src, 1, EX_SFT, &base, &a));
    int cut = 0;                             /* past every prompt, short of every completion's end */
    for (int i = 0; i < a.n; i++) {
        int p = 0;
        while (!a.sft[i].train[p]) p++;
        if (p + 2 > cut) cut = p + 2;
    }
    dataset_free(&a);
    o = base;
    o.sequence_len = cut;
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a), "another sequence_len rebuilds");
    cr_expect_gt(a.truncated, 0);
    dataset_free(&a);
    o = base;
    o.train_on_inputs = true;
    cr_expect(!load(&f, &src, 1, EX_SFT, &o, &a));
    cr_expect_eq(a.sft[0].train[1], 1, "the prompt is trained now");
    dataset_free(&a);
    free(mcq);
    teardown(&f);
}

static void damage(const char *path, long offset, int whence, const char *bytes, size_t n)
{
    FILE *fp = fopen(path, "r+b");
    cr_assert(fp);
    fseek(fp, offset, whence);
    fwrite(bytes, 1, n, fp);
    fclose(fp);
}

static void expect_rebuilt(fixture *f, data_source *src, const data_options *o, const dataset *good, const char *what)
{
    dataset d;
    cr_expect(!load(f, src, 1, EX_SFT, o, &d), "%s: not trusted", what);
    expect_same(good, &d);
    dataset_free(&d);
    cr_expect(load(f, src, 1, EX_SFT, o, &d), "%s: rebuilt, then hits again", what);
    dataset_free(&d);
}

Test(token_cache, corrupt_cache_is_rebuilt)
{
    fixture f;
    setup(&f);
    data_source src = {f.data, "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts();
    dataset good;
    load(&f, &src, 1, EX_SFT, &o, &good);
    char *bytes;
    size_t len;
    cr_assert_eq(ds_read_file(f.cache, &bytes, &len), DS_OK);
    cr_assert_gt(len, 140);

    damage(f.cache, -5, SEEK_END, "\x55", 1);
    expect_rebuilt(&f, &src, &o, &good, "a flipped byte in the payload");

    cr_assert_eq(ds_write_file(f.cache, bytes, len - 9), DS_OK);
    expect_rebuilt(&f, &src, &o, &good, "a truncated file");

    cr_assert_eq(ds_write_file(f.cache, bytes, 100), DS_OK);
    expect_rebuilt(&f, &src, &o, &good, "half a header");

    damage(f.cache, 20, SEEK_SET, "0000", 4);
    expect_rebuilt(&f, &src, &o, &good, "another key");

    damage(f.cache, 0, SEEK_SET, "XXXX", 4);
    expect_rebuilt(&f, &src, &o, &good, "a bad magic");

    damage(f.cache, 100, SEEK_SET, "\x01", 1);
    expect_rebuilt(&f, &src, &o, &good, "a wrong checksum");

    cr_assert_eq(ds_write_file(f.cache, "", 0), DS_OK);
    expect_rebuilt(&f, &src, &o, &good, "an empty file");

    free(bytes);
    dataset_free(&good);
    teardown(&f);
}

Test(token_cache, missing_inputs)
{
    fixture f;
    setup(&f);
    data_source src = {"/nonexistent/data.jsonl", "alpaca", NULL, -1, 0, NULL, NULL};
    data_options o = opts();
    dataset d;
    bool hit;
    cr_expect_eq(dataset_load_cached(f.cache, &src, 1, EX_SFT, f.tok, &o, &d, &hit), DS_ENOINPUT);
    cr_expect(strstr(ds_errmsg(), "/nonexistent/data.jsonl"), "%s", ds_errmsg());
    /* a cache folder that does not exist: the tokens cannot be written */
    data_source ok = {f.data, "alpaca", NULL, -1, 0, NULL, NULL};
    char *nowhere = ds_path_join(f.dir, "no-such-folder/train.tokens");
    cr_expect_eq(dataset_load_cached(nowhere, &ok, 1, EX_SFT, f.tok, &o, &d, &hit), DS_EIO);
    cr_expect(strstr(ds_errmsg(), "no-such-folder"), "%s", ds_errmsg());
    free(nowhere);
    teardown(&f);
}
