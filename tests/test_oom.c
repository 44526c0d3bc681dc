/* Running out of memory, everywhere it can happen: each operation below runs
 * again and again with allocation k failing (core/mem_test.h), for k = 0, 1,
 * 2, ... until it succeeds without reaching the failure. Every failed run
 * must return DS_ENOMEM with an "out of memory" message, never crash, never
 * succeed past the failure (a failure swallowed), never fail for another
 * reason, and leave nothing half-written on disk.
 *
 * The tokenizer and data cleaning make some 8000 allocations each, most of
 * them jansson's, the same few lines of code over and over (a vocabulary, a
 * file of records); their sweeps fail the first allocation made from each
 * distinct call stack (a loop's later turns take the same path), which keeps
 * them to seconds.
 * DSFT_OOM_EVERY=1 sweeps every one of them (20 s). Under valgrind or ASan
 * the same runs show that the failure paths free what they allocated:
 *     valgrind --leak-check=full --trace-children=yes build/tests/test_oom */
#include "oom_sweep.h"
#include "testutil.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"
#include "data/clean/clean.h"
#include "data/dataset/dataset.h"
#include "data/gguf/gguf.h"
#include "data/model_config.h"
#include "data/safetensors.h"
#include "data/template/jinja.h"
#include "data/tokenizer/tokenizer.h"
#include "finetune/run/generate.h"
#include "finetune/run/run.h"
#include "quant/bnb.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- the tokenizer */

static const char TEXT[] = "<｜begin▁of▁sentence｜>Question: Which organism causes Lacurt disease?\nAnswer: "
                           "fioloxmab, 12 mg — naïve résumé 日本語 🙂<｜end▁of▁sentence｜>";

/* Load models/tiny's tokenizer, encode TEXT and decode it again. */
static int tokenizer_round_trip(void *dir)
{
    tokenizer *t;
    int rc = tok_load(dir, &t);
    if (rc) return rc;
    tok_ids ids = {0};
    char *text = NULL;
    rc = tok_encode(t, TEXT, strlen(TEXT), true, &ids);
    if (!rc) rc = tok_decode(t, ids.ids, ids.n, false, &text);
    if (!rc) cr_assert_str_eq(text, TEXT);
    free(text);
    tok_ids_free(&ids);
    tok_free(t);
    return rc;
}

Test(oom, tokenizer)
{
    char *dir = tu_source_path("models/tiny");
    cr_expect_gt(sweep_stacks("tokenizer", tokenizer_round_trip, dir), 1000);
    free(dir);
}

/* --------------------------------------------- config.json and safetensors */

static int config_load(void *dir)
{
    model_config c;
    int rc = model_config_load(dir, &c);
    if (!rc) cr_assert_eq(c.vocab_size, 1024);
    return rc;
}

static int safetensors_open(void *dir)
{
    st_set *s;
    int rc = st_set_open(dir, &s);
    if (rc) return rc;
    const st_tensor *t;
    rc = st_set_require(s, "model.embed_tokens.weight", &t);
    st_set_close(s);
    return rc;
}

Test(oom, config_and_safetensors)
{
    char *dir = tu_source_path("models/tiny");
    cr_expect_gt(sweep("config.json", config_load, dir), 10);
    cr_expect_gt(sweep("model.safetensors", safetensors_open, dir), 10);
    free(dir);
}

/* -------------------------------------------------------------- a dataset */

typedef struct {
    const tokenizer *tok;
    data_source src;
    char *dir, *cache;     /* the token cache's folder and file */
    bool expect_hit;
} dataset_case;

static int dataset_tokenize(void *ctx)
{
    dataset_case *c = ctx;
    data_options opt = {.chat_template = "deepseek", .sequence_len = 64};
    dataset d;
    int rc = dataset_load(&c->src, 1, EX_SFT, c->tok, &opt, &d);
    if (!rc) cr_assert_eq(d.n, 24);
    dataset_free(&d);
    return rc;
}

/* The cache folder holds nothing, or exactly the whole cache file. */
static int dataset_cached(void *ctx)
{
    dataset_case *c = ctx;
    data_options opt = {.chat_template = "deepseek", .sequence_len = 64};
    dataset d;
    bool hit = false;
    int rc = dataset_load_cached(c->cache, &c->src, 1, EX_SFT, c->tok, &opt, &d, &hit);
    if (!rc) cr_assert_eq(hit, c->expect_hit);
    if (!rc) cr_assert_eq(d.n, 24);
    dataset_free(&d);
    cr_assert_eq(files_in(c->dir), rc && !c->expect_hit ? 0 : 1, "a half-written token cache is left");
    return rc;
}

Test(oom, dataset)
{
    char *tdir = tu_source_path("models/tiny");
    tokenizer *tok;
    cr_assert_eq(tok_load(tdir, &tok), DS_OK, "%s", ds_errmsg());
    model_config mc;
    cr_assert_eq(model_config_load(tdir, &mc), DS_OK, "%s", ds_errmsg());
    tok_set_default_ids(tok, mc.bos_id, mc.eos_id, mc.pad_id);
    dataset_case c = {.tok = tok, .dir = tu_tmpdir()};
    c.src = (data_source){.path = tu_source_path("data/tiny/train.jsonl"), .type = "prompt_completion", .limit = 24};
    c.cache = ds_path_join(c.dir, "tokens.cache");
    cr_expect_gt(sweep("dataset", dataset_tokenize, &c), 300);
    cr_expect_gt(sweep("dataset, writing the token cache", dataset_cached, &c), 300);
    c.expect_hit = true;
    cr_expect_gt(sweep("dataset, reading the token cache", dataset_cached, &c), 5);
    ds_remove_tree(c.dir);
    free(c.cache);
    free(c.dir);
    free(c.src.path);
    tok_free(tok);
    free(tdir);
}

/* ------------------------------------------------ a bitsandbytes checkpoint */

/* quantization_config, then every 4-bit weight with its quant_state. */
static int bnb_read(void *dir)
{
    bnb_config cfg;
    int rc = bnb_config_load(dir, &cfg);
    if (!rc) cr_assert(cfg.present);
    st_set *s = NULL;
    if (!rc) rc = st_set_open(dir, &s);
    int weights = 0;
    for (int i = 0; !rc && i < st_set_count(s); i++) {
        const char *name = st_set_at(s, i)->name;
        if (!bnb_is_linear_weight(name)) continue;
        nf4_tensor w = {0};
        rc = bnb_load_weight(s, name, &w);
        nf4_tensor_free(&w);
        weights++;
    }
    st_set_close(s);
    if (!rc) cr_assert_gt(weights, 0);
    return rc;
}

Test(oom, bitsandbytes_checkpoint)
{
    char *dir = tu_shared_path("fixtures/tiny-llama-bnb-4bit");
    cr_expect_gt(sweep("bitsandbytes checkpoint", bnb_read, dir), 100);
    free(dir);
}

/* ------------------------------------------------- a model's chat template */

typedef struct {
    char *text;
    size_t len;
    json_t *messages;
} chat_case;

/* Compile Qwen3's template and render a conversation with it. */
static int chat_render(void *ctx)
{
    chat_case *c = ctx;
    jinja_chat *chat;
    int rc = jinja_chat_new(c->text, c->len, "qwen3.jinja", NULL, "<|im_end|>", &chat);
    if (rc) return rc;
    char *out = NULL;
    size_t n;
    rc = jinja_chat_render(chat, c->messages, true, &out, &n);
    if (!rc) cr_assert(strstr(out, "<|im_start|>assistant\n"), "%s", out);
    free(out);
    jinja_chat_free(chat);
    return rc;
}

Test(oom, chat_template)
{
    char *path = tu_source_path("fuzz/corpus/jinja/qwen3.jinja");
    chat_case c;
    cr_assert_eq(ds_read_file(path, &c.text, &c.len), DS_OK, "%s", ds_errmsg());
    c.messages = json_loads("[{\"role\": \"system\", \"content\": \"Be brief.\"},"
                            " {\"role\": \"user\", \"content\": \"Which organism causes Lacurt disease?\"},"
                            " {\"role\": \"assistant\", \"content\": \"<think>\\nrecall\\n</think>\\n\\nA fungus.\"},"
                            " {\"role\": \"user\", \"content\": \"And the treatment?\"}]", 0, NULL);
    cr_assert_not_null(c.messages);
    cr_expect_gt(sweep("chat template", chat_render, &c), 100);
    json_decref(c.messages);
    free(c.text);
    free(path);
}

/* ------------------------------------------------------------ a GGUF file */

typedef struct {
    char *dir, *path;
    float w[64];
} gguf_case;

/* Write a small GGUF file (key/values of each kind, two tensors), then read it back. */
static int gguf_write_read(void *ctx)
{
    gguf_case *c = ctx;
    gguf_writer *w = gguf_writer_new();
    if (!w) return DS_ENOMEM;
    static const char *const tokens[] = {"<s>", "</s>", "a", "b"};
    int32_t types[4] = {3, 3, 1, 1};
    int64_t ne[2] = {16, 4};
    int rc = gguf_add_string(w, "general.architecture", "llama");
    if (!rc) rc = gguf_add_u32(w, "llama.block_count", 2);
    if (!rc) rc = gguf_add_f32(w, "llama.rope.freq_base", 10000.0f);
    if (!rc) rc = gguf_add_string_array(w, "tokenizer.ggml.tokens", tokens, 4);
    if (!rc) rc = gguf_add_array(w, "tokenizer.ggml.token_type", GGUF_I32, types, 4);
    if (!rc) rc = gguf_add_tensor(w, "token_embd.weight", GGML_F32, 2, ne, c->w);
    if (!rc) rc = gguf_add_tensor(w, "output_norm.weight", GGML_F32, 1, ne, c->w);
    if (!rc) rc = gguf_writer_write(w, c->path);
    gguf_writer_free(w);
    DIR *d = opendir(c->dir);   /* nothing half-written: the file whole, or nothing at all */
    int files = 0;
    for (struct dirent *e; d && (e = readdir(d));) files += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    cr_assert_eq(files, rc ? 0 : 1, "a half-written GGUF file is left");
    gguf_file *f = NULL;
    if (!rc) rc = gguf_open(c->path, &f);
    if (!rc) cr_assert_eq(gguf_tensor_count(f), 2);
    gguf_close(f);
    ds_remove_tree(c->path);
    return rc;
}

Test(oom, gguf)
{
    gguf_case c = {.dir = tu_tmpdir()};
    c.path = ds_path_join(c.dir, "tiny.gguf");
    for (int i = 0; i < 64; i++) c.w[i] = (float)i / 8;
    cr_expect_gt(sweep("GGUF file", gguf_write_read, &c), 20);
    ds_remove_tree(c.dir);
    free(c.path);
    free(c.dir);
}

/* --------------------------------------------------------- data cleaning */

typedef struct {
    clean_config cfg;
    const char *inputs[1], *evals[1];
    char *dir, *out;
} clean_case;

/* Clean the tiny training set against the tiny eval set, then its report. */
static int clean_once(void *ctx)
{
    clean_case *c = ctx;
    clean_job job = {c->inputs, 1, c->evals, 1, c->out, true, NULL, NULL};
    clean_report *rep = NULL;
    int rc = clean_run(&c->cfg, &job, &rep);
    cr_assert_eq(ds_exists(c->out), rc == DS_OK, "a half-written output is left");
    ds_remove_tree(c->out);
    char *json = rc ? NULL : clean_report_json(rep);
    if (!rc && !json) rc = DS_ENOMEM;
    free(json);
    clean_report_free(rep);
    return rc;
}

Test(oom, data_cleaning)
{
    clean_case c = {.dir = tu_tmpdir()};
    cr_assert_eq(clean_config_defaults(&c.cfg), DS_OK);
    char *in = tu_source_path("data/tiny/train.jsonl"), *eval = tu_source_path("data/tiny/eval.jsonl");
    c.inputs[0] = in;
    c.evals[0] = eval;
    c.out = ds_path_join(c.dir, "clean.jsonl");
    cr_expect_gt(sweep_stacks("data cleaning", clean_once, &c), 1000);
    clean_config_free(&c.cfg);
    ds_remove_tree(c.dir);
    free(c.out);
    free(c.dir);
    free(in);
    free(eval);
}

/* ------------------------------------ generation with a key/value cache */

/* A decoder on models/tiny (4-bit, so the fused NF4 product runs too) and two
 * prompts sampled with every filter and a stop string. The backend and engine
 * are set up once, outside the sweep; a failure recorded in the backend is
 * cleared before each run. */
static int generate_once(void *ctx)
{
    ds_run *x = ctx;
    x->be->err = 0;
    const char *texts[2] = {"Question: Which organism causes", "Hello"};
    tok_ids p[2] = {{0}};
    int rc = DS_OK;
    for (int i = 0; !rc && i < 2; i++) rc = tok_encode(x->tok, texts[i], strlen(texts[i]), true, &p[i]);
    engine_decoder *d = NULL;
    decoder_opts o = {.max_B = 2, .ctx = 64, .max_step = 8};
    if (!rc) rc = decoder_create(x->eng, &o, &d);
    const char *stops[1] = {"zz"};
    gen_opts g = {.max_new = 12, .seed = 3, .stop = stops, .nstop = 1,
                  .sample = {.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .min_p = 0.01f,
                             .repetition_penalty = 1.2f}};
    gen_result res[2];
    if (!rc) rc = generate(d, x->tok, x->model->cfg.vocab_size, 2, p, &g, res, NULL);
    if (!rc)
        for (int i = 0; i < 2; i++) gen_result_free(&res[i]);
    decoder_free(d);
    for (int i = 0; i < 2; i++) tok_ids_free(&p[i]);
    return rc;
}

Test(oom, generation)
{
    char *model = tu_source_path("models/tiny");
    ds_run x;
    ds_run_opts ro = {.device = BE_CPU, .model_dir = model, .load_in_4bit = true, .double_quant = true};
    cr_assert_eq(ds_run_open(&ro, &x), DS_OK, "%s", ds_errmsg());
    engine_opts eo = {.max_B = 1, .max_T = 1};
    cr_assert_eq(ds_run_start(&x, &eo), DS_OK, "%s", ds_errmsg());
    cr_expect_gt(sweep_stacks("generation", generate_once, &x), 20);
    ds_run_close(&x);
    free(model);
}
